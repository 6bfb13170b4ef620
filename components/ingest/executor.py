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

The Beam graph (memory stays bounded: every photo is routed on its own):
  listing (in Do, before Beam: sources.py) -> Create
    -> decode + Lab + encode (images.py, one DoFn)
    -> kept examples | skipped files (tagged output, a Beam counter per reason)
  kept -> split by image id (splits.py): train | eval | test, streamed to their files
  split counts + skipped + kept black-and-white -> <artifact>/skip_report.json
Do then copies the report's counts into the artifact's custom properties.

Runners: beam_pipeline_args pass through (`--direct_running_mode=multi_processing
--direct_num_workers=N`, Dataflow flags). Note TFX's behaviour: when the args hold
neither --setup_file nor --extra_package, BaseBeamExecutor builds an sdist of tfx
itself into /tmp (`setup.py sdist`, several seconds) on every run and stages it.
"""
import json
import posixpath
from typing import Any, Dict, List, NamedTuple

from absl import logging
import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs

from components.ingest import snapshot
from components.ingest import sources
from components.ingest import splits
from components.ingest import tfrecord_gzip
from imaging import images
from schemas import features

EXAMPLES_KEY = "examples"
METRICS_NAMESPACE = "colorize_ingest"
SKIP_REPORT_FILE = "skip_report.json"
# Custom properties of the Examples artifact (lineage/summary.py prints them).
SPLIT_COUNTS_PROPERTY = "split_counts"
SKIP_COUNTS_PROPERTY = "skip_counts"
SKIP_REPORT_PROPERTY = "skip_report"


class EmptyDatasetError(ValueError):
  """Every listed file was skipped: there is nothing to train on."""


class _Kept(NamedTuple):
  image_id: int
  source: str
  colour: bool
  example: bytes  # serialized tf.Example


def _make_example(photo: sources.Photo, arrays: images.Arrays) -> bytes:
  def _bytes(value: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  def _int(value: int):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

  return tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_ID_KEY: _int(photo.image_id),
      features.SOURCE_KEY: _bytes(photo.source.encode("utf-8")),
      features.LICENSE_KEY: _int(photo.license),
      features.L_KEY: _bytes(features.encode_l(arrays.l)),
      features.AB_KEY: _bytes(features.encode_ab(arrays.ab)),
      features.GRAY_KEY: _bytes(features.encode_gray(arrays.gray)),
  })).SerializeToString()


class _ToExample(beam.DoFn):
  """Photo -> _Kept on the main output, or a skip record on the SKIPPED output."""
  SKIPPED = "skipped"

  def __init__(self, keep_grayscale: bool):
    super().__init__()
    self._keep_grayscale = keep_grayscale
    self._skip_counters = {}
    self._examples = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "examples")

  def _skip(self, photo: sources.Photo, reason: images.SkipReason, detail: str):
    if reason not in self._skip_counters:
      self._skip_counters[reason] = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"skipped_{reason.value}")
    self._skip_counters[reason].inc()
    return beam.pvalue.TaggedOutput(self.SKIPPED, {
        "file": photo.source, "image_id": photo.image_id, "reason": reason.value, "detail": detail})

  def process(self, photo: sources.Photo):
    try:
      # Builtin open for local files: a filesystem layer costs ~0.5 ms more per file.
      if "://" in photo.path:
        data = sources.read_bytes(photo.path)
      else:
        with open(photo.path, "rb") as f:
          data = f.read()
    except Exception as e:
      # Whatever a filesystem raises (OSError, BeamIOError, the GCS client's NotFound/Forbidden),
      # a file that cannot be read is a counted skip, not a failed run.
      yield self._skip(photo, images.SkipReason.UNREADABLE, f"{type(e).__name__}: {e}"[:300])
      return
    try:
      arrays = images.to_arrays(data)
    except images.Skip as skip:
      yield self._skip(photo, skip.reason, skip.detail)
      return
    if arrays.black_and_white and not self._keep_grayscale:
      yield self._skip(photo, images.SkipReason.GRAYSCALE, _bw_detail(arrays))
      return
    self._examples.inc()
    yield _Kept(photo.image_id, photo.source, not arrays.black_and_white, _make_example(photo, arrays))


def _bw_detail(arrays: images.Arrays) -> str:
  return (f"black-and-white: {arrays.coloured_share:.2%} of pixels are more than {images.BW_CHROMA:g} "
          f"a*b* units from the mean tint (colour photos: >= {images.BW_MAX_COLOURED_SHARE:.1%})")


def _split_index(kept: _Kept, num_partitions: int, test_fraction: float, eval_fraction: float) -> int:
  del num_partitions
  return features.SPLITS.index(splits.split_of(kept.image_id, kept.colour, test_fraction, eval_fraction))


def _write_report(unused_trigger, path: str, settings: Dict[str, Any], split_counts: Dict[str, int],
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
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(report, f, indent=1)


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

    listing = sources.list_photos(root, categories, int(exec_properties["max_images"]))
    logging.info("Ingesting %d photos from %s (%s layout)", len(listing.photos), root, listing.layout)
    settings = {
        "input_base": input_base, "snapshot": root, "span": exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME),
        "version": exec_properties.get(example_gen_utils.VERSION_PROPERTY_NAME),
        "layout": listing.layout, "annotations": listing.annotations,
        "categories": categories, "max_images": int(exec_properties["max_images"]),
        "listed": len(listing.photos), "keep_grayscale": keep_grayscale,
        "test_fraction": test_fraction, "eval_fraction": eval_fraction,
        "split_rule": splits.RULE,
        "licenses": listing.licenses,
        "black_and_white_rule": (f"fewer than {images.BW_MAX_COLOURED_SHARE:.1%} of pixels more than "
                                 f"{images.BW_CHROMA:g} a*b* units from the photo's mean a*b*"),
    }

    with self._make_beam_pipeline() as pipeline:
      kept, skipped = (
          pipeline
          | "ListPhotos" >> beam.Create(listing.photos)
          | "ToExample" >> beam.ParDo(_ToExample(keep_grayscale)).with_outputs(_ToExample.SKIPPED, main="kept"))
      routed = dict(zip(features.SPLITS, kept | "Route" >> beam.Partition(
          _split_index, len(features.SPLITS), test_fraction=test_fraction, eval_fraction=eval_fraction), strict=True))
      names = []
      for split in features.SPLITS:
        _ = (routed[split]
             | f"Payload[{split}]" >> beam.Map(lambda photo: photo.example)
             | f"Write[{split}]" >> tfrecord_gzip.WriteToGzipTFRecord(
                 posixpath.join(split_uris[split], write_split.DEFAULT_TF_RECORD_FILE_NAME)))
        names.append(routed[split] | f"Name[{split}]" >> beam.Map(lambda _, name=split: name))
      grayscale_kept = (kept
                        | "BlackAndWhiteKept" >> beam.Filter(lambda photo: not photo.colour)
                        | "BlackAndWhiteSource" >> beam.Map(lambda photo: photo.source))
      _ = (pipeline
           | "ReportTrigger" >> beam.Create([None])
           | "WriteReport" >> beam.Map(
               _write_report, report_path, settings,
               split_counts=beam.pvalue.AsDict(names | "AllNames" >> beam.Flatten()
                                               | "SplitCounts" >> beam.combiners.Count.PerElement()),
               skipped=beam.pvalue.AsList(skipped),
               grayscale_kept=beam.pvalue.AsList(grayscale_kept)))

    with tf.io.gfile.GFile(report_path) as f:
      report = json.load(f)
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    examples.set_string_custom_property(SPLIT_COUNTS_PROPERTY, json.dumps(report["split_counts"]))
    examples.set_string_custom_property(SKIP_COUNTS_PROPERTY, json.dumps(report["skip_counts"]))
    examples.set_string_custom_property(SKIP_REPORT_PROPERTY, report_path)
    _record_snapshot(examples, exec_properties)
    logging.info("Examples %s: splits %s, skipped %s", examples.uri, report["split_counts"], report["skip_counts"])
    if not sum(report["split_counts"].values()):
      raise EmptyDatasetError(f"no usable photos under {root}: all {report['listed']} files were skipped "
                              f"({report['skip_counts']}); see {report_path}")
