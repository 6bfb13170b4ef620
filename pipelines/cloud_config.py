"""The `cloud` section of the one config: where and how the pipeline runs on Vertex AI / Kubeflow.

It lives in the same config file as everything else (`cloud:` key, see pipelines/config.py)
and turns into the four things the cloud needs, all built here so nothing is spelled twice:
Beam arguments for Dataflow (ingestion and evaluation), the Vertex Training custom job for
the Trainer (GPUs, multi-worker pools), per-step container resources and, when `deploy` is
enabled, the Vertex AI Endpoint each blessed model is deployed to.

Values are checked twice: shape and ranges when the file is read (`from_dict`), and the
cross-section rules that only matter in the cloud (gs:// paths, an image) in `require`,
which the compile/submit/schedule commands call.
"""
import dataclasses
import os
import re
from typing import Any, Dict, List, Optional

from components import endpoint_rollout
from schemas import config_fields
from schemas.config_fields import ConfigError

# GPUs attach only to some machine families; Vertex rejects other pairs when the job starts,
# which is an hour too late. A family not listed here is not checked.
_GPUS_BY_MACHINE_FAMILY = {
    "n1": ("NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4",
           "NVIDIA_TESLA_T4"),
    "g2": ("NVIDIA_L4",),
    "a2": ("NVIDIA_TESLA_A100", "NVIDIA_A100_80GB"),
    "a3": ("NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB"),
    # General-purpose families without GPUs.
    "e2": (), "n2": (), "n2d": (), "c2": (), "c3": (), "t2d": (),
}
# A Compute Engine machine type: family-kind[-size], e.g. n1-standard-4, a2-highgpu-1g, n1-custom-4-16384.
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
# Where the Dockerfile puts the project inside the image (WORKDIR); tests/test_dockerfile.py
# pins the two together.
IMAGE_PROJECT_ROOT = "/pipeline"
# The same tree on this machine: paths inside it are rewritten to IMAGE_PROJECT_ROOT at compile time.
LOCAL_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_ACCELERATOR = re.compile(r"^nvidia-[a-z0-9-]+$")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Vertex AI's prebuilt TensorFlow serving images, by TF version: the one the model is exported
# with (tests/test_deploy.py pins it to the installed TensorFlow).
SERVING_TF_VERSION = "2-16"
_SERVING_IMAGE = "{registry}-docker.pkg.dev/vertex-ai/prediction/tf2-{device}.{version}:latest"
# Vertex AI publishes them in three multi-regions; regions elsewhere pull from us.
_SERVING_REGISTRY_BY_REGION_PREFIX = {"europe-": "europe", "asia-": "asia", "australia-": "asia"}
# Vertex AI shows display names of up to 128 characters.
_DISPLAY_NAME = re.compile(r"^[^\x00-\x1f]{1,128}$")
_NETWORK = re.compile(r"^projects/[0-9]+/global/networks/[a-z][a-z0-9-]{0,62}$")
_SUBNETWORK = re.compile(r"^(https://www\.googleapis\.com/compute/v1/projects/[a-z][a-z0-9-]+/)?"
                         r"regions/[a-z]+-[a-z]+[0-9]+/subnetworks/[a-z][a-z0-9-]{0,62}$")
_KMS_KEY = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+$")
_TENSORBOARD = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)/tensorboards/[0-9]+$")

RUNNERS = ("DataflowRunner", "DirectRunner")
_check = config_fields.check
setting = config_fields.setting


