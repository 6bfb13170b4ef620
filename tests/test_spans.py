"""Spans: the driver resolves the newest (or pinned) snapshot; training takes one artifact per span, the newest N."""
import datetime

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


def test_driver_fingerprint_sees_files_below_the_glob_and_errors_name_the_pattern(coco128, tmp_path):
  photo = next((coco128 / "train2017").glob("*.jpg"))
  _layout(tmp_path, ["span-1"], photo)
  (tmp_path / "span-1" / "train2017" / "more").mkdir()
  deep = tmp_path / "span-1" / "train2017" / "more" / photo.name
  deep.write_bytes(photo.read_bytes())
  first, _ = _resolve(tmp_path, "span-{SPAN}")
  # A photo deeper than "*/*" rewritten: TFX's part of the fingerprint does not see it, the snapshot listing does.
  deep.write_bytes(photo.read_bytes()[:-100])
  deeper, _ = _resolve(tmp_path, "span-{SPAN}")
  tfx_part = [r["input_fingerprint"].split("\nsnapshot:")[0] for r in (first, deeper)]
  assert tfx_part[0] == tfx_part[1] and deeper["input_fingerprint"] != first["input_fingerprint"]
  with pytest.raises(ValueError, match=r"Cannot find matching for split photos based on week-\{SPAN\}/\*/\*"):
    _resolve(tmp_path, "week-{SPAN}")
  (tmp_path / "span-old" / "train2017").mkdir(parents=True)
  (tmp_path / "span-old" / "train2017" / photo.name).write_bytes(photo.read_bytes())
  with pytest.raises(ValueError, match="Cannot find span number from .*span-old"):
    _resolve(tmp_path, "span-{SPAN}")
