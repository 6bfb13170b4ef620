"""The one configuration object: CLI flags / a config file -> PipelineConfig -> create_pipeline.

A config file is JSON or YAML with the same nested keys as these dataclasses
(`{"ingest": {"max_images": 500}, "train": {"epochs": 3}}`); flags override it.
Every value is validated here, so a bad config fails before any component runs.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

DEFAULT_PIPELINE_NAME = "colorize"
# Bundled real COCO-layout demo data, relative to the project root.
DEMO_DATA_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "coco_demo")
DEFAULT_OUTPUT_ROOT = "colorize_runs"
LIVE = "live"
PRECOMPUTED = "precomputed"
GLOBAL_FEATURES = (LIVE, PRECOMPUTED)


class ConfigError(ValueError):
  """A configuration value is missing or invalid; the message says which."""


@dataclasses.dataclass
class IngestConfig:
  data_root: str = DEMO_DATA_ROOT        # COCO root (train2017/, val2017/, annotations/) or image folder; local or gs://
  max_images: int = 0                    # 0 = all
  categories: Tuple[str, ...] = ()       # keep only images containing one of these COCO category names
  test_images: int = 1000                # held-out test split size (the Evaluator's protocol)
  test_fraction: float = 0.2             # used instead when the dataset has too few images for test_images
  eval_fraction: float = 0.1             # share of the remaining images used for per-epoch validation
  keep_grayscale: bool = False           # keep genuinely black-and-white photos in the train/eval splits


@dataclasses.dataclass
class TrainConfig:
  epochs: int = 2
  steps_per_epoch: int = 0               # 0 = one pass over the train split per epoch
  eval_steps: int = 0                    # 0 = one pass over the eval split
  batch_size: int = 8                    # per replica; global batch = batch_size x replicas
  learning_rate: float = 1e-3
  weights: str = "imagenet"              # "imagenet", "none" (random init, offline) or a local .h5/.keras weights file
  # live: Inception-ResNet-v2 runs in every training step; precomputed: once per photo in
  # the Embed component, and training runs only the colorizer head (README).
  global_features: str = LIVE
  augment: bool = True
  seed: int = 42
  strategy: str = "auto"                 # auto | cpu | one_device | mirrored | multi_worker
  mixed_precision: str = "auto"          # auto (on for GPUs) | on | off
  checkpoint_steps: int = 200            # save resume state every N steps (and at each epoch end)


@dataclasses.dataclass
class EvalConfig:
  mse_upper_bound: float = 0.02          # absolute bound on pixelwise ab MSE for blessing
  mse_change_tolerance: float = 1e-3     # may be this much worse than the last blessed model
  grid_rows: int = 8                     # test images in the (gray | prediction | truth) PNG grid


@dataclasses.dataclass
class PipelineConfig:
  pipeline_name: str = DEFAULT_PIPELINE_NAME
  output_root: str = DEFAULT_OUTPUT_ROOT  # local folder or gs:// prefix holding pipeline root, metadata and pushed models
  # ML Metadata SQLite file of local runs; "" = under output_root, or under
  # DEFAULT_OUTPUT_ROOT when output_root is gs:// (SQLite cannot live in a bucket).
  metadata_file: str = ""
  beam_pipeline_args: Tuple[str, ...] = ()
  enable_cache: bool = True
  ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  evaluate: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  # pipelines/cloud_config.CloudConfig: the `cloud:` section, only read by compile/submit/schedule.
  cloud: Optional[Any] = None

  @property
  def pipeline_root(self) -> str:
    return _join(self.output_root, "pipeline", self.pipeline_name)

  @property
  def metadata_path(self) -> str:
    if self.metadata_file:
      return self.metadata_file
    root = DEFAULT_OUTPUT_ROOT if self.output_root.startswith("gs://") else self.output_root
    return os.path.join(root, "metadata", self.pipeline_name, "metadata.db")

  @property
  def serving_model_dir(self) -> str:
    return _join(self.output_root, "serving_model", self.pipeline_name)

  def validate(self) -> "PipelineConfig":
    _check(bool(self.pipeline_name) and self.pipeline_name.replace("-", "").replace("_", "").isalnum(),
           f"pipeline_name must be letters, digits, '-' or '_', got {self.pipeline_name!r}")
    _check(bool(self.output_root), "output_root must be set")
    _check(not self.metadata_file.startswith("gs://"),
           f"metadata_file must be a local path (SQLite), got {self.metadata_file!r}")
    i, t, e = self.ingest, self.train, self.evaluate
    _check(bool(i.data_root), "ingest.data_root must be set")
    _check(i.max_images >= 0, f"ingest.max_images must be >= 0, got {i.max_images}")
    _check(i.test_images >= 1, f"ingest.test_images must be >= 1, got {i.test_images}")
    _check(0 < i.test_fraction < 1, f"ingest.test_fraction must be in (0, 1), got {i.test_fraction}")
    _check(0 < i.eval_fraction < 1, f"ingest.eval_fraction must be in (0, 1), got {i.eval_fraction}")
    _check(t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}")
    _check(t.steps_per_epoch >= 0, f"train.steps_per_epoch must be >= 0, got {t.steps_per_epoch}")
    _check(t.eval_steps >= 0, f"train.eval_steps must be >= 0, got {t.eval_steps}")
    _check(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    _check(t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}")
    _check(t.weights in ("imagenet", "none") or t.weights.endswith((".h5", ".keras")),
           f"train.weights must be 'imagenet', 'none' or a .h5/.keras weights file, got {t.weights!r}")
    _check(t.global_features in GLOBAL_FEATURES,
           f"train.global_features must be {' or '.join(GLOBAL_FEATURES)}, got {t.global_features!r}")
    _check(t.strategy in ("auto", "cpu", "one_device", "mirrored", "multi_worker"),
           f"train.strategy must be auto|cpu|one_device|mirrored|multi_worker, got {t.strategy!r}")
    _check(t.mixed_precision in ("auto", "on", "off"),
           f"train.mixed_precision must be auto|on|off, got {t.mixed_precision!r}")
    _check(t.checkpoint_steps >= 1, f"train.checkpoint_steps must be >= 1, got {t.checkpoint_steps}")
    _check(e.mse_upper_bound > 0, f"evaluate.mse_upper_bound must be > 0, got {e.mse_upper_bound}")
    _check(e.mse_change_tolerance >= 0,
           f"evaluate.mse_change_tolerance must be >= 0, got {e.mse_change_tolerance}")
    _check(e.grid_rows >= 1, f"evaluate.grid_rows must be >= 1, got {e.grid_rows}")
    return self

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def from_dict(values: Dict[str, Any]) -> PipelineConfig:
  """Nested dict (from a file or flags) -> a validated PipelineConfig; unknown keys are errors."""
  values = dict(values)
  sections = {"ingest": IngestConfig, "train": TrainConfig, "evaluate": EvalConfig}
  kwargs = {}
  for name, cls in sections.items():
    kwargs[name] = _build(cls, values.pop(name, None) or {}, name)
  cloud = values.pop("cloud", None)
  if cloud is not None:
    from pipelines import cloud_config  # pylint: disable=g-import-not-at-top
    kwargs["cloud"] = cloud_config.from_dict(cloud)
  top = _build(PipelineConfig, values, "")
  cfg = dataclasses.replace(top, **kwargs).validate()
  # Artifact URIs recorded in ML Metadata must not depend on the directory a command ran in.
  cfg.output_root = _absolute(cfg.output_root)
  cfg.metadata_file = cfg.metadata_file and _absolute(cfg.metadata_file)
  cfg.ingest.data_root = _absolute(cfg.ingest.data_root)
  return cfg


def load(path: Optional[str], overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
  """Reads a JSON/YAML config file (if any) and applies flag overrides on top."""
  values: Dict[str, Any] = {}
  if path:
    if not os.path.exists(path):
      raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
      text = f.read()
    try:
      if path.endswith((".yaml", ".yml")):
        import yaml  # pylint: disable=g-import-not-at-top
        values = yaml.safe_load(text) or {}
      else:
        values = json.loads(text)
    except Exception as e:  # pylint: disable=broad-except
      raise ConfigError(f"cannot parse config file {path}: {e}") from e
    if not isinstance(values, dict):
      raise ConfigError(f"config file {path} must hold a mapping, got {type(values).__name__}")
  for dotted, value in (overrides or {}).items():
    if value is None:
      continue
    node = values
    *parents, leaf = dotted.split(".")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return from_dict(values)


def _build(cls, values: Dict[str, Any], section: str):
  fields = {f.name: f for f in dataclasses.fields(cls)}
  prefix = f"{section}." if section else ""
  kwargs = {}
  for key, value in values.items():
    if key not in fields or key in ("ingest", "train", "evaluate"):
      raise ConfigError(f"unknown config key {prefix}{key!r}; known: {sorted(fields)}")
    default = getattr(cls(), key)
    try:
      if isinstance(default, tuple):
        value = tuple(value.split(",") if isinstance(value, str) else value)
      elif isinstance(default, bool):
        if isinstance(value, str):
          value = {"true": True, "false": False, "1": True, "0": False}[value.lower()]
        value = bool(value)
      elif isinstance(default, (int, float, str)):
        value = type(default)(value)
    except (ValueError, KeyError, TypeError) as e:
      raise ConfigError(f"{prefix}{key}: cannot use {value!r} as {type(default).__name__}") from e
    kwargs[key] = value
  return cls(**kwargs)


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _absolute(path: str) -> str:
  return path if path.startswith("gs://") else os.path.abspath(path)


def _join(root: str, *parts: str) -> str:
  return "/".join([root.rstrip("/"), *parts]) if root.startswith("gs://") else os.path.join(root, *parts)