@dataclasses.dataclass
class DataflowConfig:
  """Beam runner for the Beam steps (ingestion, evaluation)."""
  runner: str = setting("DataflowRunner", "Beam runner of the ingestion and evaluation steps: DataflowRunner, or DirectRunner inside the step's container.")
  region: str = setting("", "Dataflow region; '' = cloud.region.")
  temp_location: str = setting("", "Dataflow's gs:// temp folder; '' = <output_root>/tmp/dataflow.")
  machine_type: str = setting("n1-standard-4", "Dataflow worker machine type.")
  max_workers: int = setting(8, "Most Dataflow workers a Beam step scales to.")
  disk_size_gb: int = setting(0, "Dataflow worker disk size in GB; 0 = Dataflow's default.")
  embed_machine_type: str = setting("n1-standard-8", "The Embed step's worker machine type (train.global_features: precomputed).")
  embed_accelerator: str = setting("nvidia-tesla-t4", "The Embed step's Dataflow GPU type, e.g. nvidia-tesla-t4; '' = CPU workers of machine_type.")
  embed_accelerator_count: int = setting(1, "GPUs per Embed worker.")
  subnetwork: str = setting(
      "", "Subnetwork of the Dataflow workers: regions/REGION/subnetworks/NAME (or its full URL); '' = default")
  use_public_ips: bool = setting(
      True, "false: Dataflow workers get private IPs only (the subnetwork needs Private Google Access)")


@dataclasses.dataclass
class TrainingConfig:
  """The Trainer as a Vertex AI Training custom job (the project image, GPUs)."""
  enabled: bool = setting(True, "Run the Trainer as a Vertex AI Training job; off = inside its pipeline step's own container.")
  machine_type: str = setting("g2-standard-8", "Training machine type.")
  accelerator_type: str = setting("NVIDIA_L4", "GPU type of each training machine: NVIDIA_L4, NVIDIA_TESLA_A100, ...; '' = CPU only.")
  accelerator_count: int = setting(1, "GPUs per training machine (MirroredStrategy uses them all).")
  replica_count: int = setting(1, "Training machines; > 1 = a chief and n-1 workers (MultiWorkerMirroredStrategy).")
  timeout_hours: float = setting(
      0.0, "Stop the training job after this many hours; 0 = Vertex AI's limit (7 days)")
  restart_on_worker_restart: bool = setting(
      False, "Restart every worker when one is restarted (multi-worker jobs resume from their checkpoint)")
  tensorboard: str = setting(
      "", "Vertex AI TensorBoard the training logs stream to: projects/P/locations/REGION/tensorboards/ID "
          "(needs cloud.service_account)")


@dataclasses.dataclass
class DeployConfig:
  """Each blessed model deployed to a Vertex AI Endpoint (TFX's Vertex Pusher), besides the push to
  serving_model_dir. The endpoint is found by display name, and created the first time.
  """
  enabled: bool = setting(False, "Also deploy each blessed model to a Vertex AI Endpoint.")
  endpoint_name: str = setting("colorize", "The endpoint's display name; created by the first deployment.")
  machine_type: str = setting("n1-standard-4", "Serving machine type.")
  accelerator_type: str = setting("", "Serving GPU type, e.g. NVIDIA_TESLA_T4 (then a GPU serving image); '' = CPU.")
  accelerator_count: int = setting(1, "GPUs per serving machine.")
  min_replicas: int = setting(1, "Fewest serving machines.")
  max_replicas: int = setting(1, "Most serving machines; above min_replicas Vertex AI autoscales between them.")
  traffic_percentage: int = setting(100, "The new model's share of requests (0-100); the older models kept (keep_models) share the rest.")
  serving_image: str = setting("", "Serving container image; '' = Vertex AI's prebuilt TF 2.16 image (CPU or GPU) near the region.")
  keep_models: int = setting(
      2, "This pipeline's models that stay deployed on the endpoint, the new one included (the others to roll "
         "back to); older ones are undeployed after each push")


@dataclasses.dataclass
class StepResources:
  cpu: float = setting(4.0, "vCPUs of each pipeline step's container.")
  memory_gb: float = setting(16.0, "Memory of each pipeline step's container, in GB.")


