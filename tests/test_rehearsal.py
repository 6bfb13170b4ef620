"""`colorize rehearse`: the compiled Vertex template runs here, and what would fail on Vertex fails here.

One template is compiled by the real CLI (offline) and rehearsed for three weeks of a schedule in one
work folder: week 1 on span 1, week 2 on span 2 (week 1's photos plus new ones), week 3 unchanged.
Tiny settings: a few real coco128 photos, random weights, one epoch of two steps.
"""
import json
import os
import re
import subprocess
import sys

from click.testing import CliRunner
from cloud_fixtures import REPO
from cloud_fixtures import offline_command
import image_files
import pytest
import tensorflow as tf
import yaml

from cli import main as cli
from cloud.rehearsal import engine
from cloud.rehearsal import image as image_lib
from schemas import features

IMAGE = "example.invalid/colorize:test"
CONFIG = {
    "output_root": "gs://rehearse-bucket/colorize",
    "ingest": {"data_root": "gs://rehearse-bucket/coco", "snapshot": "span-{SPAN}", "test_fraction": 0.3},
    "train": {"weights": "none", "epochs": 1, "steps_per_epoch": 2, "eval_steps": 1, "batch_size": 2},
    "evaluate": {"grid_rows": 2, "mse_upper_bound": 1.0, "mse_change_tolerance": 1.0},
    "cloud": {"project": "rehearse-test", "image": IMAGE,
              "service_account": "pipelines@rehearse-test.iam.gserviceaccount.com",
              "training": {"machine_type": "n1-standard-4", "accelerator_type": ""}},
}
RESOLVER = "latest_blessed_model_resolver-model-resolver"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("rehearsal_template")
  (tmp / "config.yaml").write_text(yaml.safe_dump(CONFIG))
  args, env = offline_command([sys.executable, "-c", "from cli.main import main; main()", "compile", "--config",
                               str(tmp / "config.yaml"), "--output", str(tmp / "pipeline.json")])
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  return tmp / "pipeline.json"


def _image_ids(examples_uri, split):
  files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
  records = tf.data.TFRecordDataset(files, compression_type="GZIP")
  return {int(tf.io.parse_single_example(r, {features.IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.int64)})
              [features.IMAGE_ID_KEY]) for r in records}


def _uri(result, task, key):
  (artifact,) = result.tasks[task].outputs[key]
  return artifact["uri"]


@pytest.mark.slow
def test_three_weeks_of_a_schedule_with_one_template(template, coco128, tmp_path):
  workdir = tmp_path / "rehearsals"
  bucket_coco = workdir / "gcs" / "rehearse-bucket" / "coco"  # gs://rehearse-bucket/coco
  lines = []

  ids = image_files.coco_ids(coco128)
  image_files.coco_root(coco128, bucket_coco / "span-1", ids[:10])
  week1 = engine.rehearse(str(template), str(workdir), echo=lines.append)
  assert {r.state for r in week1.tasks.values()} == {"ran", "resolved"}
  assert week1.tasks[RESOLVER].outputs["model"] == []  # nothing blessed before
  assert week1.tasks["Pusher"].outputs["pushed_model"][0]["metadata"]["pushed"] == 1
  # A task runs in the image tree: the schema file the JSON names inside the image (/pipeline/schemas/...)
  # was read from the image copy.
  assert (workdir / "image" / "schemas" / "schema.pbtxt").exists()
  assert tf.io.gfile.exists(f"{_uri(week1, 'ImportSchemaGen', 'schema')}/schema.pbtxt")
  # Every output is printed where it is.
  for result in week1.tasks.values():
    for artifacts in result.outputs.values():
      assert all(any(a["uri"] in line for line in lines) for a in artifacts)

  image_files.coco_root(coco128, bucket_coco / "span-2", ids[:14])  # week 1's photos and 4 new ones
  week2 = engine.rehearse(str(template), str(workdir))
  assert week2.tasks["CocoIngest"].state == "ran"
  # TFX's entrypoint writes the span the driver set as a custom property under "custom:span".
  assert week2.tasks["CocoIngest"].outputs["examples"][0]["metadata"]["custom:span"] == 2
  # The baseline is week 1's blessed model, found by the latest-blessed-model query.
  assert _uri(week2, RESOLVER, "model") == _uri(week1, "Trainer", "model")
  assert week2.tasks["Pusher"].outputs["pushed_model"][0]["metadata"]["pushed"] == 1
  # The held-out photos stay held out: week 1's test photos are week 2's test photos, never trained on.
  test1 = _image_ids(_uri(week1, "CocoIngest", "examples"), "test")
  test2 = _image_ids(_uri(week2, "CocoIngest", "examples"), "test")
  train2 = _image_ids(_uri(week2, "CocoIngest", "examples"), "train")
  assert test1 and test1 <= test2 and not test1 & train2

  week3 = engine.rehearse(str(template), str(workdir))  # no new photos
  for task in ("CocoIngest", "ImportSchemaGen", "Trainer"):
    assert week3.tasks[task].state == "cached", task
  assert _uri(week3, "Trainer", "model") == _uri(week2, "Trainer", "model")
  # The cached model is the latest blessed one: the new-model check stops the week, so it is neither
  # evaluated against itself nor pushed again.
  assert _uri(week3, RESOLVER, "model") == _uri(week3, "Trainer", "model")
  assert week3.tasks["NewModelCheck"].outputs["verdict"][0]["metadata"]["gate_passed"] == 0
  for task in ("Evaluator", "ServingGate", "Pusher", "ModelCard"):
    assert week3.tasks[task].state == "skipped", task
    assert not any(week3.tasks[task].outputs.values()), task
  pushed = workdir / "gcs" / "rehearse-bucket" / "colorize" / "serving_model" / "colorize"
  assert len(os.listdir(pushed)) == 2  # weeks 1 and 2


