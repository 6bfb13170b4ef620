"""The config's flags, generated from its fields, and the config they build.

Every key of the one config (pipelines/config.py, trainer/settings.py, pipelines/cloud_config.py)
is a dataclass field declared with `config_fields.setting(default, "help")`; each becomes one
flag with that help, so a key cannot lack a flag and a flag cannot tell another story than
its key. A command takes the flags of the sections it uses (`ingest` no training flags).

Naming rule: the key's path without its section (ingest, train, evaluate, cloud, ...), `_` and `.`
spelled `-`: ingest.data_root is --data-root, cloud.dataflow.max_workers is
--dataflow-max-workers. A true/false key is --key/--no-key. FLAG_NAMES keeps older or
clearer names. A list key takes comma-separated values and may be repeated; a mapping key
takes a YAML mapping.
"""
import dataclasses
import errno
import os
import stat
from typing import Any, Dict, Iterator, Tuple

import click

from imaging import tree
from pipelines import cloud_config
from pipelines import config as config_lib
from schemas import config_fields
from trainer import settings

# The config's sections a command reads, by what it leaves out (top-level keys go to every
# command): a section added to the config later reaches `run` and the cloud commands by itself.
ALL_BUT_CLOUD = "all but cloud"
INGEST = "ingest only"
CLOUD = "all"
RUN = ALL_BUT_CLOUD

FLAG_NAMES = {
    "beam_pipeline_args": "--beam-arg",
    "enable_cache": "--cache/--no-cache",
    "ingest.keep_grayscale": "--keep-grayscale/--drop-grayscale",
    "cloud.labels": "--label",
    "cloud.training.enabled": "--vertex-training/--no-vertex-training",
    "cloud.training.machine_type": "--trainer-machine-type",
    "cloud.training.accelerator_type": "--gpu-type",
    "cloud.training.accelerator_count": "--gpu-count",
    "cloud.training.replica_count": "--trainer-replicas",
    "cloud.deploy.enabled": "--deploy/--no-deploy",
    "cloud.deploy.endpoint_name": "--endpoint-name",
    "data_gate.accept": "--accept-data-change",
}
CHOICES = {
    "train.global_features": settings.GLOBAL_FEATURES,
    "train.strategy": settings.STRATEGIES,
    "train.mixed_precision": settings.MIXED_PRECISION,
    "cloud.dataflow.runner": cloud_config.RUNNERS,
}
# List keys whose values may hold commas themselves (Beam arguments): repeat the flag instead.
WHOLE_VALUES = ("beam_pipeline_args",)
# Keys given as repeated KEY=VALUE flags (cloud_config parses them) rather than one mapping.
KEY_VALUE_LISTS = ("cloud.labels",)
_LONGEST_DEFAULT_SHOWN = 40


@dataclasses.dataclass(frozen=True)
class Key:
  """One config key and its flag."""
  dotted: str                 # ingest.data_root
  default: Any
  help: str
  flag: str                   # --data-root, or --on/--off for a true/false key

  @property
  def param(self) -> str:
    """Click's name of the flag's value: the key with `__` for `.` (an identifier)."""
    return self.dotted.replace(".", "__")


def keys(sections: str = CLOUD) -> Iterator[Key]:
  """The keys of the top level and of the sections a command reads, in declaration order."""
  roots = {"cloud": cloud_config.CloudConfig}
  for dotted, field, default in config_fields.leaves(config_lib.PipelineConfig, roots=roots):
    section = dotted.split(".")[0] if "." in dotted else ""
    if section and ((sections == INGEST and section != "ingest") or (sections == ALL_BUT_CLOUD and section == "cloud")):
      continue
    yield Key(dotted, default, field.metadata.get(config_fields.HELP, ""), flag_name(dotted, default))


def flag_name(dotted: str, default: Any) -> str:
  if dotted in FLAG_NAMES:
    return FLAG_NAMES[dotted]
  name = "-".join(dotted.split(".")[1:] or [dotted]).replace("_", "-")  # without its section
  return f"--{name}/--no-{name}" if isinstance(default, bool) else f"--{name}"


def config_options(sections: str = RUN):
  """A decorator adding --config and the flags of the top level and `sections`; they override the file."""
  flags: Dict[str, str] = {}
  for key in keys(sections):
    for flag in key.flag.split("/"):
      if flag in flags:  # a new key whose name another section already uses: name it in FLAG_NAMES
        raise ValueError(f"{key.dotted} and {flags[flag]} would both be {flag}: add one to cli/options.py FLAG_NAMES")
      flags[flag] = key.dotted

  def decorate(f):
    options = [click.option(
        "--config", "config_path", type=click.Path(),
        help="A JSON or YAML config file with the keys below nested by section (see configs/demo.yaml), "
             f"or the name of a bundled one: {', '.join(config_lib.BUNDLED_CONFIGS)}. Flags override it.")]
    options += [_option(k) for k in keys(sections)]
    for option in reversed(options):
      f = option(f)
    return f
  return decorate


