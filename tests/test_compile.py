"""`colorize compile`: the Vertex / Kubeflow v2 JSON matches the configuration, offline.

The Vertex pipeline is compiled by the real CLI in a subprocess with no credentials and,
where the kernel allows it, no network at all (a fresh network namespace), then read back
with kfp and aiplatform; the Kubeflow target in this process.
"""
import dataclasses
import json
import shutil
import subprocess
import sys

from apache_beam.options import pipeline_options
from cloud_fixtures import CLOUD
from cloud_fixtures import CONFIG
from cloud_fixtures import IMAGE
from cloud_fixtures import KMS_KEY
from cloud_fixtures import NETWORK
from cloud_fixtures import REPO
from cloud_fixtures import SERVICE_ACCOUNT
from cloud_fixtures import TENSORBOARD
from cloud_fixtures import offline_command
import pytest
from tfx.components.trainer import executor as trainer_executor
import yaml

from components import run_parameters
from pipelines import cloud_config
from pipelines import config as config_lib
from pipelines import pipeline as pipeline_lib
from schemas import gates


def compile_with(tmp, target, extra=()):
  config_file = tmp / "config.yaml"
  config_file.write_text(yaml.safe_dump(CONFIG))
  output = tmp / f"{target}.json"
  args, env = offline_command(
      [sys.executable, "-c", "from cli.main import main; main()", "compile", "--config", str(config_file),
       "--target", target, "--output", str(output), *extra])
  env["HOME"] = str(tmp)  # no gcloud login either
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  return json.loads(output.read_text()), result


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("compile")
  job, result = compile_with(tmp, "vertex")
  return {"job": job, "path": tmp / "vertex.json", "stdout": result.stdout, "tmp": tmp}


@pytest.fixture(scope="module")
def cfg():
  return config_lib.from_dict(json.loads(json.dumps(CONFIG)))


def _tasks(spec):
  return spec["root"]["dag"]["tasks"]


def _executor(spec, task):
  label = spec["components"][_tasks(spec)[task]["componentRef"]["name"]]["executorLabel"]
  return spec["deploymentSpec"]["executors"][label]


