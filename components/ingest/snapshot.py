"""Which snapshot of the input one ingestion reads, in the terms of TFX's file-based ExampleGen.

A snapshot is one COCO root or folder of photos. Without spans, `input_base` is the one
snapshot. With spans, `input_base` holds one folder per snapshot, named by a TFX span
pattern (`span-{SPAN}`, `{YYYY}-{MM}-{DD}`, optionally with `/v{VERSION}`), e.g.

  gs://bucket/coco/span-1/train2017/...   gs://bucket/coco/span-1/annotations/...
  gs://bucket/coco/span-2/train2017/...   gs://bucket/coco/span-2/annotations/...

The ingestion is described to TFX as one input split whose pattern is
`<snapshot folder>/<files glob>` (e.g. `span-{SPAN}/*/*`). TFX's driver
(tfx/components/example_gen/driver.py locally, its Kubeflow V2 twin as Vertex's
pre-cache check) resolves {SPAN}/{VERSION} to the newest snapshot, or to the one a
RangeConfig names, and hands the executor the resolved pattern; `root` turns that back
into the snapshot folder to ingest. The files glob decides what TFX's own fingerprint
sees on Vertex AI: `*/*` covers a COCO root (train2017/*, val2017/*, annotations/*), `*`
a flat folder of photos.

Locally the driver resolves with `resolve` instead of TFX's glob walk: every folder
of the data root gets a decision (a snapshot, ignored, or a one-line SnapshotError),
and no file below a snapshot folder is touched before the tree rule lists it.
"""
import dataclasses
import datetime
import errno
import os
import posixpath
import re
from typing import Dict, Iterator, List, Optional, Tuple

from components.ingest import roots
from imaging import tree

SPLIT_NAME = "photos"
NEWEST = -1
GLOB_CHARS = re.compile(r"[*?\[]")
# Left unescaped by TFX's glob-to-regex translation (tfx/components/example_gen/utils.py).
_REGEX_CHARS = re.compile(r"[\^$|{}]")
_SPECS = re.compile(r"\{(SPAN|VERSION)(:[^}]*)?\}|\{YYYY\}|\{MM\}|\{DD\}")
# TFX's spec syntax (tfx/components/example_gen/utils.py, which imports TensorFlow: a config check
# must answer in a second). tests/test_options.py holds spec_problem to TFX's verdicts.
_SPAN = re.compile(r"\{SPAN\}|\{SPAN:(?P<width>.*?)\}")
_VERSION = re.compile(r"\{VERSION\}|\{VERSION:(?P<width>.*?)\}")
_DATE_SPECS = ("{YYYY}", "{MM}", "{DD}")
_WIDTH = re.compile(r":[1-9][0-9]?")
_EPOCH = datetime.date(1970, 1, 1)
# CocoIngest's parameter holding the snapshot pattern as configured: the executor resolves it again
# to list the entries of the data root that are no snapshot. Not the driver: what it returns is
# part of TFX's cache key, and a README added to the data root would make an unchanged span
# ingest again.
PATTERN_KEY = "snapshot_pattern"


def pattern(snapshot: str, files: str) -> str:
  return posixpath.join(snapshot, files) if snapshot else files


def input_config(snapshot: str, files: str):
  """ExampleGen's Input proto: one split whose pattern lists one snapshot's files."""
  from tfx.proto import example_gen_pb2
  return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=SPLIT_NAME, pattern=pattern(snapshot, files))])


def range_config(span: int):
  """NEWEST: none (TFX's driver then takes the newest span); otherwise exactly that span (a RangeConfig)."""
  if span == NEWEST:
    return None
  from tfx.proto import range_config_pb2
  return range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
      start_span_number=span, end_span_number=span))


def check(input_base: str, snapshot: str, files: str) -> Optional[str]:
  """What is wrong with an input base, a snapshot folder pattern and a files glob, or None."""
  if GLOB_CHARS.search(input_base):
    # Both Beam's and TFX's listings would read them as wildcards.
    return f"ingest.data_root must not contain *, ? or [ (rename the folder or link to it), got {input_base!r}"
  if snapshot.startswith("/") or ".." in snapshot.split("/") or GLOB_CHARS.search(snapshot):
    return (f"ingest.snapshot must be a folder below data_root without wildcards (e.g. 'span-{{SPAN}}'), "
            f"got {snapshot!r}")
  if not files or files.startswith("/") or not GLOB_CHARS.search(files.split("/")[0]):
    return f"ingest.snapshot_files must be a glob starting with a wildcard (e.g. '*/*' or '*'), got {files!r}"
  if "{" in files:
    return f"ingest.snapshot_files {files!r}: span, version and date specs belong in ingest.snapshot"
  if not snapshot:
    return None
  if _REGEX_CHARS.search(input_base):
    return (f"with ingest.snapshot, ingest.data_root must not contain ^ $ | {{ or }}: TFX finds span folders with a "
            f"regular expression built from it; got {input_base!r}")
  if _REGEX_CHARS.search(_SPECS.sub("", snapshot)):
    return f"ingest.snapshot must not contain ^ $ | {{ or }} outside its specs, got {snapshot!r}"
  for spec in _SPECS.finditer(snapshot):
    if spec.group(2) and not _WIDTH.fullmatch(spec.group(2)):
      return f"ingest.snapshot {snapshot!r}: the width in {spec.group(0)} must be a number of digits from 1 to 99"
  return spec_problem(snapshot)