@dataclasses.dataclass
class CloudConfig:
  project: str = setting("", "GCP project id.")
  region: str = setting("us-central1", "Vertex AI (and Dataflow) region.")
  image: str = setting("", "The project image (Dockerfile), e.g. us-central1-docker.pkg.dev/PROJECT/colorize/colorize:0.1.0.")
  service_account: str = setting("", "Service account email the pipeline, Dataflow and training run as; '' = the default one.")
  labels: Dict[str, str] = setting({}, "Labels on every job, KEY=VALUE.")
  network: str = setting(
      "", "VPC network the pipeline job and training job are peered with: projects/PROJECT_NUMBER/global/"
          "networks/NAME; '' = none")
  encryption_key: str = setting(
      "", "Cloud KMS key (CMEK) for the pipeline job, Dataflow jobs and training job: projects/P/locations/"
          "REGION/keyRings/R/cryptoKeys/K; '' = Google-managed keys")
  dataflow: DataflowConfig = dataclasses.field(default_factory=DataflowConfig)
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
  deploy: DeployConfig = dataclasses.field(default_factory=DeployConfig)
  resources: StepResources = dataclasses.field(default_factory=StepResources)  # every container step
  step_resources: Dict[str, StepResources] = setting({}, "Container resources by component id, e.g. {Trainer: {cpu: 8, memory_gb: 32}}; others get resources.")

  def validate(self) -> "CloudConfig":
    _check(not self.project or bool(_PROJECT.match(self.project)),
           f"cloud.project must be a GCP project id (6-30 lowercase letters, digits, '-'), got {self.project!r}")
    _check(bool(_REGION.match(self.region)), f"cloud.region must look like 'us-central1', got {self.region!r}")
    _check(not self.service_account or self.service_account.endswith(".gserviceaccount.com"),
           "cloud.service_account must be a service account email (...gserviceaccount.com), "
           f"got {self.service_account!r}")
    for key, value in self.labels.items():
      _check(bool(_LABEL.match(str(key))),
             f"cloud.labels: key {key!r} must start with a lowercase letter and hold only a-z 0-9 _ - (max 63)")
      _check(bool(_LABEL_VALUE.match(str(value))),
             f"cloud.labels: value {value!r} of {key!r} may hold only a-z 0-9 _ - (max 63)")
    _check(not self.network or bool(_NETWORK.match(self.network)),
           f"cloud.network must be projects/PROJECT_NUMBER/global/networks/NAME, got {self.network!r}")
    key = _KMS_KEY.match(self.encryption_key)
    _check(not self.encryption_key or bool(key),
           f"cloud.encryption_key must be projects/P/locations/L/keyRings/R/cryptoKeys/K, got {self.encryption_key!r}")
    _check(not key or key.group("location") == self.region,
           f"cloud.encryption_key must be a key in cloud.region {self.region} (Vertex AI uses keys of its own "
           f"region), got one in {key and key.group('location')}")
    d, t = self.dataflow, self.training
    _check(not d.subnetwork or bool(_SUBNETWORK.match(d.subnetwork)),
           f"cloud.dataflow.subnetwork must be regions/REGION/subnetworks/NAME, got {d.subnetwork!r}")
    _check(t.timeout_hours >= 0, f"cloud.training.timeout_hours must be >= 0, got {t.timeout_hours}")
    board = _TENSORBOARD.match(t.tensorboard)
    _check(not t.tensorboard or bool(board),
           f"cloud.training.tensorboard must be projects/P/locations/L/tensorboards/ID, got {t.tensorboard!r}")
    _check(not board or board.group("location") == self.region,
           f"cloud.training.tensorboard must be in cloud.region {self.region}, got {t.tensorboard!r}")
    _check(not t.tensorboard or bool(self.service_account),
           "cloud.training.tensorboard needs cloud.service_account (Vertex AI writes to TensorBoard as that account)")
    _check(d.runner in RUNNERS,
           f"cloud.dataflow.runner must be DataflowRunner or DirectRunner, got {d.runner!r}")
    _check(not d.region or bool(_REGION.match(d.region)),
           f"cloud.dataflow.region must look like 'us-central1', got {d.region!r}")
    _check(not d.temp_location or d.temp_location.startswith("gs://"),
           f"cloud.dataflow.temp_location must be a gs:// path, got {d.temp_location!r}")
    _check(d.max_workers >= 1, f"cloud.dataflow.max_workers must be >= 1, got {d.max_workers}")
    _check(d.disk_size_gb >= 0, f"cloud.dataflow.disk_size_gb must be >= 0, got {d.disk_size_gb}")
    _check_machine_type("cloud.dataflow.machine_type", d.machine_type)
    if d.embed_accelerator:
      _check(bool(_ACCELERATOR.match(d.embed_accelerator)),
             f"cloud.dataflow.embed_accelerator must be a Dataflow GPU type like nvidia-tesla-t4, got "
             f"{d.embed_accelerator!r}")
      _check(d.embed_accelerator_count >= 1,
             f"cloud.dataflow.embed_accelerator_count must be >= 1, got {d.embed_accelerator_count}")
      _check_machine_type("cloud.dataflow.embed_machine_type", d.embed_machine_type, " with embed_accelerator")
    _check_machine_type("cloud.training.machine_type", t.machine_type)
    _check(t.replica_count >= 1, f"cloud.training.replica_count must be >= 1, got {t.replica_count}")
    if t.accelerator_type:
      _check(t.accelerator_count >= 1,
             f"cloud.training.accelerator_count must be >= 1 with accelerator_type {t.accelerator_type}")
    p = self.deploy
    _check(bool(_DISPLAY_NAME.match(p.endpoint_name)) and bool(p.endpoint_name.strip()),
           f"cloud.deploy.endpoint_name must be 1-128 printable characters, got {p.endpoint_name!r}")
    _check_machine_type("cloud.deploy.machine_type", p.machine_type)
    if p.accelerator_type:
      _check(p.accelerator_count >= 1,
             f"cloud.deploy.accelerator_count must be >= 1 with accelerator_type {p.accelerator_type}")
    _check(p.min_replicas >= 1, f"cloud.deploy.min_replicas must be >= 1, got {p.min_replicas}")
    _check(p.max_replicas >= p.min_replicas,
           f"cloud.deploy.max_replicas must be >= min_replicas ({p.min_replicas}), got {p.max_replicas}")
    _check(0 <= p.traffic_percentage <= 100,
           f"cloud.deploy.traffic_percentage must be 0-100, got {p.traffic_percentage}")
    _check(p.keep_models >= 1, f"cloud.deploy.keep_models must be >= 1 (the new model counts), got {p.keep_models}")
    _check(not p.serving_image or "/" in p.serving_image,
           f"cloud.deploy.serving_image must be a container image URI, got {p.serving_image!r}")
    steps = [(f"step_resources.{k}", v) for k, v in self.step_resources.items()]
    for name, r in [("resources", self.resources)] + steps:
      _check(r.cpu > 0, f"cloud.{name}.cpu must be > 0, got {r.cpu}")
      _check(r.memory_gb > 0, f"cloud.{name}.memory_gb must be > 0, got {r.memory_gb}")
    return self


