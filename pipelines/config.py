"""The one configuration object: CLI flags / a config file -> PipelineConfig -> create_pipeline.

A config file is JSON or YAML with the same nested keys as these dataclasses
(`{"ingest": {"max_images": 500}, "train": {"epochs": 3}}`); flags override it.
Every value is validated here, so a bad config fails before any component runs.
"""
import collections.abc
import dataclasses
import errno
import json
import os
import stat
from typing import Any, Dict, Optional, Tuple

from components.ingest import snapshot
from pipelines import cloud_config
from schemas import config_fields
from schemas.config_fields import ConfigError  # the error every config module raises
from trainer import settings

# The pipeline's stages in order; `colorize run --until STAGE` stops after one.
# "embed" adds a step only with train.global_features: precomputed.
STAGES = ("ingest", "gate", "embed", "train", "evaluate", "push")
DEFAULT_PIPELINE_NAME = "colorize"
# The project's folders: the source tree, or site-packages for a non-editable install (pyproject.toml
# installs `data` and `configs` beside the packages).
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Bundled real COCO-layout demo data.
DEMO_DATA_ROOT = os.path.join(_PROJECT_ROOT, "data", "coco_demo")
# Config files shipped with the package: `--config demo` is configs/demo.yaml wherever it is installed.
CONFIGS_DIR = os.path.join(_PROJECT_ROOT, "configs")
BUNDLED_CONFIGS = ("demo", "vertex")
DEFAULT_OUTPUT_ROOT = "colorize_runs"
MAX_CONFIG_BYTES = 1_000_000

_check = config_fields.check
setting = config_fields.setting


@dataclasses.dataclass
class IngestConfig:
  data_root: str = setting(DEMO_DATA_ROOT, "COCO root (train2017/, val2017/, annotations/) or a folder of photos; local or gs://. Default: the bundled demo data.")
  snapshot: str = setting("", "One snapshot per run: its folder below data_root with TFX's {SPAN} or {YYYY}{MM}{DD} and optionally {VERSION}, e.g. 'span-{SPAN}'; '' = data_root is the snapshot.")
  span: int = setting(-1, "Which snapshot to ingest: -1 = the newest, N = span N (needs snapshot).")
  snapshot_files: str = setting("*/*", "Glob of a snapshot's files that TFX fingerprints: '*/*' for a COCO root, '*' for a flat folder.")
  train_spans: int = setting(1, "The Trainer reads the latest N ingested spans (local runs only).")
  max_images: int = setting(0, "Ingest at most this many photos (0 = all).")
  categories: Tuple[str, ...] = setting((), "Comma-separated COCO category names; keep only photos containing one of them.")
  test_fraction: float = setting(0.2, "Share of the photos held out for test, by a stable hash of the image id (the same in every span).")
  eval_fraction: float = setting(0.1, "Share of the remaining photos used for per-epoch validation.")
  keep_grayscale: bool = setting(False, "Keep genuinely black-and-white photos in the train/eval splits (default: drop them).")


@dataclasses.dataclass
class EvalConfig:
  mse_upper_bound: float = setting(0.02, "Bless only models whose test MSE (pixelwise, ab) is below this.")
  mse_change_tolerance: float = setting(1e-3, "A new model may be this much worse than the last blessed one and still be blessed.")
  grid_rows: int = setting(8, "Test photos in the (gray | prediction | truth) PNG grid.")


@dataclasses.dataclass
class ServingGateConfig:
  """The serving gate's budget (components/serving_gate): a model over it is not pushed."""
  max_load_seconds: float = config_fields.setting(
      120.0, "the serving gate's budget for loading the SavedModel in a clean TensorFlow process")
  max_request_seconds: float = config_fields.setting(
      60.0, "the serving gate's budget for one request (one photo through one signature, the large "
      "photo just under the model's size limit included)")
  max_memory_mb: int = config_fields.setting(
      6144, "the serving gate's budget for the serving process's peak resident memory (MB), model "
      "loaded and every request answered")


@dataclasses.dataclass
class DataGateConfig:
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
    _check(self.max_mean_shift > 0, f"data_gate.max_mean_shift must be > 0, got {self.max_mean_shift}")
    _check(self.max_spread_ratio > 1, f"data_gate.max_spread_ratio must be > 1, got {self.max_spread_ratio}")
    _check(self.min_photos >= 2, f"data_gate.min_photos must be >= 2, got {self.min_photos}")
    for key in ("max_skip_share", "max_bw_share"):
      _check(0 <= getattr(self, key) <= 1, f"data_gate.{key} must be in [0, 1], got {getattr(self, key)}")
    from components.data_gate import checks  # loads numpy: not for every command that reads a config
    known = (*checks.STATISTICS, *checks.SHARES, checks.ACCEPT_ALL)
    unknown = sorted(set(self.accept) - set(known))
    _check(not unknown, f"data_gate.accept: unknown {', '.join(unknown)}; known: {', '.join(known)}")


