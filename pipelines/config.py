"""The one configuration object: CLI flags / a config file -> PipelineConfig -> create_pipeline.

A config file is JSON or YAML with the same nested keys as these dataclasses
(`{"ingest": {"max_images": 500}, "train": {"epochs": 3}}`); flags override it.
Every value is validated here, so a bad config fails before any component runs.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

from components.data_gate import checks
from components.ingest import snapshot
from pipelines import cloud_config
from schemas import config_fields
from schemas.config_fields import ConfigError  # the error every config module raises
from trainer import settings

# The pipeline's stages in order; `colorize run --until STAGE` stops after one.
# "embed" adds a step only with train.global_features: precomputed.
STAGES = ("ingest", "gate", "embed", "train", "evaluate", "push")
DEFAULT_PIPELINE_NAME = "colorize"
# Bundled real COCO-layout demo data, relative to the project root.
DEMO_DATA_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "coco_demo")
DEFAULT_OUTPUT_ROOT = "colorize_runs"

_check = config_fields.check


@dataclasses.dataclass
class IngestConfig:
  data_root: str = DEMO_DATA_ROOT        # COCO root (train2017/, val2017/, annotations/) or image folder; local or gs://
  # One snapshot per run (components/ingest/snapshot.py): the folder of a snapshot below data_root, with
  # TFX's {SPAN} or {YYYY}{MM}{DD} and optionally {VERSION}, e.g. "span-{SPAN}"; "" = data_root is the snapshot.
  snapshot: str = ""
  span: int = -1                         # which snapshot: -1 = the newest, N = span N
  snapshot_files: str = "*/*"            # glob of a snapshot's files TFX fingerprints: "*/*" COCO root, "*" flat folder
  train_spans: int = 1                   # the Trainer reads the latest N ingested spans (local runs only)
  max_images: int = 0                    # 0 = all
  categories: Tuple[str, ...] = ()       # keep only images containing one of these COCO category names
  test_fraction: float = 0.2             # share of the image-id hash space held out for test, the same in every span
  eval_fraction: float = 0.1             # share of the remaining images used for per-epoch validation
  keep_grayscale: bool = False           # keep genuinely black-and-white photos in the train/eval splits


@dataclasses.dataclass
class EvalConfig:
  mse_upper_bound: float = 0.02          # absolute bound on pixelwise ab MSE for blessing
  mse_change_tolerance: float = 1e-3     # may be this much worse than the last blessed model
  grid_rows: int = 8                     # test images in the (gray | prediction | truth) PNG grid


@dataclasses.dataclass
class GateConfig:
  """The data gate's thresholds (components/data_gate/checks.py says what each one measures)."""
  max_mean_shift: float = config_fields.setting(
      1.0, "Stop when a photo statistic's mean moves by more than this many of the last accepted span's "
           "standard deviations.")
  max_spread_ratio: float = config_fields.setting(
      2.5, "Stop when a photo statistic's standard deviation grows or shrinks by more than this factor "
           "against the last accepted span's.")
  max_skip_share: float = config_fields.setting(
      0.2, "Stop when more than this share of a span's files is skipped (broken, truncated, missing...; "
           "black-and-white photos not counted).")
  max_bw_share: float = config_fields.setting(
      0.25, "Stop when more than this share of a span's usable photos is black-and-white.")
  min_photos: int = config_fields.setting(
      20, "Compare a span's photo statistics with the last accepted span's only from this many photos on "
          "(fewer say little about a change).")
  accept: Tuple[str, ...] = config_fields.setting(
      (), "Accept these known changes for this run (statistic or share names as the gate's report names "
          "them, or 'all'); the span then becomes the baseline the next span is compared with.")

  def validate(self) -> None:
    _check(self.max_mean_shift > 0, f"gate.max_mean_shift must be > 0, got {self.max_mean_shift}")
    _check(self.max_spread_ratio > 1, f"gate.max_spread_ratio must be > 1, got {self.max_spread_ratio}")
    _check(self.min_photos >= 2, f"gate.min_photos must be >= 2, got {self.min_photos}")
    for key in ("max_skip_share", "max_bw_share"):
      _check(0 <= getattr(self, key) <= 1, f"gate.{key} must be in [0, 1], got {getattr(self, key)}")
    known = (*checks.STATISTICS, *checks.SHARES, checks.ACCEPT_ALL)
    unknown = sorted(set(self.accept) - set(known))
    _check(not unknown, f"gate.accept: unknown {', '.join(unknown)}; known: {', '.join(known)}")