def _only(template, tmp_path, keep, edit=None):
  """The template cut down to the tasks `keep` (those with no inputs from others), edited by `edit`."""
  job = json.loads(template.read_text())
  tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
  for name in list(tasks):
    if name not in keep:
      del tasks[name]
  if edit:
    edit(job["pipelineSpec"])
  path = tmp_path / "cut.json"
  path.write_text(json.dumps(job))
  return str(path)


def _args(spec, task):
  label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
  return spec["deploymentSpec"]["executors"][label]["container"]["args"]


def test_a_wrong_executor_class_fails_as_on_vertex(template, tmp_path):
  def edit(spec):
    args = _args(spec, "ImportSchemaGen")
    args[args.index("--executor_class_path") + 1] = "tfx.components.schema_gen.import_schema_gen.executor.Nope"
  with pytest.raises(engine.RehearsalError, match="ImportSchemaGen.*Could not import .*Nope"):
    engine.rehearse(_only(template, tmp_path, {"ImportSchemaGen"}, edit), str(tmp_path / "w"), echo=lambda _: None)


def test_an_artifact_type_the_image_cannot_import_fails(template, tmp_path):
  def edit(spec):
    outputs = spec["components"]["ImportSchemaGen"]["outputDefinitions"]["artifacts"]
    outputs["schema"]["artifactType"] = {"instanceSchema": "title: colorize.NoSuchType\ntype: object\n"}
  with pytest.raises(engine.RehearsalError, match="colorize.NoSuchType"):
    engine.rehearse(_only(template, tmp_path, {"ImportSchemaGen"}, edit), str(tmp_path / "w"), echo=lambda _: None)


def test_parameter_types_and_runtime_parameters_are_checked_before_anything_runs(template, tmp_path):
  def edit(spec):
    parameters = spec["root"]["dag"]["tasks"]["CocoIngest"]["inputs"]["parameters"]
    parameters["max_images"] = {"runtimeValue": {"constantValue": {"stringValue": "12"}}}
  cut = _only(template, tmp_path, {"CocoIngest"}, edit)
  with pytest.raises(engine.RehearsalError, match="max_images is declared INT"):
    engine.rehearse(cut, str(tmp_path / "w"), echo=lambda _: None)
  with pytest.raises(engine.RehearsalError, match="no runtime parameter \\['epoch'\\]"):
    engine.rehearse(str(template), str(tmp_path / "w"), {"epoch": "3"}, echo=lambda _: None)
  assert not (tmp_path / "w" / "gcs").exists()
  # Through the command, a Trainer setting the step would refuse is refused now, as submit refuses it.
  for param, message in (("epochs=0", "train.epochs must be from 1"), ("learning_rate=-5", "train.learning_rate must"),
                         ("weights=bogus", "train.weights must be 'imagenet', 'none'")):
    result = CliRunner().invoke(cli.main, ["rehearse", str(template), "--workdir", str(tmp_path / "w2"),
                                           "--param", param])
    assert result.exit_code == 2 and message in result.output.splitlines()[-1], result.output
  assert not (tmp_path / "w2").exists()