def from_dict(values: Dict[str, Any]) -> CloudConfig:
  """The `cloud:` mapping of a config file (or flags) -> a checked CloudConfig; unknown keys are errors."""
  if not isinstance(values, dict):
    raise ConfigError(f"cloud must be a mapping of keys to values, got {values!r}")
  values = dict(values)
  nested = {
      "dataflow": config_fields.build(DataflowConfig, values.pop("dataflow", None) or {}, "cloud.dataflow"),
      "training": config_fields.build(TrainingConfig, values.pop("training", None) or {}, "cloud.training"),
      "deploy": config_fields.build(DeployConfig, values.pop("deploy", None) or {}, "cloud.deploy"),
      "resources": config_fields.build(StepResources, values.pop("resources", None) or {}, "cloud.resources"),
  }
  steps = values.pop("step_resources", None) or {}
  if not isinstance(steps, dict):
    raise ConfigError(f"cloud.step_resources must map component ids to {{cpu, memory_gb}}, got {steps!r}")
  nested["step_resources"] = {
      str(k): config_fields.build(StepResources, v or {}, f"cloud.step_resources.{k}") for k, v in steps.items()}
  labels = values.pop("labels", None) or {}
  if isinstance(labels, (list, tuple)):
    labels = _parse_labels(labels)
  if not isinstance(labels, dict):
    raise ConfigError(f"cloud.labels must be a mapping or KEY=VALUE strings, got {labels!r}")
  nested["labels"] = {str(k): str(v) for k, v in labels.items()}
  return config_fields.build(CloudConfig, values, "cloud", nested=nested).validate()


