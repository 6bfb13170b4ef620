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
  folders = []
  for part in config.splits[0].pattern.split("/"):
    if GLOB_CHARS.search(part):
      break
    folders.append(part)
  return posixpath.join(input_base, *folders) if folders else input_base