@dataclasses.dataclass
class PipelineConfig:
  pipeline_name: str = setting(DEFAULT_PIPELINE_NAME, "The pipeline's name: letters, digits, '-' or '_'; names its folders and ML Metadata contexts.")
  output_root: str = setting(DEFAULT_OUTPUT_ROOT, "A local folder or gs:// prefix for the pipeline root, ML Metadata and pushed models.")
  metadata_file: str = setting("", "The local runs' ML Metadata SQLite file; '' = under output_root, or under ./colorize_runs when output_root is gs://.")
  beam_pipeline_args: Tuple[str, ...] = setting((), "Beam pipeline arguments of every Beam step, e.g. --direct_running_mode=multi_processing.")
  enable_cache: bool = setting(True, "Reuse the outputs of unchanged steps.")
  ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
  train: settings.TrainConfig = dataclasses.field(default_factory=settings.TrainConfig)
  evaluate: EvalConfig = dataclasses.field(default_factory=EvalConfig)
  data_gate: DataGateConfig = dataclasses.field(default_factory=DataGateConfig)
  serving_gate: ServingGateConfig = dataclasses.field(default_factory=ServingGateConfig)
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
    g = self.serving_gate
    for key in ("max_load_seconds", "max_request_seconds"):
      _check(getattr(g, key) > 0, f"serving_gate.{key} must be > 0, got {getattr(g, key)}")
    _check(g.max_memory_mb > 0, f"serving_gate.max_memory_mb must be > 0, got {g.max_memory_mb}")
    self.data_gate.validate()
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
      "data_gate": config_fields.build(DataGateConfig, _section(values, "data_gate"), "data_gate"),
      "serving_gate": config_fields.build(ServingGateConfig, _section(values, "serving_gate"), "serving_gate"),
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


def _unique_keys(pairs) -> Dict[str, Any]:
  """A JSON object whose keys are all different: with a key twice, one value would silently win."""
  values: Dict[str, Any] = {}
  for key, value in pairs:
    if key in values:
      raise ValueError(f"key {key!r} appears twice in one mapping")
    values[key] = value
  return values


def _unique_keys_loader():
  """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""
  import yaml

  class UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
      seen = set()
      for key_node, _ in node.value:
        key = self.construct_object(key_node, deep=deep)
        if not isinstance(key, collections.abc.Hashable):
          continue  # PyYAML's own error follows
        if key in seen:
          raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                  key_node.start_mark)
        seen.add(key)
      return super().construct_mapping(node, deep=deep)

  return UniqueKeyLoader


def load(path: Optional[str], overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
  """Reads a JSON/YAML config file (if any; a BUNDLED_CONFIGS name is one of CONFIGS_DIR) and applies
  flag overrides on top.
  """
  values: Dict[str, Any] = {}
  if path in BUNDLED_CONFIGS and not os.path.isfile(path):
    path = os.path.join(CONFIGS_DIR, f"{path}.yaml")
  if path:
    text = _read_text(path)
    try:
      if path.endswith((".yaml", ".yml")):
        import yaml
        try:
          values = yaml.load(text, Loader=_unique_keys_loader()) or {}
        except yaml.YAMLError as e:
          raise ValueError(str(e)) from e
      else:
        values = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:  # syntax errors; nesting deeper than the parser goes
      raise ConfigError(f"cannot parse config file {path}: {' '.join(str(e).split())[:300]}") from e
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


def _read_text(path: str) -> str:
  """A config file's text: a regular file (a FIFO would block), at most MAX_CONFIG_BYTES, UTF-8 (a BOM is allowed)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
  except OSError as e:
    if e.errno == errno.ENOENT:
      raise ConfigError(f"config file not found: {path} (bundled configs: {', '.join(BUNDLED_CONFIGS)})") from e
    raise ConfigError(f"config file cannot be read ({e.strerror}): {path}") from e
  mode = os.fstat(fd).st_mode
  if not stat.S_ISREG(mode):
    os.close(fd)
    raise ConfigError(f"config file {path} is {'a directory' if stat.S_ISDIR(mode) else 'not a regular file'}")
  with os.fdopen(fd, "rb") as f:
    data = f.read(MAX_CONFIG_BYTES + 1)
  if len(data) > MAX_CONFIG_BYTES:
    raise ConfigError(f"config file {path} is over {MAX_CONFIG_BYTES // 1000} kB: not a config")
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ConfigError(f"config file {path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                      "save it as UTF-8") from e


def _section(values: Dict[str, Any], name: str) -> Any:
  """A section's mapping; an empty `name:` line in a YAML file means no keys."""
  section = values.get(name)
  return {} if section is None else section


def _absolute(path: str) -> str:
  return path if path.startswith("gs://") else os.path.abspath(path)


def _join(root: str, *parts: str) -> str:
  return "/".join([root.rstrip("/"), *parts]) if root.startswith("gs://") else os.path.join(root, *parts)
