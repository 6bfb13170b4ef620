"""The last step of CocoIngest: commit the shards into their splits, write the skip report.

Runs once, on one worker, with every record the runner committed from make_examples.py as
a side input (never a failed or duplicate attempt's), and is safe to retry: the report and
the artifact's manifest (schemas/artifact_files.py) are rewritten whole, and
shard_writer.commit skips renames already done.
Like make_examples.py it imports neither TensorFlow nor TFX (a Beam worker loads it).
"""
import json
import posixpath
from typing import Any, Dict, List, Tuple

from apache_beam.io.filesystems import FileSystems

from components.ingest import make_examples
from components.ingest import shard_writer
from components.ingest import tfrecord_gzip
from schemas import artifact_files
from schemas import features

# ExampleGen's file prefix (tfx.components.example_gen.write_split.DEFAULT_TF_RECORD_FILE_NAME).
FILE_PREFIX = "data_tfrecord"


def commit(unused_trigger, split_uris: Dict[str, str], report_path: str, settings: Dict[str, Any],
           records: List[Tuple[str, Any]]) -> None:
  by_kind: Dict[str, list] = {kind: [] for kind in make_examples.KINDS}
  for kind, value in records:
    by_kind[kind].append(value)
  shards = by_kind[make_examples.SHARD]
  shard_writer.check_unique(shards)
  by_split: Dict[str, List[shard_writer.Shard]] = {split: [] for split in features.SPLITS}
  for shard in shards:
    by_split[shard.key].append(shard)
  split_counts = {}
  for split in features.SPLITS:
    if by_split[split]:
      shard_writer.commit(by_split[split], split_uris[split], FILE_PREFIX)
    else:  # an empty split is one empty file, as Beam's sinks write it: readers find the split
      tfrecord_gzip.write_records(shard_writer.shard_name(split_uris[split], FILE_PREFIX, 0, 1), [])
    split_counts[split] = sum(len(s.image_ids) for s in by_split[split])
  write_report(report_path, settings, split_counts, by_kind[make_examples.SKIPPED],
               by_kind[make_examples.GRAYSCALE_KEPT])
  artifact_files.record(posixpath.dirname(report_path))  # the report sits in the artifact's folder


def write_report(path: str, settings: Dict[str, Any], split_counts: Dict[str, int],
                 skipped: List[dict], grayscale_kept: List[str]) -> None:
  skip_counts: Dict[str, int] = {}
  for s in skipped:
    skip_counts[s["reason"]] = skip_counts.get(s["reason"], 0) + 1
  report = dict(settings)
  report.update({
      "split_counts": {name: split_counts.get(name, 0) for name in features.SPLITS},
      "skip_counts": dict(sorted(skip_counts.items())),
      "skipped": sorted(skipped, key=lambda s: (s["reason"], s["file"])),
      "grayscale_kept": sorted(grayscale_kept),
  })
  with FileSystems.create(path, "application/json") as f:
    f.write(json.dumps(report, indent=1).encode("utf-8"))


def read_report(path: str) -> dict:
  with FileSystems.open(path, "application/json") as f:
    return json.loads(f.read())