def test_a_template_file_that_is_no_compiled_pipeline_is_one_line_at_once(tmp_path):
  os.mkfifo(tmp_path / "pipe.json")  # nobody writes into it: reading must not wait
  cases = {"pipe.json": "not a regular file: a named pipe (FIFO)",
           "five.json": "pipelineSpec is not a mapping", "root.json": "pipelineSpec.root is not a mapping",
           "executors.json": "pipelineSpec.deploymentSpec is not a mapping", "half.json": "cannot read the template"}
  contents = {"five.json": {"pipelineSpec": 5}, "root.json": {"pipelineSpec": {"root": 5}},
              "executors.json": {"pipelineSpec": {"root": {"dag": {"tasks": {}}}, "components": {},
                                                  "deploymentSpec": []}}}
  for name, content in contents.items():
    (tmp_path / name).write_text(json.dumps(content))
  (tmp_path / "half.json").write_text('{"pipelineSpec": {"ro')
  for name, message in cases.items():
    with pytest.raises(engine.RehearsalError, match=re.escape(message)):
      engine.rehearse(str(tmp_path / name), str(tmp_path / "w"), echo=lambda _: None)
    # Through the command: what the user gave is wrong, a usage error (exit code 2) in one line.
    result = CliRunner().invoke(cli.main, ["rehearse", str(tmp_path / name), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and message in result.output.splitlines()[-1], result.output
  assert not (tmp_path / "w").exists()


def test_filters_and_placeholders_the_rehearsal_cannot_read_fail(template, tmp_path):
  def edit(spec):
    queries = spec["deploymentSpec"]["executors"]["latest_blessed_model_resolver-model-blessing-resolver_executor"]
    queries["resolver"]["outputArtifactQueries"]["model_blessing"]["filter"] += " OR create_time>0"
  cut = _only(template, tmp_path, {"latest_blessed_model_resolver-model-blessing-resolver"}, edit)
  with pytest.raises(engine.RehearsalError, match="not rehearsed"):
    engine.rehearse(cut, str(tmp_path / "w"), echo=lambda _: None)


@pytest.mark.parametrize("executor", ["components.endpoint_rollout.executor.Executor",
                                      "tfx.extensions.google_cloud_ai_platform.pusher.executor.Executor"])
def test_a_template_that_deploys_to_an_endpoint_is_refused_before_anything_runs(template, tmp_path, executor):
  def edit(spec):
    args = _args(spec, "ImportSchemaGen")
    args[args.index("--executor_class_path") + 1] = executor
  with pytest.raises(engine.RehearsalError, match="Vertex AI Endpoint.*--no-deploy"):
    engine.rehearse(_only(template, tmp_path, {"ImportSchemaGen"}, edit), str(tmp_path / "w"), echo=lambda _: None)
  assert not (tmp_path / "w").exists()


def test_steps_import_only_what_the_image_holds(tmp_path):
  project = tmp_path / "project"
  for package in ("kept", "left_out"):
    (project / package).mkdir(parents=True)
    (project / package / "__init__.py").write_text("")
  (project / ".dockerignore").write_text("# only what the image needs\nleft_out\n**/__pycache__\n")
  root = image_lib.stage(str(tmp_path / "w"), str(project))
  assert sorted(os.listdir(root)) == [".dockerignore", "kept"]
  # A step process (the rehearsal's sitecustomize, the image folder as working folder) imports what the
  # image holds, not this project's packages, which this machine's editable install would find.
  hooks = tmp_path / "hooks"
  hooks.mkdir()
  (hooks / "sitecustomize.py").write_text(
      engine._SITECUSTOMIZE.format(path=str(REPO / "cloud" / "rehearsal" / "vertex_training.py")))
  env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
  env["PYTHONPATH"] = str(hooks)
  step = subprocess.run([sys.executable, "-c", "import kept\nimport left_out"], cwd=root, env=env,
                        capture_output=True, text=True)
  assert "No module named 'left_out'" in step.stderr
  step = subprocess.run([sys.executable, "-c", "import kept\nimport schemas"], cwd=root, env=env,
                        capture_output=True, text=True)
  assert "No module named 'schemas'" in step.stderr
