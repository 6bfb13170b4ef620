"""Typed, checked configuration sections: the one rule for turning a mapping into a dataclass.

The pipeline config (pipelines/config.py), the cloud section (pipelines/cloud_config.py)
and the Trainer's settings (trainer/settings.py) are dataclasses with typed defaults.
A value is accepted only with its field's exact type (an int where an int is due; a
float or an int where a float is; never a bool for a number), finite, and a tuple of
strings as a list or a comma-separated string (what a command-line flag gives).
Every error is a ConfigError naming the key.

A field declared with `setting(default, "help")` carries its help text in its metadata: the
command line's flags and the docs are generated from the fields themselves, so a key and its
flag cannot drift apart.
"""
import dataclasses
import math
import typing
from typing import Any, Dict, Iterator, Mapping, Tuple, Type, TypeVar

T = TypeVar("T")


HELP = "help"


class ConfigError(ValueError):
  """A configuration value is missing or invalid; the message says which."""


def setting(default: Any, help: str) -> Any:
  """A dataclass field with its default and its help text (the flag's, the docs')."""
  if isinstance(default, (dict, list)):
    return dataclasses.field(default_factory=lambda: type(default)(default), metadata={HELP: help})
  return dataclasses.field(default=default, metadata={HELP: help})


def leaves(cls: type, prefix: str = "", roots: Mapping[str, type] = ()) -> Iterator[Tuple[str, dataclasses.Field, Any]]:
  """Every key of a config class and its sections, in declaration order: (dotted name, field, default).

  A field whose type is a config class (or Optional of one) is a section, walked in turn;
  roots names the class of a section whose field says none (dotted name -> class).
  """
  roots = dict(roots)
  for f in dataclasses.fields(cls):
    dotted = prefix + f.name
    section = roots.get(dotted) or _config_class(f.type)
    if section is not None:
      yield from leaves(section, dotted + ".", roots)
    else:
      default = f.default_factory() if f.default is dataclasses.MISSING else f.default
      yield dotted, f, default


def _config_class(annotation: Any):
  """The config class of a section's annotation (X or Optional[X]); None for a key's."""
  candidates = [annotation, *(typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else ())]
  return next((c for c in candidates if dataclasses.is_dataclass(c) and isinstance(c, type)), None)


def build(cls: Type[T], values: Any, section: str, nested: Mapping[str, Any] = ()) -> T:
  """`values` (a mapping) -> cls(...), each value checked against its field's default.

  nested: fields already built by the caller (sub-sections); they are not read from values.
  """
  if not isinstance(values, dict):
    raise ConfigError(f"{section or 'the config'} must be a mapping of keys to values, got {values!r}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  prefix = f"{section}." if section else ""
  defaults = cls(**dict(nested))
  kwargs: Dict[str, Any] = dict(nested)
  for key, value in values.items():
    if key not in fields or key in nested:
      raise ConfigError(f"unknown config key {prefix}{key}; known: {', '.join(sorted(set(fields) - set(nested)))}")
    kwargs[key] = typed(f"{prefix}{key}", value, getattr(defaults, key))
  return cls(**kwargs)


def typed(key: str, value: Any, default: Any) -> Any:
  """`value` if it has the type of `default` (see the module doc), else a ConfigError."""
  if isinstance(default, bool):
    ok = isinstance(value, bool)
  elif isinstance(default, int):  # every whole number ends up in a 64-bit proto field or tensor
    ok = isinstance(value, int) and not isinstance(value, bool) and -2 ** 63 <= value < 2 ** 63
  elif isinstance(default, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    value = float(value) if ok else value
  elif isinstance(default, str):
    ok = isinstance(value, str)
  elif isinstance(default, tuple):
    if isinstance(value, str):
      value = tuple(v.strip() for v in value.split(",") if v.strip())
    ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    value = tuple(value) if ok else value
  else:
    raise TypeError(f"{key}: no rule for fields of type {type(default).__name__}")
  if not ok:
    want = "a list of strings" if isinstance(default, tuple) else _kind(default)
    out_of_range = type(default) is int and type(value) is int
    finite = " (finite)" if isinstance(default, float) else " (64-bit)" if out_of_range else ""
    raise ConfigError(f"{key} must be {want}{finite}, got {value!r}")
  return value


def check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _kind(value: Any) -> str:
  names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
           dict: "a mapping", list: "a list", tuple: "a list", type(None): "nothing"}
  return names.get(type(value), type(value).__name__)