def require_project(cfg) -> CloudConfig:
  """The cloud section of `cfg`, checked only for what talking to the project needs (project, region):
  listing or operating what already runs there builds nothing.
  """
  cloud = getattr(cfg, "cloud", None)
  if cloud is None:
    raise ConfigError("running in the cloud needs a `cloud:` section in the config file "
                      "(project, region, image) or the --project/--image flags")
  _check(bool(cloud.project), "cloud.project must be set (the GCP project id)")
  return cloud


def require(cfg) -> CloudConfig:
  """The cloud section of `cfg` (a PipelineConfig), checked against the rest of it for a cloud run."""
  cloud = require_project(cfg)
  _check(bool(cloud.image), "cloud.image must be set: the project image built from the Dockerfile and pushed "
         "to Artifact Registry, e.g. us-central1-docker.pkg.dev/PROJECT/colorize/colorize:0.1.0")
  _check(cfg.output_root.startswith("gs://"),
         f"output_root must be a gs:// prefix for a cloud run (pipeline root and pushed models go there), "
         f"got {cfg.output_root!r}")
  _check(cfg.ingest.data_root.startswith("gs://") or in_project(cfg.ingest.data_root),
         f"ingest.data_root must be a gs:// COCO root for a cloud run (upload it with `colorize upload`) "
         f"or lie inside the project (the image holds it), got {cfg.ingest.data_root!r}")
  # TFX's Kubeflow V2 compiler builds only LatestArtifact and LatestBlessedModel resolvers.
  _check(cfg.ingest.train_spans == 1,
         f"ingest.train_spans must be 1 for a cloud run (the Vertex / Kubeflow V2 compiler has no span range "
         f"resolver; let each snapshot hold all photos so far instead), got {cfg.ingest.train_spans}")
  if cloud.training.enabled:
    _check_gpu("cloud.training", cloud.training.machine_type, cloud.training.accelerator_type)
  if cloud.deploy.enabled:
    _check_gpu("cloud.deploy", cloud.deploy.machine_type, cloud.deploy.accelerator_type)
  if cloud.training.enabled and cloud.training.replica_count > 1:
    _check(cfg.train.strategy in ("auto", "multi_worker"),
           f"cloud.training.replica_count={cloud.training.replica_count} trains on several machines: "
           f"train.strategy must be auto or multi_worker, got {cfg.train.strategy!r}")
  return cloud


def beam_pipeline_args(cfg) -> List[str]:
  """Beam arguments for every Beam step: Dataflow with the project image as SDK container."""
  cloud = require(cfg)
  if cloud.dataflow.runner == "DirectRunner":
    return ["--runner=DirectRunner", f"--project={cloud.project}", *cfg.beam_pipeline_args]
  return dataflow_args(cloud, cfg.output_root) + list(cfg.beam_pipeline_args)


def dataflow_args(cloud: CloudConfig, output_root: str) -> List[str]:
  """Dataflow with the project image as SDK container (the Beam steps, `colorize photos --runner
  DataflowRunner`); temp files under output_root/tmp/dataflow unless cloud.dataflow.temp_location.
  """
  d = cloud.dataflow
  temp = d.temp_location or output_root.rstrip("/") + "/tmp/dataflow"
  args = [
      "--runner=DataflowRunner",
      f"--project={cloud.project}",
      f"--region={d.region or cloud.region}",
      f"--temp_location={temp}",
      f"--machine_type={d.machine_type}",
      f"--max_num_workers={d.max_workers}",
      # Workers run the project image: same code and locked dependencies as the pipeline
      # step that launched them, nothing staged or pip-installed at start-up.
      f"--sdk_container_image={cloud.image}",
      "--sdk_location=container",
      "--experiments=use_runner_v2",
  ]
  if d.disk_size_gb:
    args.append(f"--disk_size_gb={d.disk_size_gb}")
  if d.subnetwork:
    args.append(f"--subnetwork={d.subnetwork}")
  if not d.use_public_ips:
    args.append("--no_use_public_ips")
  if cloud.encryption_key:
    args.append(f"--dataflow_kms_key={cloud.encryption_key}")
  if cloud.service_account:
    args.append(f"--service_account_email={cloud.service_account}")
  args += [f"--labels={k}={v}" for k, v in sorted(cloud.labels.items())]
  return args


