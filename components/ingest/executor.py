"""CocoIngest's Beam executor: photos -> tf.Examples in train/eval/test + a skip report.

Modelled on TFX's ExampleGen executors (tfx/components/example_gen/
base_example_gen_executor.py): split names are set on the artifact before its split
URIs are asked for, each split is `Split-<name>/data_tfrecord*-SSSSS-of-NNNNN.gz`
(gzipped TFRecords of tf.Example, ExampleGen's file prefix), and the `payload_format` /
`file_format` custom properties are set as ExampleGen sets them. Two differences, both
for throughput: files are written by tfrecord_gzip.py (Beam's gzip level costs more
than all the image work), and without ExampleGen's Reshuffle, which would hold every
example in memory on the DirectRunner (the Trainer shuffles anyway).

Which photos: the snapshot folder TFX's driver resolved (snapshot.py: input_base plus
the resolved span/version folder), listed by sources.py as a COCO root or plain folder.

The Beam graph moves no example bytes between workers or through the runner:
  listing (in Do, before Beam: sources.py; the refused entries too, to be reported unread)
    -> listing files in the temp folder, only their names in the graph (listing_files.py: a
       listing of a million photos would take Dataflow's job graph over its 10 MB limit)
    -> ReadListing -> Reshuffle (lists of photos spread over the workers)
    -> MakeAndWrite (make_examples.py): read, decode, Lab, encode, serialize, and append
       to this bundle's shard file of the photo's split (by image id, splits.py); out
       come only small records: shard names with their image ids, skip records (a Beam
       counter per reason), kept black-and-white sources
  all records (one side input) -> Commit (commit.py): move the committed shards into
    Split-<name>/data_tfrecord-SSSSS-of-NNNNN.gz, write <artifact>/skip_report.json
Do then copies the report's counts into the artifact's custom properties. Retries and
duplicate bundle attempts are safe by construction: see shard_writer.py.

Runners: beam_pipeline_args pass through (`--direct_running_mode=multi_processing
--direct_num_workers=N`, Dataflow flags). Workers load make_examples.py, listing_files.py and commit.py
only (no TensorFlow, no TFX). Note TFX's behaviour: when the args hold
neither --setup_file nor --extra_package, BaseBeamExecutor builds an sdist of tfx
itself into /tmp (`setup.py sdist`, several seconds) on every run and stages it.
"""
import json
import posixpath
from typing import Any, Dict, List

from absl import logging
import apache_beam as beam
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from components import ingest
from components.ingest import commit
from components.ingest import listing_files
from components.ingest import make_examples
from components.ingest import shard_writer
from components.ingest import snapshot
from components.ingest import sources
from components.ingest import splits
from imaging import images
from schemas import features

EXAMPLES_KEY = "examples"
METRICS_NAMESPACE = make_examples.METRICS_NAMESPACE
SKIP_REPORT_FILE = "skip_report.json"
# Custom properties of the Examples artifact (lineage/summary.py prints them).
SPLIT_COUNTS_PROPERTY = "split_counts"
SKIP_COUNTS_PROPERTY = "skip_counts"
SKIP_REPORT_PROPERTY = "skip_report"


class EmptyDatasetError(ValueError):
  """Every listed file was skipped: there is nothing to train on."""


def _record_snapshot(examples: types.Artifact, exec_properties: Dict[str, Any]) -> None:
  """Span, version and input fingerprint from the driver (ExampleGen's custom properties), on every runner."""
  for key in (example_gen_utils.SPAN_PROPERTY_NAME, example_gen_utils.VERSION_PROPERTY_NAME):
    if exec_properties.get(key) is not None:
      examples.set_int_custom_property(key, int(exec_properties[key]))
  if exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME):
    examples.set_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME,
                                        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME])


