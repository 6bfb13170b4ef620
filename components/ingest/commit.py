"""The last step of CocoIngest: place the boundary photos, commit the shards, write the skip report.

Runs once, on one worker, with every record the runner committed from make_examples.py as
a side input (never a failed or duplicate attempt's), and is safe to retry: boundary files
and the report are rewritten whole, and shard_writer.commit skips renames already done.
Like make_examples.py it imports neither TensorFlow nor TFX (a Beam worker loads it).
"""
import json
import posixpath
from typing import Any, Dict, List, Tuple

from apache_beam.io.filesystems import FileSystems

from components.ingest import make_examples
from components.ingest import shard_writer
from components.ingest import splits
from components.ingest import tfrecord_gzip
from schemas import features

# ExampleGen's file prefix (tfx.components.example_gen.write_split.DEFAULT_TF_RECORD_FILE_NAME).
FILE_PREFIX = "data_tfrecord"
# The few boundary photos of each split (see splits.py), beside the committed shards.
BOUNDARY_FILE = FILE_PREFIX + "_boundary.gz"


def commit(unused_trigger, split_uris: Dict[str, str], report_path: str, settings: Dict[str, Any],
           records: List[Tuple[str, Any]]) -> None:
  by_kind: Dict[str, list] = {kind: [] for kind in make_examples.KINDS}
  for kind, value in records:
    by_kind[kind].append(value)
  shards = by_kind[make_examples.SHARD]
  shard_writer.check_unique(shards)
  by_route: Dict[str, List[shard_writer.Shard]] = {route: [] for route in features.SPLITS + (splits.BOUNDARY,)}
  for shard in shards:
    by_route[shard.key].append(shard)
  test_count = sum(len(s.image_ids) for s in by_route[features.TEST_SPLIT])
  placed = splits.settle_boundary(by_kind[make_examples.BOUNDARY], test_count, settings["test_size"],
                                  settings["eval_fraction"])
  boundary_examples = {}
  for shard in by_route[splits.BOUNDARY]:
    boundary_examples.update(shard_writer.read(shard))
  split_counts = {}
  for split in features.SPLITS:
    placed_here = [image_id for image_id, s in placed if s == split]
    tfrecord_gzip.write_records(posixpath.join(split_uris[split], BOUNDARY_FILE),
                                [boundary_examples[image_id] for image_id in placed_here])
    shard_writer.commit(by_route[split], split_uris[split], FILE_PREFIX)
    split_counts[split] = sum(len(s.image_ids) for s in by_route[split]) + len(placed_here)
  write_report(report_path, settings, split_counts, by_kind[make_examples.SKIPPED],
               by_kind[make_examples.GRAYSCALE_KEPT])


def write_report(path: str, settings: Dict[str, Any], split_counts: Dict[str, int],
                 skipped: List[dict], grayscale_kept: List[str]) -> None:
  shortfall = settings["test_size"] - split_counts.get(features.TEST_SPLIT, 0)
  skip_counts: Dict[str, int] = {}
  for s in skipped:
    skip_counts[s["reason"]] = skip_counts.get(s["reason"], 0) + 1
  report = dict(settings)
  report.update({
      "split_counts": {name: split_counts.get(name, 0) for name in features.SPLITS},
      "skip_counts": dict(sorted(skip_counts.items())),
      "skipped": sorted(skipped, key=lambda s: (s["reason"], s["file"])),
      "grayscale_kept": sorted(grayscale_kept),
      "test_shortfall": (f"{shortfall} fewer test photos than {settings['test_size']}: more than "
                         f"{splits.margin(settings['test_size'])} of the photos next in line were unusable")
                        if shortfall > 0 else "",
  })
  with FileSystems.create(path, "application/json") as f:
    f.write(json.dumps(report, indent=1).encode("utf-8"))


def read_report(path: str) -> dict:
  with FileSystems.open(path, "application/json") as f:
    return json.loads(f.read())