def spec_problem(snapshot: str) -> Optional[str]:
  """What TFX's driver would refuse in the snapshot pattern's {SPAN}/{VERSION}/date specs (in its words), or None."""
  spans, versions = len(_SPAN.findall(snapshot)), len(_VERSION.findall(snapshot))
  dates = any(spec in snapshot for spec in _DATE_SPECS)
  if spans and dates:
    return f"ingest.snapshot {snapshot!r}: Either span spec or date specs must be specified exclusively"
  if spans > 1:
    return f"ingest.snapshot {snapshot!r}: Only one {{SPAN}} is allowed"
  if dates and not all(snapshot.count(spec) == 1 for spec in _DATE_SPECS):
    return f"ingest.snapshot {snapshot!r}: Exactly one of each date spec ({', '.join(_DATE_SPECS)}) is required"
  if versions and not (spans or dates):
    return f"ingest.snapshot {snapshot!r}: Version spec provided, but Span or Date spec is not present"
  if versions > 1:
    return f"ingest.snapshot {snapshot!r}: Only one {{VERSION}} is allowed"
  if not (spans or dates):
    return f"ingest.snapshot {snapshot!r} needs {{SPAN}} or {''.join(_DATE_SPECS)} to tell snapshots apart"
  return None


def root(input_base: str, resolved_input_config: Optional[str]) -> str:
  """The snapshot folder to ingest: input_base joined with the resolved pattern's folders before the glob.

  resolved_input_config: the `input_config` execution property (JSON) after TFX's driver
  filled in the span and version; None when an executor runs without one (input_base is
  then the snapshot).
  """
  if not resolved_input_config:
    return input_base
  from tfx.proto import example_gen_pb2
  from tfx.utils import proto_utils
  config = example_gen_pb2.Input()
  proto_utils.json_to_proto(resolved_input_config, config)
  folder, _ = split_pattern(config.splits[0].pattern)
  return posixpath.join(input_base, folder) if folder else input_base


def split_pattern(split_pattern: str) -> Tuple[str, str]:
  """A split's pattern -> (the snapshot folder pattern, the files glob): `pattern`'s inverse."""
  parts = split_pattern.split("/")
  first_glob = next((i for i, part in enumerate(parts) if GLOB_CHARS.search(part)), len(parts))
  return "/".join(parts[:first_glob]), "/".join(parts[first_glob:])


class SnapshotError(roots.SourceError):
  """The snapshot to ingest cannot be told apart from the folders of the data root; names the folder and pattern."""


@dataclasses.dataclass(frozen=True)
class Resolved:
  folder: str                   # the snapshot below input_base, '/'-separated; '' = input_base itself
  span: int
  version: Optional[int]
  # (entry, why it is no snapshot) of the data root's entries whose names are no snapshot's (reported, not read)
  ignored: Tuple[Tuple[str, str], ...] = ()


def resolve(input_base: str, snapshot: str, span: int = NEWEST) -> Resolved:
  """The snapshot to ingest, chosen by this project's reading of TFX's specs, with a decision for every folder.

  Each level of the pattern is listed (local: links followed only inside the root; gs://
  by prefix), and each entry is either a snapshot, a folder whose name does not start
  like the pattern (`ignored`), or a SnapshotError: a name that starts like the pattern
  but does not match it (span-old, span--1, 2026-13-45), a match that is no folder or a
  link leading out, two folders naming the same span and version, a pinned span that is
  absent. Digits are ASCII only; a date names the span of its day since 1970-01-01, as in
  TFX.
  """
  if not snapshot:
    return Resolved("", 0, None)
  input_base = roots.strip(input_base)
  found: List[Tuple[str, Dict[str, str]]] = [("", {})]
  ignored: List[Tuple[str, str]] = []
  for level in snapshot.split("/"):
    regex, prefix = _level_regex(level)
    deeper = []
    for folder, values in found:
      for name, problem in _entries(input_base, folder, snapshot):
        relative = posixpath.join(folder, name)
        match = regex.fullmatch(name)
        if not match:
          if _looks_like(name, prefix):
            raise SnapshotError(f"{_join(input_base, relative)} looks like a snapshot but does not match "
                                f"ingest.snapshot {snapshot!r}; rename or move it")
          ignored.append((relative, problem or f"its name does not match ingest.snapshot {snapshot!r}"))
        elif problem:
          raise SnapshotError(f"{_join(input_base, relative)} matches ingest.snapshot {snapshot!r} but is {problem}")
        else:
          deeper.append((relative, {**values, **match.groupdict()}))
    found = deeper
  snapshots: Dict[Tuple[int, Optional[int]], str] = {}
  for folder, values in found:
    key = _span_and_version(values, _join(input_base, folder), snapshot)
    if key in snapshots:
      raise SnapshotError(f"{_join(input_base, snapshots[key])} and {_join(input_base, folder)} both name span "
                          f"{key[0]}" + (f" version {key[1]}" if key[1] is not None else "")
                          + f" (ingest.snapshot {snapshot!r}); remove or rename one")
    snapshots[key] = folder
  if not snapshots:
    raise SnapshotError(f"no folder under {input_base} matches ingest.snapshot {snapshot!r}")
  pinned = [key for key in snapshots if span in (NEWEST, key[0])]
  if not pinned:
    raise SnapshotError(f"span {span} is not under {input_base} (ingest.snapshot {snapshot!r}); spans found: "
                        + ", ".join(str(s) for s in sorted({key[0] for key in snapshots})))
  chosen = max(pinned, key=lambda key: (key[0], -1 if key[1] is None else key[1]))
  return Resolved(snapshots[chosen], chosen[0], chosen[1], tuple(sorted(ignored)))