class Executor(base_beam_executor.BaseBeamExecutor):
  """Writes the Examples artifact and its skip report; see the module docstring."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],  # noqa: N802 (TFX's executor API)
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    root = snapshot.root(input_base, exec_properties.get(standard_component_specs.INPUT_CONFIG_KEY))
    categories = [c.strip() for c in (exec_properties.get("categories") or "").split(",") if c.strip()]
    keep_grayscale = bool(exec_properties["keep_grayscale"])
    test_fraction = float(exec_properties["test_fraction"])
    eval_fraction = float(exec_properties["eval_fraction"])

    examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    split_uris = {name: artifact_utils.get_split_uri([examples], name) for name in features.SPLITS}
    report_path = posixpath.join(examples.uri, SKIP_REPORT_FILE)

    span = exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME)
    ignored_folders = [list(entry) for entry in snapshot.resolve(
        input_base, exec_properties.get(snapshot.PATTERN_KEY) or "", snapshot.NEWEST if span is None else span).ignored]
    listing = sources.list_photos(root, categories, int(exec_properties["max_images"]))
    logging.info("Ingesting %d photos from %s (%s layout)", len(listing.photos), root, listing.layout)
    settings = {
        "input_base": input_base, "snapshot": root, "span": span,
        "version": exec_properties.get(example_gen_utils.VERSION_PROPERTY_NAME),
        "layout": listing.layout, "annotations": listing.annotations,
        "categories": categories, "max_images": int(exec_properties["max_images"]),
        "listed": len(listing.photos), "ignored": listing.ignored,
        "ignored_folders": dict(ignored_folders),
        "keep_grayscale": keep_grayscale,
        "test_fraction": test_fraction, "eval_fraction": eval_fraction,
        "split_rule": splits.RULE,
        "licenses": listing.licenses,
        "black_and_white_rule": (f"fewer than {images.BW_MAX_COLOURED_SHARE:.1%} of pixels more than "
                                 f"{images.BW_CHROMA:g} a*b* units from the photo's mean a*b*"),
    }

    # Files of an earlier attempt at this artifact would be read as part of it.
    for uri in split_uris.values():
      shard_writer.remove_folder(uri)
    temp_dir = shard_writer.new_temp_dir(examples.uri)
    try:
      with self._make_beam_pipeline() as pipeline:
        records = (
            pipeline
            | "ListingFiles" >> beam.Create(listing_files.write(listing.photos + listing.refused, temp_dir))
            | "ReadListing" >> beam.FlatMap(listing_files.read)
            | "Spread" >> beam.Reshuffle()
            | "MakeAndWrite" >> beam.ParDo(
                make_examples.MakeAndWrite(keep_grayscale, test_fraction, eval_fraction, temp_dir)))
        _ = (pipeline
             | "CommitTrigger" >> beam.Create([None])
             | "Commit" >> beam.Map(commit.commit, split_uris, report_path, settings,
                                    records=beam.pvalue.AsList(records)))
    finally:
      # What failed or discarded bundle attempts wrote; committed shards were moved out.
      shard_writer.remove_folder(temp_dir)

    report = commit.read_report(report_path)
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    examples.set_string_custom_property(SPLIT_COUNTS_PROPERTY, json.dumps(report["split_counts"]))
    examples.set_string_custom_property(SKIP_COUNTS_PROPERTY, json.dumps(report["skip_counts"]))
    examples.set_string_custom_property(SKIP_REPORT_PROPERTY, report_path)
    if ignored_folders:
      # ASCII JSON: a name that is not UTF-8 (a surrogate escape) can be stored, and printed escaped.
      recorded = dict(ignored_folders[:ingest.IGNORED_RECORDED])
      examples.set_string_custom_property(ingest.IGNORED_PROPERTY, json.dumps(recorded))
      examples.set_int_custom_property(ingest.IGNORED_COUNT_PROPERTY, len(ignored_folders))
    _record_snapshot(examples, exec_properties)
    logging.info("Examples %s: splits %s, skipped %s", examples.uri, report["split_counts"], report["skip_counts"])
    if not sum(report["split_counts"].values()):
      raise EmptyDatasetError(f"no usable photos under {root}: all {report['listed']} files were skipped "
                              f"({report['skip_counts']}); see {report_path}")