def _param(spec, task, name):
  value = _tasks(spec)[task]["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
  return next(iter(value.values()))


def test_tasks_images_and_executor_classes(compiled):
  spec = compiled["job"]["pipelineSpec"]
  tasks = _tasks(spec)
  assert {"CocoIngest", "Embed", "ImportSchemaGen", "Trainer", "Evaluator", "Pusher"} <= set(tasks)
  executors = {
      name: _executor(spec, name)["container"] for name in tasks if "container" in _executor(spec, name)}
  assert {e["image"] for e in executors.values()} == {IMAGE}
  for container in executors.values():
    assert container["command"] == ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
  classes = {name: c["args"][c["args"].index("--executor_class_path") + 1] for name, c in executors.items()}
  assert classes["CocoIngest"] == "components.ingest.executor.Executor"
  assert classes["Embed"] == "components.embed.executor.Executor"
  # TFX's Vertex Trainer executor, with the run parameters folded into custom_config first.
  assert classes["Trainer"] == "components.run_parameters.VertexExecutor"
  assert classes["Evaluator"] == "tfx.components.evaluator.executor.Executor"
  assert classes["Pusher"] == "tfx.components.pusher.executor.Executor"
  # Dependencies: embedding waits for ingestion, training for the embedding and the schema,
  # evaluation for ingestion (it scores the served model on the ingested test split), pushing for the evaluator.
  assert set(tasks["Embed"]["dependentTasks"]) == {"CocoIngest", "DataGateCheck"}
  assert set(tasks["Trainer"]["dependentTasks"]) >= {"Embed", "ImportSchemaGen"}
  assert "CocoIngest" in tasks["Evaluator"]["dependentTasks"]
  assert "Evaluator" in tasks["Pusher"]["dependentTasks"]


def _input_from(spec, task, key):
  source = _tasks(spec)[task]["inputs"]["artifacts"][key]["taskOutputArtifact"]
  return source["producerTask"], source["outputArtifactKey"]


def test_data_gate_steps_are_wired_and_hold_back_embedding_and_training(compiled):
  spec = compiled["job"]["pipelineSpec"]
  tasks = _tasks(spec)
  assert _input_from(spec, "StatisticsGen", "examples") == ("CocoIngest", "examples")
  assert _input_from(spec, "ExampleValidator", "statistics") == ("StatisticsGen", "statistics")
  assert _input_from(spec, "ExampleValidator", "schema") == ("ImportSchemaGen", "schema")
  assert {key: _input_from(spec, "DataGate", key) for key in tasks["DataGate"]["inputs"]["artifacts"]} == {
      "examples": ("CocoIngest", "examples"), "statistics": ("StatisticsGen", "statistics"),
      "anomalies": ("ExampleValidator", "anomalies"), "baseline": ("last_data_gate_verdict", "baseline")}
  assert _input_from(spec, "DataGateCheck", "result") == ("DataGate", "result")
  classes = {task: _executor(spec, task)["container"]["args"] for task in ("DataGate", "DataGateCheck")}
  assert classes["DataGate"][classes["DataGate"].index("--executor_class_path") + 1] == \
      "components.data_gate.executor.Executor"
  assert classes["DataGateCheck"][classes["DataGateCheck"].index("--executor_class_path") + 1] == \
      "components.data_gate.executor.CheckExecutor"
  assert _param(spec, "DataGate", "max_spread_ratio") == 2.5
  # The last verdict: Vertex's query for the latest artifact of the verdict's type, which no other step outputs.
  query = _executor(spec, "last_data_gate_verdict")["resolver"]["outputArtifactQueries"]["baseline"]["filter"]
  assert query == 'schema_title="tfx.Statistics" AND state=LIVE'
  outputs = [(name, key) for name, component in spec["components"].items()
             for key, output in component.get("outputDefinitions", {}).get("artifacts", {}).items()
             if output["artifactType"]["instanceSchema"].startswith("title: tfx.Statistics\n")]
  assert sorted(outputs) == [("DataGate", "result"), ("last_data_gate_verdict", "baseline")]
  for later in ("Embed", "Trainer"):
    assert "DataGateCheck" in tasks[later]["dependentTasks"]


def test_blessed_models_are_also_deployed_to_a_vertex_endpoint(compiled):
  spec = compiled["job"]["pipelineSpec"]
  args = _executor(spec, "EndpointPusher")["container"]["args"]
  # TFX's Vertex Pusher executor with the rollout (components/endpoint_rollout), from the project image.
  assert args[args.index("--executor_class_path") + 1] == "components.endpoint_rollout.executor.Executor"
  assert "Evaluator" in _tasks(spec)["EndpointPusher"]["dependentTasks"]
  custom = json.loads(_param(spec, "EndpointPusher", "custom_config"))
  assert custom["ai_platform_enable_vertex"] is True
  assert custom["ai_platform_vertex_region"] == "europe-west4"
  # Vertex AI's prebuilt TF 2.16 serving image, GPU build, from the registry nearest europe-west4.
  assert custom["ai_platform_vertex_container_image_uri"] == \
      "europe-docker.pkg.dev/vertex-ai/prediction/tf2-gpu.2-16:latest"
  assert custom["ai_platform_serving_args"] == {
      "project": "colorize-test", "endpoint_name": "colorize-nightly", "machine_type": "n1-standard-8",
      "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 1, "min_replica_count": 1, "max_replica_count": 3,
      "traffic_percentage": 100, "service_account": SERVICE_ACCOUNT, "labels": {"team": "vision", "env": "test"}}
  assert custom["colorize_rollout"] == {"keep_models": 2, "owner": "colorize-nightly"}


def test_dataflow_args(compiled, cfg):
  spec = compiled["job"]["pipelineSpec"]
  for task in ("CocoIngest", "Evaluator"):
    args = _executor(spec, task)["container"]["args"]
    for expected in ["--runner=DataflowRunner", "--project=colorize-test", "--region=europe-west4",
                     "--temp_location=gs://colorize-bucket/runs/tmp/dataflow", "--machine_type=n2-standard-8",
                     "--max_num_workers=17", "--disk_size_gb=80", f"--sdk_container_image={IMAGE}",
                     "--sdk_location=container", "--experiments=use_runner_v2",
                     f"--service_account_email={SERVICE_ACCOUNT}", "--labels=env=test", "--labels=team=vision"]:
      assert expected in args, (task, expected, args)
  # The Beam arguments parse as Dataflow options, as the step's launcher will parse them.
  from apache_beam.options import pipeline_options
  args = _executor(spec, "CocoIngest")["container"]["args"]
  options = pipeline_options.PipelineOptions(_beam_args(args))
  gcp = options.view_as(pipeline_options.GoogleCloudOptions)
  worker = options.view_as(pipeline_options.WorkerOptions)
  assert (gcp.project, gcp.region, gcp.temp_location) == ("colorize-test", "europe-west4",
                                                          "gs://colorize-bucket/runs/tmp/dataflow")
  assert (worker.machine_type, worker.max_num_workers, worker.sdk_container_image) == ("n2-standard-8", 17, IMAGE)
  assert cloud_config.beam_pipeline_args(cfg) == _beam_args(args)


def _beam_args(args):
  """What follows the executor input placeholder: the Beam arguments."""
  return args[args.index("{{$}}") + 1:]


def test_embed_step_runs_on_dataflow_gpu_workers(compiled, cfg):
  spec = compiled["job"]["pipelineSpec"]
  args = _executor(spec, "Embed")["container"]["args"]
  beam_args = _beam_args(args)
  assert beam_args == cloud_config.beam_pipeline_args(cfg) + cloud_config.embed_beam_pipeline_args(cfg)
  assert "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver" in args
  options = pipeline_options.PipelineOptions(beam_args)
  # The Embed step's own machine type wins over every Beam step's (the later flag).
  assert options.view_as(pipeline_options.WorkerOptions).machine_type == "n1-standard-8"
  assert options.view_as(pipeline_options.GoogleCloudOptions).dataflow_service_options == [
      "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"]
  # The other Beam steps keep CPU workers.
  assert not any("worker_accelerator" in a for a in _executor(spec, "CocoIngest")["container"]["args"])


def test_vertex_training_gpu_pools(compiled, cfg):
  spec = compiled["job"]["pipelineSpec"]
  custom = json.loads(_param(spec, "Trainer", "custom_config"))
  assert custom["ai_platform_enable_vertex"] is True
  assert custom["ai_platform_vertex_region"] == "europe-west4"
  job = custom["ai_platform_training_args"]
  assert job["project"] == "colorize-test"
  assert job["labels"] == {"team": "vision", "env": "test"}
  assert job["job_spec"]["service_account"] == SERVICE_ACCOUNT
  pools = job["job_spec"]["worker_pool_specs"]
  # A chief and a pool with the other two workers: MultiWorkerMirroredStrategy over 3 x 4 A100.
  assert [p["replica_count"] for p in pools] == [1, 2]
  for pool in pools:
    assert pool["machine_spec"] == {"machine_type": "a2-highgpu-4g", "accelerator_type": "NVIDIA_TESLA_A100",
                                    "accelerator_count": 4}
    assert pool["container_spec"] == {"image_uri": IMAGE}
  # The training parameters reach run_fn unchanged.
  assert custom["train"] == dataclasses.asdict(cfg.train)
  assert _param(spec, "Trainer", "run_fn") == "trainer.task.run_fn"


def _vertex_environment(pools, pool, replica, tensorflow_names):
  """What Vertex AI sets on replica `replica` of worker pool `pool` of a custom job: CLUSTER_SPEC
  names tasks after the pools ("workerpool0", ...); TF_CONFIG maps pool 0 -> chief, 1 -> worker,
  2 -> ps, 3 -> evaluator (or keeps the pool names, as CLUSTER_SPEC does)."""
  def describe(name_of):
    cluster = {name_of(i): [f"workerpool{i}-0123456789-{r}:2222" for r in range(p["replica_count"])]
               for i, p in enumerate(pools)}
    return json.dumps({"cluster": cluster, "task": {"type": name_of(pool), "index": replica},
                       "environment": "cloud", "job": {"worker_pool_specs": pools}})
  env = {"CLUSTER_SPEC": describe(lambda i: f"workerpool{i}")}
  if tensorflow_names is not None:
    env["TF_CONFIG"] = describe(lambda i: ("chief", "worker", "ps", "evaluator")[i] if tensorflow_names
                                else f"workerpool{i}")
  return env


@pytest.mark.parametrize("tensorflow_names", [True, False, None], ids=["tf_config", "tf_config_pools", "cluster_spec"])
def test_vertex_worker_pools_give_the_trainer_its_multi_worker_cluster(compiled, tensorflow_names):
  """The job TFX's Vertex Trainer executor submits (built offline by its own job client) runs
  run_fn in every replica; the variables Vertex sets there resolve to one chief and workers."""
  from tfx.extensions.google_cloud_ai_platform import training_clients

  from trainer import strategy

  class OfflineJobClient(training_clients.VertexJobClient):
    def create_client(self):  # the API client needs credentials; building the job does not
      pass

  custom = json.loads(_param(compiled["job"]["pipelineSpec"], "Trainer", "custom_config"))
  job = OfflineJobClient("europe-west4").create_training_job(
      {}, {}, {"custom_config": json.dumps(custom)}, "tfx.components.trainer.executor.GenericExecutor",
      custom["ai_platform_training_args"], None, None)
  pools = job["job_spec"]["worker_pool_specs"]
  commands = {json.dumps(p["container_spec"]["command"]) for p in pools}
  assert len(commands) == 1 and "tfx.components.trainer.executor.GenericExecutor" in commands.pop()

  roles, clusters = [], []
  for pool, spec in enumerate(pools):
    for replica in range(spec["replica_count"]):
      resolver = strategy.cluster_resolver(_vertex_environment(pools, pool, replica, tensorflow_names))
      roles.append((resolver.task_type, resolver.task_id, strategy.is_chief(resolver)))
      clusters.append(resolver.cluster_spec().as_dict())
  workers = CLOUD["training"]["replica_count"]
  assert roles == [("chief", 0, True)] + [("worker", i, False) for i in range(workers - 1)]
  assert all(c == clusters[0] for c in clusters)
  assert clusters[0] == {"chief": ["workerpool0-0123456789-0:2222"],
                         "worker": [f"workerpool1-0123456789-{i}:2222" for i in range(workers - 1)]}


def test_parameters_match_config(compiled, cfg):
  job = compiled["job"]
  spec = job["pipelineSpec"]
  assert job["displayName"] == "colorize-nightly"
  assert job["runtimeConfig"]["gcsOutputDirectory"] == cfg.pipeline_root == "gs://colorize-bucket/runs/pipeline/colorize-nightly"
  assert {"team": "vision", "env": "test"}.items() <= job["labels"].items()
  assert _tasks(spec)["CocoIngest"]["inputs"]["parameters"]["input_base"] == {"componentInputParameter": "data_root"}
  assert _param(spec, "CocoIngest", "max_images") == "5000"
  assert _param(spec, "CocoIngest", "categories") == "dog,cat"
  assert _param(spec, "CocoIngest", "test_fraction") == 0.0321
  push = json.loads(_param(spec, "Pusher", "push_destination"))
  assert push["filesystem"]["base_directory"] == cfg.serving_model_dir == "gs://colorize-bucket/runs/serving_model/colorize-nightly"
  # The schema file is referenced where the image holds it, and the project really has it there.
  schema = _param(spec, "ImportSchemaGen", "schema_file")
  assert schema.startswith(cloud_config.IMAGE_PROJECT_ROOT + "/")
  assert (REPO / schema[len(cloud_config.IMAGE_PROJECT_ROOT) + 1:]).is_file()
  # No path of this machine leaks into the job.
  assert str(REPO) not in json.dumps(job)


def test_step_resources(compiled):
  spec = compiled["job"]["pipelineSpec"]
  assert _executor(spec, "CocoIngest")["container"]["resources"] == {"cpuLimit": 8.0, "memoryLimit": 32.0}
  assert _executor(spec, "Evaluator")["container"]["resources"] == {"cpuLimit": 2.0, "memoryLimit": 7.5}


def test_loads_back_with_aiplatform_offline(compiled):
  from google.auth import credentials
  from google.cloud import aiplatform
  job = aiplatform.PipelineJob(display_name="check", template_path=str(compiled["path"]),
                               pipeline_root="gs://colorize-bucket/runs/pipeline/colorize-nightly",
                               project="colorize-test", location="europe-west4",
                               credentials=credentials.AnonymousCredentials())
  assert set(job.pipeline_spec["root"]["dag"]["tasks"]) == set(_tasks(compiled["job"]["pipelineSpec"]))


def test_kubeflow_target_loads_with_kfp(compiled):
  from click.testing import CliRunner

  from cli import main as cli
  # In this process: the offline subprocess of `compiled` has shown that compiling needs no cloud.
  output = compiled["tmp"] / "kubeflow.json"
  result = CliRunner().invoke(cli.main, ["compile", "--config", str(compiled["tmp"] / "config.yaml"),
                                         "--target", "kubeflow", "--output", str(output)])
  assert result.exit_code == 0, result.output
  spec = json.loads(output.read_text())
  assert spec["pipelineInfo"]["name"] == "colorize-nightly"
  # The same steps, except the Trainer: kfp's loader cannot read PipelineSpec 2.0 runtime parameters, so
  # this target has none, and its Trainer runs TFX's Vertex executor directly.
  executors = spec["deploymentSpec"]["executors"]
  vertex_executors = compiled["job"]["pipelineSpec"]["deploymentSpec"]["executors"]
  assert {k: v for k, v in executors.items() if k != "Trainer_executor"} == \
      {k: v for k, v in vertex_executors.items() if k != "Trainer_executor"}
  args = executors["Trainer_executor"]["container"]["args"]
  assert args[1] == "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
  assert "inputDefinitions" not in spec["root"]
  from kfp import components
  component = components.load_component_from_file(str(compiled["tmp"] / "kubeflow.json"))
  assert component.name == "colorize-nightly"


def test_missing_kfp_gives_a_clear_error(tmp_path):
  config_file = tmp_path / "config.yaml"
  config_file.write_text(yaml.safe_dump(CONFIG))
  # kfp made unimportable, as in an install without the extra.
  code = ("import sys; sys.modules['kfp'] = None; from cli import main as cli; "
          f"cli.main(['compile', '--config', {str(config_file)!r}, '--output', {str(tmp_path / 'x.json')!r}])")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "needs the `kfp` extra" in result.stderr and "tfx-colorize[kfp]" in result.stderr


@pytest.mark.parametrize("change, message", [
    ({"output_root": "runs"}, "output_root must be a gs:// prefix"),
    ({"ingest": {"data_root": "/home/me/coco"}}, "ingest.data_root must be a gs://"),
    ({"ingest": {"data_root": "gs://colorize-bucket/coco", "train_spans": 4}},
     "ingest.train_spans must be 1 for a cloud run"),
    ({"cloud": {"project": "colorize-test"}}, "cloud.image must be set"),
    ({"cloud": {"image": IMAGE}}, "cloud.project must be set"),
    ({"cloud": dict(CLOUD, training={"machine_type": "n1-standard-8", "accelerator_type": "NVIDIA_L4"})},
     "NVIDIA_L4 cannot be attached to n1-standard-8"),
    ({"cloud": dict(CLOUD, training={"accelerator_type": "NVIDIA_K9000"})}, "accelerator_type must be one of"),
    ({"cloud": dict(CLOUD, training={"replica_count": 2}), "train": {"strategy": "mirrored"}},
     "train.strategy must be auto or multi_worker"),
    ({"cloud": dict(CLOUD, labels={"Team": "x"})}, "cloud.labels: key 'Team'"),
    ({"cloud": dict(CLOUD, dataflow={"temp_location": "/tmp"})}, "temp_location must be a gs:// path"),
    ({"cloud": dict(CLOUD, dataflow={"max_wokers": 3})}, "unknown config key cloud.dataflow.max_wokers"),
    ({"cloud": dict(CLOUD, region="Europe")}, "cloud.region must look like"),
    ({"cloud": dict(CLOUD, service_account="me@example.com")}, "service account email"),
    ({"cloud": dict(CLOUD, deploy={"enabled": True, "traffic_percentage": 120})},
     "cloud.deploy.traffic_percentage must be 0-100, got 120"),
    ({"cloud": dict(CLOUD, deploy={"min_replicas": 2, "max_replicas": 1})},
     "cloud.deploy.max_replicas must be >= min_replicas (2), got 1"),
    ({"cloud": dict(CLOUD, deploy={"min_replicas": 0})}, "cloud.deploy.min_replicas must be >= 1, got 0"),
    ({"cloud": dict(CLOUD, deploy={"endpoint_name": ""})}, "cloud.deploy.endpoint_name must be 1-128"),
    ({"cloud": dict(CLOUD, deploy={"endpoint_name": "x" * 129})}, "cloud.deploy.endpoint_name must be 1-128"),
    ({"cloud": dict(CLOUD, deploy={"endpoint_name": "   "})}, "cloud.deploy.endpoint_name must be 1-128"),
    ({"cloud": dict(CLOUD, deploy={"machine_type": "n1-standard-4\nx"})},
     "cloud.deploy.machine_type must be a machine type like n1-standard-4"),
    ({"cloud": dict(CLOUD, training={"machine_type": ""})}, "cloud.training.machine_type must be a machine type"),
    ({"cloud": dict(CLOUD, deploy={"enabled": True, "machine_type": "e2-standard-4",
                                   "accelerator_type": "NVIDIA_TESLA_T4"})},
     "cloud.deploy: NVIDIA_TESLA_T4 cannot be attached to e2-standard-4; e2-* machines take no GPU"),
    ({"cloud": dict(CLOUD, deploy={"enabled": True, "machine_type": "g2-standard-8",
                                   "accelerator_type": "NVIDIA_TESLA_T4"})},
     "cloud.deploy: NVIDIA_TESLA_T4 cannot be attached to g2-standard-8"),
    ({"cloud": dict(CLOUD, deploy={"enabled": True, "accelerator_type": "T4"})},
     "cloud.deploy.accelerator_type must be one of"),
    ({"cloud": dict(CLOUD, deploy={"serving_image": "tf2-cpu"})}, "cloud.deploy.serving_image must be a container"),
    ({"cloud": dict(CLOUD, deploy={"replicas": 2})}, "unknown config key cloud.deploy.replicas"),
])
def test_bad_cloud_config_is_a_clear_error(tmp_path, change, message):
  from click.testing import CliRunner

  from cli import main as cli
  config_file = tmp_path / "config.yaml"
  config_file.write_text(yaml.safe_dump({**CONFIG, **change}))
  result = CliRunner().invoke(cli.main, ["compile", "--config", str(config_file), "--output", str(tmp_path / "x.json")])
  assert result.exit_code == 2, result.output
  assert message in result.output
  assert not (tmp_path / "x.json").exists()


def test_unknown_step_in_step_resources(cfg):
  from pipelines import vertex_runner
  bad = dataclasses.replace(cfg, cloud=dataclasses.replace(
      cfg.cloud, step_resources={"Trainr": cloud_config.StepResources()}))
  with pytest.raises(config_lib.ConfigError, match=r"steps the pipeline does not have: \['Trainr'\]"):
    vertex_runner.build_pipeline(bad)


def test_flags_override_the_config_file(tmp_path):
  from click.testing import CliRunner

  from cli import main as cli
  config_file = tmp_path / "config.yaml"
  config_file.write_text(yaml.safe_dump(CONFIG))
  # A bad GPU given as a flag is caught before compiling, so this is fast.
  result = CliRunner().invoke(cli.main, ["compile", "--config", str(config_file), "--gpu-type", "NVIDIA_L4",
                                         "--output", str(tmp_path / "x.json")])
  assert result.exit_code == 2 and "NVIDIA_L4 cannot be attached to a2-highgpu-4g" in result.output


def test_training_inside_the_step_and_beam_inside_the_container(cfg):
  """cloud.training.enabled: false and dataflow.runner: DirectRunner (a Kubeflow cluster alone)."""
  from pipelines import vertex_runner
  local = dataclasses.replace(cfg, cloud=dataclasses.replace(
      cfg.cloud, training=dataclasses.replace(cfg.cloud.training, enabled=False),
      dataflow=dataclasses.replace(cfg.cloud.dataflow, runner="DirectRunner")))
  pipeline = vertex_runner.build_pipeline(local)
  trainer = next(c for c in pipeline.components if c.id == "Trainer")
  assert trainer.executor_spec.executor_class is run_parameters.Executor
  assert issubclass(run_parameters.Executor, trainer_executor.GenericExecutor)
  assert "ai_platform_training_args" not in trainer.exec_properties["custom_config"]
  assert pipeline.beam_pipeline_args == ["--runner=DirectRunner", "--project=colorize-test"]


def test_ingestion_runs_tfx_example_gen_driver_as_pre_cache_check(compiled):
  """CocoIngest is a FileBasedExampleGen: Vertex resolves the span and fingerprints it before the cache lookup."""
  spec = compiled["job"]["pipelineSpec"]
  assert _tasks(spec)["CocoIngest"]["cachingOptions"] == {"enableCache": True}
  container = _executor(spec, "CocoIngest")["container"]
  check = container["lifecycle"]["preCacheCheck"]
  assert check["command"] == ["python", "-m", "tfx.orchestration.kubeflow.v2.file_based_example_gen.driver"]
  assert check["args"][:2] == ["--json_serialized_invocation_args", "{{$}}"]
  assert json.loads(_param(spec, "CocoIngest", "input_config")) == {
      "splits": [{"name": "photos", "pattern": "span-{SPAN}/*/*"}]}
  # No other step has one: the rest is cached on its inputs (the Examples this check keys).
  others = [t for t in _tasks(spec) if t != "CocoIngest" and "container" in _executor(spec, t)]
  assert others and not any("lifecycle" in _executor(spec, t)["container"] for t in others)


def _pre_cache_check(spec, input_base, workdir):
  """Runs the compiled pre-cache check of CocoIngest the way Vertex does: TFX's driver module, its
  compiled arguments, `{{$}}` replaced by an ExecutorInput holding the task's parameters."""
  from google.protobuf import json_format
  from kfp.pipeline_spec import pipeline_spec_pb2
  from tfx.orchestration.kubeflow.v2 import compiler_utils
  from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver
  from tfx.types import standard_artifacts

  invocation = pipeline_spec_pb2.ExecutorInput()
  for name, parameter in _tasks(spec)["CocoIngest"]["inputs"]["parameters"].items():
    if "runtimeValue" in parameter:  # input_base is the data_root runtime parameter, set below
      json_format.ParseDict(parameter["runtimeValue"]["constantValue"], invocation.inputs.parameters[name])
  invocation.inputs.parameters["input_base"].string_value = str(input_base)
  invocation.outputs.output_file = str(workdir / "executor_output.json")
  invocation.outputs.artifacts["examples"].artifacts.append(pipeline_spec_pb2.RuntimeArtifact(
      uri=str(workdir / "examples"), type=pipeline_spec_pb2.ArtifactTypeSchema(
          instance_schema=compiler_utils.get_artifact_schema(standard_artifacts.Examples))))
  args = [json_format.MessageToJson(invocation) if a == "{{$}}" else a
          for a in _executor(spec, "CocoIngest")["container"]["lifecycle"]["preCacheCheck"]["args"]]
  driver.main(driver._parse_flags(args))
  output = json.loads((workdir / "executor_output.json").read_text())
  return output["parameterValues"]


def test_pre_cache_check_resolves_the_newest_span_and_sees_a_changed_photo(compiled, coco128, tmp_path):
  from components.ingest import snapshot
  spec = compiled["job"]["pipelineSpec"]
  photos = sorted((coco128 / "train2017").glob("*.jpg"))[:6]
  bucket = tmp_path / "coco"
  for span, names in ((1, photos[:3]), (2, photos[:5])):
    (bucket / f"span-{span}" / "train2017").mkdir(parents=True)
    (bucket / f"span-{span}" / "annotations").mkdir()
    (bucket / f"span-{span}" / "annotations" / "instances_train2017.json").write_text('{"images": []}')
    for p in names:
      shutil.copy(p, bucket / f"span-{span}" / "train2017" / p.name)
  (tmp_path / "runs").mkdir()

  def check():
    workdir = tmp_path / "runs" / str(len(list((tmp_path / "runs").iterdir())))
    workdir.mkdir()
    return _pre_cache_check(spec, bucket, workdir)

  first = check()
  assert first["span"] == 2
  assert json.loads(first["input_config"])["splits"][0]["pattern"] == "span-2/*/*"
  assert "num_files:6," in first["input_fingerprint"]  # 5 photos and the annotations
  # The executor ingests the snapshot folder of the resolved pattern.
  assert snapshot.root(str(bucket), first["input_config"]) == str(bucket / "span-2")
  assert check() == first  # unchanged: the same cache key
  shutil.copy(photos[5], bucket / "span-2" / "train2017" / photos[0].name)  # a photo rewritten in place
  changed = check()
  assert changed["span"] == 2 and changed["input_fingerprint"] != first["input_fingerprint"]


def test_new_model_check_gates_evaluation_serving_gate_push_and_card(compiled):
  spec = compiled["job"]["pipelineSpec"]
  tasks = _tasks(spec)
  check = tasks["NewModelCheck"]
  # The candidate and the stock resolver's latest blessed model, which the Vertex compiler can express.
  assert check["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "Trainer"
  assert check["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]["producerTask"] == \
      "latest_blessed_model_resolver-model-resolver"
  assert "triggerPolicy" not in check
  condition = f"metadata['{gates.PASSED}'] == 1.0)"
  for name in ("Evaluator", "EvaluationReport", "ServingGate", "Pusher", "EndpointPusher", "ModelCard"):
    assert tasks[name]["triggerPolicy"]["condition"].endswith(condition), name
    assert "NewModelCheck" in tasks[name]["dependentTasks"], name
  assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]["producerTask"] == \
      "latest_blessed_model_resolver-model-resolver"
  # The serving gate runs in the project image on the candidate, and both pushers take its InfraBlessing.
  gate = _executor(spec, "ServingGate")["container"]
  assert gate["image"] == IMAGE
  assert tasks["ServingGate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "Trainer"
  for pusher in ("Pusher", "EndpointPusher"):
    assert tasks[pusher]["inputs"]["artifacts"]["infra_blessing"]["taskOutputArtifact"] == {
        "producerTask": "ServingGate", "outputArtifactKey": "blessing"}
  budget = config_lib.ServingGateConfig()
  assert float(_param(spec, "ServingGate", "max_memory_mb")) == budget.max_memory_mb  # numbers compile as text
  assert float(_param(spec, "ServingGate", "max_request_seconds")) == budget.max_request_seconds
  # The card follows the push and reads every verdict.
  card_inputs = {k: v["taskOutputArtifact"]["producerTask"]
                 for k, v in tasks["ModelCard"]["inputs"]["artifacts"].items()}
  assert card_inputs["pushed_model"] == "Pusher" and card_inputs["infra_blessing"] == "ServingGate"
  assert card_inputs["new_model"] == "NewModelCheck" and card_inputs["blessing"] == "Evaluator"


def test_runtime_parameters_are_typed_and_default_to_the_config(compiled, cfg):
  job = compiled["job"]
  spec = job["pipelineSpec"]
  declared = spec["root"]["inputDefinitions"]["parameters"]
  assert declared == {"data_root": {"type": "STRING"}, "epochs": {"type": "INT"}, "batch_size": {"type": "INT"},
                      "learning_rate": {"type": "DOUBLE"}, "weights": {"type": "STRING"}}
  assert set(declared) == set(pipeline_lib.RUNTIME_PARAMETERS)
  # Without a default a parameter fails the job; each defaults to the configured value.
  assert job["runtimeConfig"]["parameters"] == {
      "data_root": {"stringValue": "gs://colorize-bucket/coco"}, "epochs": {"intValue": "7"},
      "batch_size": {"intValue": "16"}, "learning_rate": {"doubleValue": cfg.train.learning_rate},
      "weights": {"stringValue": "imagenet"}}
  trainer = _tasks(spec)["Trainer"]["inputs"]["parameters"]
  for name in ("epochs", "batch_size", "learning_rate", "weights"):
    assert trainer[name] == {"componentInputParameter": name}
  # The Embed step builds Inception-ResNet-v2 with the Trainer's weights.
  assert _tasks(spec)["Embed"]["inputs"]["parameters"]["weights"] == {"componentInputParameter": "weights"}


def test_run_parameters_reach_the_training_settings():
  folded = run_parameters.fold({"epochs": 3, "batch_size": 32, "learning_rate": 0.01, "run_fn": "trainer.task.run_fn",
                                "custom_config": json.dumps({"train": {"epochs": 7, "seed": 5}, "other": 1})})
  assert set(folded) == {"run_fn", "custom_config"}
  assert json.loads(folded["custom_config"]) == {
      "train": {"epochs": 3, "batch_size": 32, "learning_rate": 0.01, "seed": 5}, "other": 1}


def test_production_profile_network_private_ips_and_cmek_on_dataflow(compiled):
  spec = compiled["job"]["pipelineSpec"]
  args = _executor(spec, "CocoIngest")["container"]["args"]
  options = pipeline_options.PipelineOptions(_beam_args(args))
  worker = options.view_as(pipeline_options.WorkerOptions)
  assert worker.subnetwork == "regions/europe-west4/subnetworks/colorize-private"
  assert worker.use_public_ips is False
  assert options.view_as(pipeline_options.GoogleCloudOptions).dataflow_kms_key == KMS_KEY


def test_production_profile_training_job(compiled):
  from google.cloud import aiplatform_v1
  spec = compiled["job"]["pipelineSpec"]
  custom = json.loads(_param(spec, "Trainer", "custom_config"))
  job = dict(custom["ai_platform_training_args"])
  job_spec = job["job_spec"]
  assert job_spec["network"] == NETWORK
  assert job_spec["scheduling"] == {"timeout": "23400s", "restart_job_on_worker_restart": True}
  assert job_spec["tensorboard"] == TENSORBOARD
  assert job_spec["base_output_directory"] == {"output_uri_prefix": "gs://colorize-bucket/runs/training"}
  assert job["encryption_spec"] == {"kms_key_name": KMS_KEY}
  # The job TFX sends is the API's own CustomJob message (an unknown or misspelt field would not parse).
  job.pop("project")
  message = aiplatform_v1.CustomJob(display_name="t", **job)
  assert message.job_spec.scheduling.timeout.total_seconds() == 6.5 * 3600


def test_compile_refuses_the_default_service_account_unless_allowed(tmp_path):
  config = json.loads(json.dumps(CONFIG))
  del config["cloud"]["service_account"]
  del config["cloud"]["training"]["tensorboard"]
  (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
  from click.testing import CliRunner

  from cli import main as cli
  result = CliRunner().invoke(cli.main, ["compile", "--config", str(tmp_path / "config.yaml"),
                                         "--output", str(tmp_path / "p.json")])
  assert result.exit_code == 2, result.output
  assert "Compute Engine default service account" in result.output
  assert "--allow-default-service-account" in result.output
  assert not (tmp_path / "p.json").exists()
  # submit and schedule compile too: they refuse alike, and take the flag the refusal names.
  for command in (["submit", "--dry-run"], ["schedule", "--cron", "0 3 * * 1", "--dry-run"]):
    args = [*command, "--config", str(tmp_path / "config.yaml")]
    refused = CliRunner().invoke(cli.main, args)
    assert refused.exit_code == 2 and "--allow-default-service-account" in refused.output, refused.output
    allowed = CliRunner().invoke(cli.main, [*args, "--allow-default-service-account"])
    assert allowed.exit_code == 0 and "serviceAccount" not in allowed.output, allowed.output


def test_the_production_profile_is_a_complete_cloud_config_for_coco_on_an_l4():
  cfg = config_lib.load(str(REPO / "configs" / "vertex.yaml"))
  cloud = cloud_config.require(cfg)
  assert (cloud.training.machine_type, cloud.training.accelerator_type) == ("g2-standard-8", "NVIDIA_L4")
  assert (cfg.train.batch_size, cfg.train.epochs, cfg.ingest.test_fraction) == (32, 20, 0.01)
  assert cfg.train.weights == "imagenet"
  assert cloud.service_account  # compile refuses the default account
  assert cloud.training.timeout_hours == 24
