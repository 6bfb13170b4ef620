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
RangeConfig names, fingerprints the files the pattern matches and hands the executor
the resolved pattern; `root` turns that back into the snapshot folder to ingest. The
files glob decides what TFX's fingerprint sees: `*/*` covers a COCO root (train2017/*,
val2017/*, annotations/*), `*` a flat folder of photos.
"""
import posixpath
import re
from typing import Optional

from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.utils import proto_utils

SPLIT_NAME = "photos"
NEWEST = -1
GLOB_CHARS = re.compile(r"[*?\[]")
# Left unescaped by TFX's glob-to-regex translation (tfx/components/example_gen/utils.py).
_REGEX_CHARS = re.compile(r"[\^$|{}]")
_SPECS = re.compile(r"\{(SPAN|VERSION)(:[^}]*)?\}|\{YYYY\}|\{MM\}|\{DD\}")


def pattern(snapshot: str, files: str) -> str:
  return posixpath.join(snapshot, files) if snapshot else files


def input_config(snapshot: str, files: str) -> example_gen_pb2.Input:
  """ExampleGen's Input proto: one split whose pattern lists one snapshot's files."""
  return example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name=SPLIT_NAME, pattern=pattern(snapshot, files))])


def range_config(span: int) -> Optional[range_config_pb2.RangeConfig]:
  """NEWEST: none (TFX's driver then takes the newest span); otherwise exactly that span."""
  if span == NEWEST:
    return None
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
  # TFX's own rules for the specs, imported only when there are specs to check: the module loads
  # TensorFlow, and this runs whenever a command loads its configuration.
  from tfx.components.example_gen import utils
  try:
    spans, dates, _ = utils.verify_split_pattern_specs(input_config(snapshot, files).splits[0])
  except ValueError as e:
    return f"ingest.snapshot {snapshot!r}: {e}"
  if not (spans or dates):
    return (f"ingest.snapshot {snapshot!r} needs {utils.SPAN_SPEC} or {''.join(utils.DATE_SPECS)} "
            "to tell snapshots apart")
  return None


def root(input_base: str, resolved_input_config: Optional[str]) -> str:
  """The snapshot folder to ingest: input_base joined with the resolved pattern's folders before the glob.

  resolved_input_config: the `input_config` execution property (JSON) after TFX's driver
  filled in the span and version; None when an executor runs without one (input_base is
  then the snapshot).
  """
  if not resolved_input_config:
    return input_base
  config = example_gen_pb2.Input()
  proto_utils.json_to_proto(resolved_input_config, config)
  folders = []
  for part in config.splits[0].pattern.split("/"):
    if GLOB_CHARS.search(part):
      break
    folders.append(part)
  return posixpath.join(input_base, *folders) if folders else input_base