def embed_beam_pipeline_args(cfg) -> List[str]:
  """Beam arguments added for the Embed step: Dataflow GPU workers, one SDK process each
  (several processes would each load Inception-ResNet-v2 onto the same GPU).
  """
  d = require(cfg).dataflow
  if d.runner == "DirectRunner" or not d.embed_accelerator:
    return []
  return [
      f"--machine_type={d.embed_machine_type}",
      f"--dataflow_service_options=worker_accelerator=type:{d.embed_accelerator};"
      f"count:{d.embed_accelerator_count};install-nvidia-driver",
      "--experiments=no_use_multiple_sdk_containers",
  ]


def vertex_training_args(cfg) -> Optional[Dict[str, Any]]:
  """custom_config entries that make the Trainer a Vertex AI Training custom job, or None."""
  cloud = require(cfg)
  t = cloud.training
  if not t.enabled:
    return None
  from tfx import v1 as tfx

  machine_spec = {"machine_type": t.machine_type}
  if t.accelerator_type:
    machine_spec.update(accelerator_type=t.accelerator_type, accelerator_count=t.accelerator_count)
  # The container command is set by TFX (python -m tfx.scripts.run_executor ...).
  pool = {"machine_spec": machine_spec, "container_spec": {"image_uri": cloud.image}}
  # Pool 0 is the chief; pool 1 holds the other workers. Vertex writes TF_CONFIG for both,
  # which is how trainer/strategy.py picks MultiWorkerMirroredStrategy.
  pools = [dict(pool, replica_count=1)]
  if t.replica_count > 1:
    pools.append(dict(pool, replica_count=t.replica_count - 1))
  job_spec: Dict[str, Any] = {"worker_pool_specs": pools}
  if cloud.service_account:
    job_spec["service_account"] = cloud.service_account
  if cloud.network:
    job_spec["network"] = cloud.network
  scheduling = {}
  if t.timeout_hours:
    scheduling["timeout"] = f"{round(t.timeout_hours * 3600)}s"
  if t.restart_on_worker_restart:
    scheduling["restart_job_on_worker_restart"] = True
  if scheduling:
    job_spec["scheduling"] = scheduling
  if t.tensorboard:
    # Vertex AI streams the job's logs from <base_output_directory>/logs to the TensorBoard.
    job_spec["tensorboard"] = t.tensorboard
    job_spec["base_output_directory"] = {"output_uri_prefix": cfg.output_root.rstrip("/") + "/training"}
  job: Dict[str, Any] = {"project": cloud.project, "job_spec": job_spec}
  if cloud.encryption_key:
    job["encryption_spec"] = {"kms_key_name": cloud.encryption_key}
  if cloud.labels:
    job["labels"] = dict(cloud.labels)
  return _on_vertex(cloud, {tfx.extensions.google_cloud_ai_platform.TRAINING_ARGS_KEY: job})