def _option(key: Key):
  shown = _shown_default(key)
  kwargs: Dict[str, Any] = {"help": f"{key.help}  [default: {shown}]" if shown else key.help, "default": None}
  d = key.default
  if key.dotted in CHOICES:
    kwargs["type"] = click.Choice(CHOICES[key.dotted])
  elif isinstance(d, (bool, int, float)):
    kwargs["type"] = type(d)
  if isinstance(d, tuple) or key.dotted in KEY_VALUE_LISTS:
    kwargs.update(multiple=True, callback=_list_value(key.dotted))
    kwargs["default"] = ()
  elif isinstance(d, dict):
    kwargs.update(callback=_mapping_value, metavar="YAML")
  return click.option(key.flag, key.param, **kwargs)


def _shown_default(key: Key) -> str:
  d = key.default
  if isinstance(d, bool):
    on, off = key.flag.split("/")
    return on if d else off
  text = str(d)
  # A default the help itself describes ("Default: the bundled demo data") is not shown twice.
  if d in ("", (), {}) or len(text) > _LONGEST_DEFAULT_SHOWN or "Default:" in key.help:
    return ""
  return text


def _list_value(dotted: str):
  def convert(ctx, param, values: Tuple[str, ...]):
    del ctx, param
    if dotted in WHOLE_VALUES or dotted in KEY_VALUE_LISTS:
      return values
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())
  return convert


def _mapping_value(ctx, param, value):
  del ctx
  if value is None:
    return None
  import yaml
  try:
    parsed = yaml.safe_load(value)
  except yaml.YAMLError as e:
    raise click.BadParameter(f"not a YAML mapping: {' '.join(str(e).split())}", param=param) from e
  if not isinstance(parsed, dict):
    raise click.BadParameter(f"must be a YAML mapping like '{{KEY: VALUE}}', got {value!r}", param=param)
  return parsed


class OutputPath(click.Path):
  """A file (`folder=False`) or folder a command writes, checked when the command line is parsed.

  Every option naming where output goes takes this type, so a path that cannot be written is one
  line (exit code 2) before any work, never a traceback after it: a file needs an existing,
  writable folder (a mistyped folder is not created for it); a folder is created with its parents,
  so the nearest one that exists must be a writable folder. gs:// paths are the command's to check.
  """

  def __init__(self, folder: bool = False):
    super().__init__(file_okay=not folder, dir_okay=folder)
    self.folder = folder

  def convert(self, value, param, ctx):
    value = super().convert(value, param, ctx)  # an existing path of the wrong kind fails here
    path = os.fspath(value)
    if not path.strip():
      self.fail("an empty path names nothing to write", param, ctx)
    if path.startswith("gs://"):
      return value
    try:
      mode = os.stat(path).st_mode
    except OSError as e:
      if os.path.lexists(path):  # a broken link or a link loop
        reason = tree.unreachable_reason(path, e)
        self.fail(f"cannot write {path!r}: {'it is a ' if e.errno in (errno.ENOENT, errno.ELOOP) else ''}{reason}",
                  param, ctx)
      mode = None
    if mode is not None and not (stat.S_ISDIR(mode) if self.folder else stat.S_ISREG(mode)):
      # A FIFO would block the write until someone reads it; a device is no place for output.
      self.fail(f"cannot write {path!r}: it is {tree.kind(mode)}", param, ctx)
    writable = path
    if not os.path.exists(path):
      writable = os.path.dirname(os.path.abspath(path))
      if not self.folder and not os.path.isdir(writable):
        what = "is not a folder" if os.path.exists(writable) else "does not exist: create it first"
        self.fail(f"cannot write {path!r}: {writable} {what}", param, ctx)
      while not os.path.exists(writable):
        writable = os.path.dirname(writable)
      if not os.path.isdir(writable):
        self.fail(f"cannot create {path!r}: {writable} is not a folder", param, ctx)
    if not os.access(writable, os.W_OK):
      read_only = os.statvfs(writable).f_flag & os.ST_RDONLY
      self.fail(f"cannot write into {writable}: {os.strerror(errno.EROFS if read_only else errno.EACCES)}",
                param, ctx)
    return value


def load_config(config_path, overrides) -> config_lib.PipelineConfig:
  """The config file (if any) with the flags given on top, checked; a bad value is a usage error."""
  overrides = {k.replace("__", "."): v for k, v in overrides.items() if v is not None and v != ()}
  try:
    return config_lib.load(config_path, overrides)
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
