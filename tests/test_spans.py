"""Spans: the driver resolves the newest (or pinned) snapshot; training takes one artifact per span, the newest N."""
import datetime
import os

import pytest
from tfx import v1 as tfx
from tfx.dsl.input_resolution.strategies import span_range_strategy
from tfx.types import standard_artifacts

from components.ingest import spans


def _examples(artifact_id, span, version=None):
  examples = standard_artifacts.Examples()
  examples.id = artifact_id
  examples.set_int_custom_property("span", span)
  if version is not None:
    examples.set_int_custom_property("version", version)
  return examples


def test_latest_spans_keep_the_newest_ingestion_of_each_span():
  # Span 3 ingested twice (a photo changed), span 2 in two versions, span 1 out of the range.
  stored = [_examples(1, 1), _examples(2, 2, version=2), _examples(3, 2, version=1), _examples(4, 3), _examples(5, 3)]
  rolling = tfx.proto.RangeConfig(rolling_range=tfx.proto.RollingRange(num_spans=2))
  resolved = spans.LatestSpansStrategy(rolling).resolve_artifacts(None, {"examples": stored})
  assert [a.id for a in resolved["examples"]] == [5, 2]
  # TFX's own strategy would train on span 3 twice and on both versions of span 2.
  plain = span_range_strategy.SpanRangeStrategy(rolling).resolve_artifacts(None, {"examples": stored})
  assert sorted(a.id for a in plain["examples"]) == [2, 3, 4, 5]


def _layout(root, folders, photo):
  """COCO-like snapshot folders under root, each with one real photo and an annotations file."""
  for folder in folders:
    (root / folder / "train2017").mkdir(parents=True)
    (root / folder / "annotations").mkdir()
    (root / folder / "annotations" / "instances_train2017.json").write_text('{"images": []}')
    (root / folder / "train2017" / photo.name).write_bytes(photo.read_bytes())


def _resolve(root, snapshot_pattern, span=-1, files="*/*"):
  """What the driver hands the executor (and the cache key): TFX's resolution plus the snapshot's listing."""
  from tfx.utils import proto_utils

  from components.ingest import driver as driver_lib
  from components.ingest import snapshot
  exec_properties = {
      "input_base": str(root),
      "input_config": proto_utils.proto_to_json(snapshot.input_config(snapshot_pattern, files)),
      "range_config": (proto_utils.proto_to_json(snapshot.range_config(span)) if span != snapshot.NEWEST else None),
  }
  resolved = driver_lib.Driver(None).resolve_exec_properties(exec_properties, None, None)
  return resolved, snapshot.root(str(root), resolved["input_config"])


def test_driver_picks_the_newest_span_version_or_date_and_the_pinned_span(coco128, tmp_path):
  photo = next((coco128 / "train2017").glob("*.jpg"))
  _layout(tmp_path / "spans", ["span-1", "span-2", "span-10"], photo)
  resolved, root = _resolve(tmp_path / "spans", "span-{SPAN}")
  assert (resolved["span"], resolved["version"], root) == (10, None, str(tmp_path / "spans" / "span-10"))
  resolved, root = _resolve(tmp_path / "spans", "span-{SPAN}", span=2)
  assert (resolved["span"], root) == (2, str(tmp_path / "spans" / "span-2"))

  _layout(tmp_path / "versions", ["span-3/v1", "span-3/v2", "span-2/v7"], photo)
  resolved, root = _resolve(tmp_path / "versions", "span-{SPAN}/v{VERSION}")
  assert (resolved["span"], resolved["version"], root) == (3, 2, str(tmp_path / "versions" / "span-3" / "v2"))

  _layout(tmp_path / "dated", ["2026-11-23", "2026-11-30"], photo)
  resolved, root = _resolve(tmp_path / "dated", "{YYYY}-{MM}-{DD}")
  assert root == str(tmp_path / "dated" / "2026-11-30")
  assert resolved["span"] == (datetime.date(2026, 11, 30) - datetime.date(1970, 1, 1)).days


def test_driver_fingerprint_sees_files_at_any_depth_and_never_trips_on_links_or_fifos(coco128, tmp_path):
  photo = next((coco128 / "train2017").glob("*.jpg"))
  _layout(tmp_path, ["span-1"], photo)
  train = tmp_path / "span-1" / "train2017"
  (train / "more" / "deeper").mkdir(parents=True)
  deep = train / "more" / "deeper" / photo.name
  deep.write_bytes(photo.read_bytes())
  (tmp_path / "secret.jpg").write_bytes(b"SECRET")
  # Depth 1 (in the snapshot), 2 (train2017/: TFX's "*/*" glob stats there) and 3: loops, broken links, FIFOs,
  # links out.
  for folder in (tmp_path / "span-1", train, train / "more"):
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("nowhere.jpg", folder / "broken.jpg")
    os.symlink(tmp_path / "secret.jpg", folder / "escape.jpg")
    os.symlink(folder, folder / "cycle")
    os.mkfifo(folder / "pipe.jpg")
  first, root = _resolve(tmp_path, "span-{SPAN}")
  assert root == str(tmp_path / "span-1") and first["input_fingerprint"].startswith("snapshot:files:3,")
  deep.write_bytes(photo.read_bytes()[:-100])  # deeper than any glob
  assert _resolve(tmp_path, "span-{SPAN}")[0]["input_fingerprint"] != first["input_fingerprint"]
  # TFX's own driver dies on the same tree (the class this driver closes).
  from tfx.components.example_gen import driver as tfx_driver
  from tfx.utils import proto_utils

  from components.ingest import snapshot
  with pytest.raises(Exception, match="Too many levels of symbolic links"):
    tfx_driver.FileBasedDriver(None).resolve_exec_properties({
        "input_base": str(tmp_path), "range_config": None,
        "input_config": proto_utils.proto_to_json(snapshot.input_config("span-{SPAN}", "*/*"))}, None, None)