def vertex_serving_args(cfg) -> Optional[Dict[str, Any]]:
  """custom_config of the EndpointPusher deploying to cloud.deploy's endpoint, or None (not enabled).

  TFX's Vertex Pusher's entries, read by components/endpoint_rollout as TFX reads them: the
  endpoint found by display name (created the first time), the pushed SavedModel uploaded as a
  Model with the serving image and deployed with these arguments of aiplatform's Model.deploy;
  and the rollout's own entry: how many of this pipeline's models stay deployed, and the label
  value that marks them as this pipeline's.
  """
  cloud = require(cfg)
  p = cloud.deploy
  if not p.enabled:
    return None
  from tfx import v1 as tfx

  args: Dict[str, Any] = {
      "project": cloud.project,
      "endpoint_name": p.endpoint_name,
      "machine_type": p.machine_type,
      "min_replica_count": p.min_replicas,
      "max_replica_count": p.max_replicas,
      "traffic_percentage": p.traffic_percentage,
  }
  if p.accelerator_type:
    args.update(accelerator_type=p.accelerator_type, accelerator_count=p.accelerator_count)
  if cloud.service_account:
    args["service_account"] = cloud.service_account
  if cloud.labels:
    args["labels"] = dict(cloud.labels)
  ext = tfx.extensions.google_cloud_ai_platform
  rollout = {"keep_models": p.keep_models, "owner": _label_value(cfg.pipeline_name)}
  return _on_vertex(cloud, {ext.VERTEX_CONTAINER_IMAGE_URI_KEY: serving_image(cloud), ext.SERVING_ARGS_KEY: args,
                            endpoint_rollout.ROLLOUT_KEY: rollout})


def _on_vertex(cloud: CloudConfig, entries: Dict[str, Any]) -> Dict[str, Any]:
  """custom_config that sends a TFX Vertex extension component's work to Vertex AI in cloud.region."""
  from tfx import v1 as tfx

  ext = tfx.extensions.google_cloud_ai_platform
  return {ext.ENABLE_VERTEX_KEY: True, ext.VERTEX_REGION_KEY: cloud.region, **entries}


def serving_image(cloud: CloudConfig) -> str:
  """cloud.deploy.serving_image, or Vertex AI's prebuilt TensorFlow serving image for it."""
  if cloud.deploy.serving_image:
    return cloud.deploy.serving_image
  registry = next((r for prefix, r in _SERVING_REGISTRY_BY_REGION_PREFIX.items() if cloud.region.startswith(prefix)),
                  "us")
  return _SERVING_IMAGE.format(registry=registry, device="gpu" if cloud.deploy.accelerator_type else "cpu",
                               version=SERVING_TF_VERSION)


def in_project(path: str) -> bool:
  return os.path.abspath(path).startswith(LOCAL_PROJECT_ROOT + os.sep)


def accelerator_types() -> List[str]:
  """GPU types Vertex AI Training accepts, from the aiplatform API definition itself."""
  from google.cloud.aiplatform_v1.types import accelerator_type
  return [a.name for a in accelerator_type.AcceleratorType if a.name.startswith("NVIDIA_")]


def resources_for(cloud: CloudConfig, component_id: str) -> StepResources:
  return cloud.step_resources.get(component_id, cloud.resources)


def _check_gpu(section: str, machine_type: str, accelerator_type: str) -> None:
  if not accelerator_type:
    return
  known = accelerator_types()
  _check(accelerator_type in known,
         f"{section}.accelerator_type must be one of {', '.join(known)} (or '' for CPU), got {accelerator_type!r}")
  family = machine_type.split("-")[0]
  allowed = _GPUS_BY_MACHINE_FAMILY.get(family)
  _check(allowed is None or accelerator_type in allowed,
         f"{section}: {accelerator_type} cannot be attached to {machine_type}; "
         f"{family}-* machines take {', '.join(allowed) if allowed else 'no GPU'}")


def _check_machine_type(key: str, value: str, needed_for: str = "") -> None:
  _check(bool(_MACHINE_TYPE.match(value)), f"{key} must be a machine type like n1-standard-4{needed_for}, got {value!r}")


def _label_value(text: str) -> str:
  """Text as a label value: lowercase, characters other than a-z 0-9 _ - as '-', at most 63."""
  return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _parse_labels(items) -> Dict[str, str]:
  labels = {}
  for item in items:
    key, sep, value = str(item).partition("=")
    if not sep:
      raise ConfigError(f"cloud.labels: {item!r} must be KEY=VALUE")
    labels[key.strip()] = value.strip()
  return labels
