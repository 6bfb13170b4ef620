"""The worker side of CocoIngest: photo -> example, written where it is made.

MakeAndWrite reads a photo, turns it into an example (images.py), picks its split
(splits.py) and appends it to its bundle's shard file of that split (shard_writer.py). Only
small records leave it. Its elements are lists of PHOTOS_PER_ELEMENT photos (batches()): the
runner's cost per element (the reshuffle, coders, the DoFn call) is paid once per list.
This module and what it imports are what a Beam worker loads: no TensorFlow and no TFX
(together ~9 CPU seconds and ~700 MB per worker process), so the tf.Example is serialized
here by hand, as protobuf's wire format defines it.
"""
import struct
from typing import List, Sequence

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from components import worker_progress
from components.ingest import shard_writer
from components.ingest import sources
from components.ingest import splits
from imaging import images
from schemas import features

METRICS_NAMESPACE = "colorize_ingest"

SHARD = "shard"                    # a closed shard file (shard_writer.Shard)
SKIPPED = "skipped"                # a file that made no example: {"file", "image_id", "reason", "detail"}
GRAYSCALE_KEPT = "grayscale_kept"  # source of a black-and-white photo kept by keep_grayscale
KINDS = (SHARD, SKIPPED, GRAYSCALE_KEPT)
# Small enough that Beam still spreads the work over workers (COCO's 118k photos are 7k elements).
PHOTOS_PER_ELEMENT = 16


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # int64 as protobuf encodes it: negatives take ten bytes
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited field (wire type 2)."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def example_bytes(int64s: dict, byte_strings: dict, floats: dict) -> bytes:
  """A serialized tf.train.Example with one value per feature (Example.features = 1, Features.feature = 1
  as a map of key = 1 -> Feature = 2; Feature.bytes_list = 1, Feature.float_list = 2, Feature.int64_list = 3;
  *List.value = 1, floats packed as little-endian float32).
  """
  entries = []
  for key, value in floats.items():
    feature = _field(2, _field(1, struct.pack("<f", value)))
    entries.append(_field(1, _field(1, key.encode()) + _field(2, feature)))
  for key, value in int64s.items():
    feature = _field(3, _field(1, _varint(value)))  # packed repeated int64
    entries.append(_field(1, _field(1, key.encode()) + _field(2, feature)))
  for key, value in byte_strings.items():
    feature = _field(1, _field(1, value))
    entries.append(_field(1, _field(1, key.encode()) + _field(2, feature)))
  return _field(1, b"".join(entries))


def make_example(photo: sources.Photo, arrays: images.Arrays) -> bytes:
  width, height = arrays.source_size
  return example_bytes(
      {features.IMAGE_ID_KEY: photo.image_id, features.LICENSE_KEY: photo.license,
       features.SOURCE_WIDTH_KEY: width, features.SOURCE_HEIGHT_KEY: height},
      {features.SOURCE_KEY: photo.source.encode("utf-8", "surrogateescape"),  # names need not be UTF-8
       features.L_KEY: features.encode_l(arrays.l),
       features.AB_KEY: features.encode_ab(arrays.ab),
       features.GRAY_KEY: features.encode_gray(arrays.gray)},
      {features.MEAN_L_KEY: float(arrays.l.mean()),
       features.MEAN_A_KEY: float(arrays.ab[..., 0].mean()),
       features.MEAN_B_KEY: float(arrays.ab[..., 1].mean()),
       features.COLORFULNESS_KEY: arrays.colorfulness})


def bw_detail(arrays: images.Arrays) -> str:
  return (f"black-and-white: {arrays.coloured_share:.2%} of pixels are more than {images.BW_CHROMA:g} "
          f"a*b* units from the mean tint (colour photos: >= {images.BW_MAX_COLOURED_SHARE:.1%})")


def batches(photos: Sequence[sources.Photo], size: int = PHOTOS_PER_ELEMENT) -> List[List[sources.Photo]]:
  """The photos in lists of `size`: MakeAndWrite's elements."""
  return [list(photos[i:i + size]) for i in range(0, len(photos), size)]


class MakeAndWrite(beam.DoFn):
  """Photos -> their examples in this bundle's shard of their split; small (kind, value) records out.

  Each photo is made, counted and skipped on its own; a list only saves runner work. A retried
  bundle redoes all of its lists (shard_writer.py).

  One output PCollection for every kind (KINDS): the commit reads it as one side input.
  """

  def __init__(self, keep_grayscale: bool, test_fraction: float, eval_fraction: float, temp_dir: str):
    super().__init__()
    self._keep_grayscale = keep_grayscale
    self._test_fraction = test_fraction
    self._eval_fraction = eval_fraction
    self._temp_dir = temp_dir
    self._shards = None
    self._skip_counters = {}
    self._examples = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "examples")
    self._progress = worker_progress.Counter("ingested")

  def start_bundle(self):
    self._shards = shard_writer.BundleShards(self._temp_dir)

  def _skip(self, photo: sources.Photo, reason: images.SkipReason, detail: str):
    if reason not in self._skip_counters:
      self._skip_counters[reason] = beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"skipped_{reason.value}")
    self._skip_counters[reason].inc()
    return SKIPPED, {"file": photo.source, "image_id": photo.image_id, "reason": reason.value, "detail": detail}

  def process(self, photos: List[sources.Photo]):
    for photo in photos:
      yield from self._make_and_write(photo)
      self._progress.add()

  def _make_and_write(self, photo: sources.Photo):
    if photo.refused:  # found while listing (outside the root, a FIFO, a broken link...): never opened
      yield self._skip(photo, images.SkipReason(photo.refused), photo.detail)
      return
    try:
      data = sources.read_bytes(photo.path)
    except images.Skip as skip:  # not a regular file any more
      yield self._skip(photo, skip.reason, skip.detail)
      return
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
      yield self._skip(photo, images.SkipReason.GRAYSCALE, bw_detail(arrays))
      return
    self._examples.inc()
    split = splits.split_of(photo.image_id, not arrays.black_and_white, self._test_fraction, self._eval_fraction)
    self._shards.write(split, photo.image_id, make_example(photo, arrays))
    if arrays.black_and_white:
      yield GRAYSCALE_KEPT, photo.source

  def finish_bundle(self):
    for shard in self._shards.close():
      yield GlobalWindows.windowed_value((SHARD, shard))