@dataclasses.dataclass
class PipelineConfig:
  pipeline_name: str = DEFAULT_PIPELINE_NAME
  # A local folder or gs:// prefix holding the pipeline root, metadata and pushed models.
  output_root: str = DEFAULT_OUTPUT_ROOT
  # ML Metadata SQLite file of local runs; "" = under output_root, or under
  # DEFAULT_OUTPUT_ROOT when output_root is gs:// (SQLite cannot live in a bucket).
  metadata_file: str = ""
  beam_pipeline_args: Tuple[str, ...] = ()
  enable_cache: bool = True
  ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
  train: settings.TrainConfig = dataclasses.field(default_factory=settings.TrainConfig)
  evaluate: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  gate: GateConfig = dataclasses.field(default_factory=GateConfig)
  # The `cloud:` section, only read by compile/submit/schedule.
  cloud: Optional[cloud_config.CloudConfig] = None

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
    # TFX and TensorFlow find the files of an artifact by glob patterns under its folder.
    _check(not snapshot.GLOB_CHARS.search(_absolute(self.output_root)),
           f"output_root must not contain *, ? or [ (the paths below it are read as patterns; rename the "
           f"folder or link to it), got {_absolute(self.output_root)!r}")
    _check(not self.metadata_file.startswith("gs://"),
           f"metadata_file must be a local path (SQLite), got {self.metadata_file!r}")
    i, t, e = self.ingest, self.train, self.evaluate
    _check(bool(i.data_root), "ingest.data_root must be set")
    _check(i.max_images >= 0, f"ingest.max_images must be >= 0, got {i.max_images}")
    problem = snapshot.check(i.data_root, i.snapshot, i.snapshot_files)
    _check(problem is None, problem or "")
    _check(i.span >= snapshot.NEWEST, f"ingest.span must be -1 (the newest) or a span number, got {i.span}")
    _check(i.span == snapshot.NEWEST or bool(i.snapshot),
           f"ingest.span {i.span} needs ingest.snapshot, the folder pattern with {{SPAN}} or {{YYYY}}{{MM}}{{DD}}")
    _check(i.train_spans >= 1, f"ingest.train_spans must be >= 1, got {i.train_spans}")
    _check(0 < i.test_fraction < 1, f"ingest.test_fraction must be in (0, 1), got {i.test_fraction}")
    _check(0 < i.eval_fraction < 1, f"ingest.eval_fraction must be in (0, 1), got {i.eval_fraction}")
    t.validate()
    _check(e.mse_upper_bound > 0, f"evaluate.mse_upper_bound must be > 0, got {e.mse_upper_bound}")
    _check(e.mse_change_tolerance >= 0,
           f"evaluate.mse_change_tolerance must be >= 0, got {e.mse_change_tolerance}")
    _check(e.grid_rows >= 1, f"evaluate.grid_rows must be >= 1, got {e.grid_rows}")
    self.gate.validate()
    return self

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


def from_dict(values: Dict[str, Any]) -> PipelineConfig:
  """Nested dict (from a file or flags) -> a validated PipelineConfig; unknown keys are errors."""
  if not isinstance(values, dict):
    raise ConfigError(f"the config must be a mapping of keys to values, got {values!r}")
  nested = {
      "ingest": config_fields.build(IngestConfig, _section(values, "ingest"), "ingest"),
      "train": settings.from_dict(_section(values, "train")),
      "evaluate": config_fields.build(EvalConfig, _section(values, "evaluate"), "evaluate"),
      "gate": config_fields.build(GateConfig, _section(values, "gate"), "gate"),
  }
  if values.get("cloud") is not None:
    nested["cloud"] = cloud_config.from_dict(values["cloud"])
  top = {k: v for k, v in values.items() if k not in (*nested, "cloud")}
  cfg = config_fields.build(PipelineConfig, top, "", nested=nested).validate()
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
    try:
      with open(path, encoding="utf-8") as f:
        text = f.read()
    except OSError as e:
      raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
      if path.endswith((".yaml", ".yml")):
        import yaml
        values = yaml.safe_load(text) or {}
      else:
        values = json.loads(text)
    except ValueError as e:  # JSON and YAML syntax errors, bad encodings
      raise ConfigError(f"cannot parse config file {path}: {' '.join(str(e).split())}") from e
    if not isinstance(values, dict):
      raise ConfigError(f"config file {path} must hold a mapping, got {type(values).__name__}")
  for dotted, value in (overrides or {}).items():
    if value is None:
      continue
    node = values
    *parents, leaf = dotted.split(".")
    for p in parents:
      if node.get(p) is None:
        node[p] = {}
      if not isinstance(node[p], dict):
        raise ConfigError(f"{p} must be a mapping of keys to values, got {node[p]!r}")
      node = node[p]
    node[leaf] = value
  return from_dict(values)


def _section(values: Dict[str, Any], name: str) -> Any:
  """A section's mapping; an empty `name:` line in a YAML file means no keys."""
  section = values.get(name)
  return {} if section is None else section


def _absolute(path: str) -> str:
  return path if path.startswith("gs://") else os.path.abspath(path)


def _join(root: str, *parts: str) -> str:
  return "/".join([root.rstrip("/"), *parts]) if root.startswith("gs://") else os.path.join(root, *parts)