def _level_regex(level: str) -> Tuple["re.Pattern[str]", str]:
  """(a regex of one folder level of the pattern, the literal text before its first spec)."""
  parts, position = [], 0
  for spec in _SPECS.finditer(level):
    parts.append(re.escape(level[position:spec.start()]))
    name = spec.group(1) or spec.group(0)[1:-1]
    width = spec.group(2)[1:] if spec.group(2) else ""
    digits = {"YYYY": 4, "MM": 2, "DD": 2}.get(name) or (int(width) if width else 0)
    key = {"SPAN": "span", "VERSION": "version", "YYYY": "year", "MM": "month", "DD": "day"}[name]
    parts.append(f"(?P<{key}>[0-9]{{{digits}}})" if digits else f"(?P<{key}>[0-9]+)")
    position = spec.end()
  parts.append(re.escape(level[position:]))
  first = _SPECS.search(level)
  return re.compile("".join(parts)), level[:first.start()] if first else level


def _looks_like(name: str, prefix: str) -> bool:
  """Whether a name that does not match reads as a botched snapshot name (an error) rather than another folder."""
  if name.startswith("."):
    return False
  return name.startswith(prefix) if prefix else name[:1].isdigit()


def _span_and_version(values: Dict[str, str], path: str, snapshot: str) -> Tuple[int, Optional[int]]:
  version = int(values["version"]) if "version" in values else None
  if "span" in values:
    return int(values["span"]), version
  try:
    day = datetime.date(int(values["year"]), int(values["month"]), int(values["day"]))
  except ValueError as e:
    raise SnapshotError(f"{path} matches ingest.snapshot {snapshot!r} but is no date ({e})") from e
  if day < _EPOCH:
    raise SnapshotError(f"{path}: ingest.snapshot {snapshot!r} reads dates from 1970-01-01 on")
  return (day - _EPOCH).days, version


def _entries(input_base: str, folder: str, snapshot: str) -> Iterator[Tuple[str, str]]:
  """(name, what is wrong with it as a snapshot folder or '') for each entry of input_base/folder, by name."""
  if input_base.startswith("gs://"):
    yield from _gcs_entries(input_base, folder)
    return
  root = roots.resolve_local(input_base)
  try:
    with os.scandir(os.path.join(root, folder)) as it:
      entries = sorted(it, key=lambda e: e.name)
  except OSError as e:
    raise SnapshotError(f"cannot list {_join(input_base, folder)} (ingest.snapshot {snapshot!r}): {e.strerror}") from e
  for entry in entries:
    try:
      real = os.path.realpath(entry.path, strict=True)
    except OSError as e:
      yield entry.name, "a link loop" if e.errno == errno.ELOOP else "a broken link"
      continue
    if not tree.inside(real, root):
      yield entry.name, "a link out of the data root"
    elif not os.path.isdir(real):
      yield entry.name, "not a folder"
    else:
      yield entry.name, ""


def _gcs_entries(input_base: str, folder: str) -> Iterator[Tuple[str, str]]:
  bucket, prefix = roots.split_gcs(_join(input_base, folder))
  client, _ = roots.gcs_client()
  start = prefix + "/" if prefix else ""
  blobs = client.list_blobs(bucket, prefix=start or None, delimiter="/", timeout=roots.GCS_TIMEOUT)
  files = [blob.name[len(start):] for blob in blobs]
  folders = {p[len(start):].rstrip("/") for p in blobs.prefixes}
  yield from sorted([(name, "") for name in folders] + [(name, "not a folder") for name in files if name])


def _join(root: str, relative: str) -> str:
  return posixpath.join(root, relative) if relative else root