@pytest.mark.parametrize("folders, pattern, span, message", [
    (["span-1", "span-old"], "span-{SPAN}", -1, r"span-old looks like a snapshot but does not match .*span-\{SPAN\}"),
    (["span-1", "span--2"], "span-{SPAN}", -1, r"span--2 looks like a snapshot"),
    (["span-1", "span-\u0663"], "span-{SPAN}", -1, "looks like a snapshot"),  # an Arabic-Indic 3: not a span
    (["span-1", "span-2\nold"], "span-{SPAN}", -1, r"span-2\\nold looks like a snapshot"),  # shown escaped
    (["span-1", "span-01"], "span-{SPAN}", -1, r"span-01 and .*span-1 both name span 1"),
    (["span-1/v1", "span-1/v01"], "span-{SPAN}/v{VERSION}", -1, "both name span 1 version 1"),
    (["span-1", "span-2"], "span-{SPAN}", 7, r"span 7 is not under .*; spans found: 1, 2"),
    (["2026-11-30", "2026-13-45"], "{YYYY}-{MM}-{DD}", -1, r"2026-13-45 matches .* but is no date"),
    (["1969-12-31"], "{YYYY}-{MM}-{DD}", -1, "reads dates from 1970-01-01 on"),
    (["week-1"], "span-{SPAN}", -1, r"no folder under .* matches ingest.snapshot 'span-\{SPAN\}'"),
])
def test_every_folder_of_the_data_root_gets_a_decision(coco128, tmp_path, folders, pattern, span, message):
  photo = next((coco128 / "train2017").glob("*.jpg"))
  _layout(tmp_path, folders, photo)
  from components.ingest import snapshot
  with pytest.raises(snapshot.SnapshotError, match=message) as raised:
    _resolve(tmp_path, pattern, span=span)
  # One line that names the folder and the pattern.
  text = str(raised.value)
  assert "\n" not in text and str(tmp_path) in text and f"ingest.snapshot {pattern!r}" in text, text


def test_ignored_folders_links_and_an_empty_newest_span_are_decided(coco128, tmp_path):
  from components.ingest import snapshot
  photo = next((coco128 / "train2017").glob("*.jpg"))
  _layout(tmp_path, ["span-1", "span-2"], photo)
  (tmp_path / "README.txt").write_text("spans of COCO")
  (tmp_path / "tmp").mkdir()
  assert _resolve(tmp_path, "span-{SPAN}")[1].endswith("span-2")
  # What the executor lists (the driver leaves them out of the cache key).
  assert snapshot.resolve(str(tmp_path), "span-{SPAN}").ignored == (
      ("README.txt", "not a folder"), ("tmp", "its name does not match ingest.snapshot 'span-{SPAN}'"))
  (tmp_path / "span-3").mkdir()  # the newest span, empty: never silently the older one
  with pytest.raises(snapshot.SnapshotError, match=r"no files under .*span-3 .*fill it, remove it, or pin ingest.span"):
    _resolve(tmp_path, "span-{SPAN}")
  assert _resolve(tmp_path, "span-{SPAN}", span=2)[1].endswith("span-2")
  os.rmdir(tmp_path / "span-3")
  for name, target in (("span-3", "nowhere"), ("span-4", "span-4"), ("span-5", str(coco128))):
    os.symlink(target, tmp_path / name)
    with pytest.raises(snapshot.SnapshotError, match=f"{name} matches .* but is a (broken link|link loop|link out)"):
      _resolve(tmp_path, "span-{SPAN}")
    os.unlink(tmp_path / name)
  os.symlink("span-2", tmp_path / "span-6")  # a link inside the root: a snapshot like any folder
  assert _resolve(tmp_path, "span-{SPAN}")[1].endswith("span-6")


@pytest.mark.parametrize("pattern", ["span-{SPAN:0}", "span-{SPAN:-1}", "span-{SPAN:+2}", "span-{SPAN:x}"])
def test_widths_and_signs_in_span_specs_are_refused_by_the_config(pattern):
  from components.ingest import snapshot
  assert "width" in snapshot.check("/data", pattern, "*/*")
