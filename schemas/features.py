"""The one definition of what an example holds: keys, shapes, encodings, scales.

The ingestion writer, the trainer's input pipeline, the Evaluator and the serving
signatures all import this module; nothing else states these facts.

Encodings (raw bytes in a tf.Example, row-major, height x width x channels):
  l     uint8, 224x224x1. L* (CIELAB, D65) in [0, 100] stored as round(L * 255 / 100).
  ab    uint8, 224x224x2. a*, b* clipped to [-128, 127] stored as round(ab) + 128.
  gray  uint8, 299x299x1. The sRGB grey level with the same L* (a = b = 0): the
        colourless photo Inception-ResNet-v2 sees, at its own input size.
  embedding  float16 little-endian, 1000 values (2000 bytes). Inception-ResNet-v2's class
        vector (softmax) of `gray`: only in the Examples the Embed component writes
        (components/embed/), absent from the ingested ones.

Photo statistics (one value each; what the data gate compares between spans, see
components/data_gate/; the model never reads them):
  mean_l, mean_a, mean_b  float. Mean L*, a*, b* of the stored 224x224 crop (toned scans
        shift a*/b*, dark or washed-out deliveries shift L*).
  colorfulness  float. Hasler and Suesstrunk's colorfulness of the 224x224 sRGB crop
        (imaging/color.py): 0 for grey, ~30-60 for ordinary photos.
  source_width, source_height  int. The photo's size in pixels as it is viewed (EXIF rotation
        applied), before any resize: thumbnails and shrunk copies show here.
A span's shares (span_shares, from its skip report; no example carries them):
  skip share  files that made no example for a reason other than black-and-white (broken,
        truncated, missing, too small...) among every file the ingestion considered.
  black-and-white share  black-and-white photos (skipped or kept) among the usable photos.

Model-facing scales (what `parse_examples` returns and the network consumes):
  l     float32 in [-1, 1]  = L / 50 - 1
  ab    float32 in [-1, 1)  = ab / 128        (the regression target; MSE is on this)
  gray  float32 in [-1, 1]  = grey / 127.5 - 1 (Inception-ResNet-v2's preprocess_input)
  embedding  float32 [1000] (the stored float16 values)

Resize policy (training and evaluation): the largest centred square of the photo is
resized to 224 (L, ab) and 299 (gray), i.e. shorter side resized then centre-cropped,
so the network never sees distorted shapes. Colorizing a whole photo at serving time
cannot crop, so it resizes the full frame to 224x224, predicts ab, and resizes ab back
to the original size before merging it with the original full-resolution L.

TensorFlow is imported on first use by the functions that need it: the model definition
(trainer/model.py) reads the constants here and must import without TensorFlow.
"""
import hashlib
import os
from typing import Dict, List, Sequence

import numpy as np


class _TensorFlowOnFirstUse:
  """`tf` for the functions below, imported when one of them first runs."""

  def __getattr__(self, name):
    import tensorflow
    return getattr(tensorflow, name)


tf = _TensorFlowOnFirstUse()

# The same features as a TFMD schema (for ImportSchemaGen and TFMA); a test pins the two.
SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.pbtxt")

IMAGE_SIZE = 224
GLOBAL_SIZE = 299
L_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
AB_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 2)
GRAY_SHAPE = (GLOBAL_SIZE, GLOBAL_SIZE, 1)
EMBEDDING_SHAPE = (1000,)
EMBEDDING_DTYPE = "<f2"

IMAGE_ID_KEY = "image_id"
SOURCE_KEY = "source"
LICENSE_KEY = "license"
L_KEY = "l"
AB_KEY = "ab"
GRAY_KEY = "gray"
EMBEDDING_KEY = "embedding"
MEAN_L_KEY = "mean_l"
MEAN_A_KEY = "mean_a"
MEAN_B_KEY = "mean_b"
COLORFULNESS_KEY = "colorfulness"
SOURCE_WIDTH_KEY = "source_width"
SOURCE_HEIGHT_KEY = "source_height"
# The per-photo statistics above, float and int valued.
PHOTO_FLOAT_STATS = (MEAN_L_KEY, MEAN_A_KEY, MEAN_B_KEY, COLORFULNESS_KEY)
PHOTO_INT_STATS = (SOURCE_WIDTH_KEY, SOURCE_HEIGHT_KEY)
SKIP_SHARE = "skip_share"
BW_SHARE = "black_and_white_share"
GRAYSCALE_SKIP_REASON = "grayscale"  # imaging.images.SkipReason.GRAYSCALE's value (a test pins the two)

L_BYTES_PER_UNIT = 255.0 / 100.0
AB_OFFSET = 128.0
AB_SCALE = 128.0

# How an Examples split is stored: gzip TFRecord files (as TFX's ExampleGens write them).
RECORD_COMPRESSION = "GZIP"

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
TEST_SPLIT = "test"
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT, TEST_SPLIT)


def span_shares(split_counts: Dict[str, int], skip_counts: Dict[str, int], grayscale_kept: int) -> Dict[str, float]:
  """A span's SKIP_SHARE and BW_SHARE (see the module doc) from its skip report's counts."""
  kept = sum(split_counts.values())
  skipped_bw = skip_counts.get(GRAYSCALE_SKIP_REASON, 0)
  skipped = sum(skip_counts.values()) - skipped_bw
  usable = kept + skipped_bw
  return {SKIP_SHARE: skipped / max(usable + skipped, 1), BW_SHARE: (skipped_bw + grayscale_kept) / max(usable, 1)}


def encode_l(l_star: np.ndarray) -> bytes:
  """L* in [0, 100], HxW or HxWx1 -> the stored bytes."""
  return np.clip(np.rint(l_star * L_BYTES_PER_UNIT), 0, 255).astype(np.uint8).tobytes()


def encode_ab(ab: np.ndarray) -> bytes:
  """a*b* HxWx2 -> the stored bytes."""
  return np.clip(np.rint(ab) + AB_OFFSET, 0, 255).astype(np.uint8).tobytes()


def encode_gray(gray: np.ndarray) -> bytes:
  """SRGB grey levels in [0, 255], HxW or HxWx1 -> the stored bytes."""
  if gray.dtype == np.uint8:  # already stored form; rint + clip of a uint8 299x299 costs ~2 ms
    return gray.tobytes()
  return np.clip(np.rint(gray), 0, 255).astype(np.uint8).tobytes()


def encode_embedding(vector: np.ndarray) -> bytes:
  """Inception-ResNet-v2's class vector [1000] -> the stored bytes."""
  return np.asarray(vector).reshape(EMBEDDING_SHAPE).astype(EMBEDDING_DTYPE).tobytes()


def decode_embedding_numpy(data: bytes) -> np.ndarray:
  """Stored bytes -> the class vector, [1000] float32."""
  return np.frombuffer(data, EMBEDDING_DTYPE).reshape(EMBEDDING_SHAPE).astype(np.float32)


def decode_l_numpy(data: bytes) -> np.ndarray:
  """Stored bytes -> L* in [0, 100], 224x224x1 float32."""
  return np.frombuffer(data, np.uint8).reshape(L_SHAPE).astype(np.float32) / L_BYTES_PER_UNIT


def decode_ab_numpy(data: bytes) -> np.ndarray:
  """Stored bytes -> a*b* 224x224x2 float32."""
  return np.frombuffer(data, np.uint8).reshape(AB_SHAPE).astype(np.float32) - AB_OFFSET


def decode_gray_numpy(data: bytes) -> np.ndarray:
  """Stored bytes -> sRGB grey 299x299x1 uint8."""
  return np.frombuffer(data, np.uint8).reshape(GRAY_SHAPE)


def record_files(patterns: Sequence[str]) -> List[str]:
  """The TFRecord files matching the patterns (e.g. "<split dir>/*"), sorted: a stable order."""
  files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
  if not files:
    raise FileNotFoundError(f"no TFRecord files match {list(patterns)}")
  return files


def records(patterns: Sequence[str]):
  """A tf.data.Dataset of the serialized examples in the files matching the patterns."""
  return tf.data.TFRecordDataset(record_files(patterns), RECORD_COMPRESSION, num_parallel_reads=tf.data.AUTOTUNE)


def feature_spec():
  """tf.io.parse_example spec of a stored example."""
  return {
      IMAGE_ID_KEY: tf.io.FixedLenFeature([], tf.int64),
      SOURCE_KEY: tf.io.FixedLenFeature([], tf.string),
      LICENSE_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0),
      L_KEY: tf.io.FixedLenFeature([], tf.string),
      AB_KEY: tf.io.FixedLenFeature([], tf.string),
      GRAY_KEY: tf.io.FixedLenFeature([], tf.string),
      # Only in the Embed component's output; parse it only from there (MODEL_KEYS_PRECOMPUTED).
      EMBEDDING_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
      **{key: tf.io.FixedLenFeature([], tf.float32) for key in PHOTO_FLOAT_STATS},
      **{key: tf.io.FixedLenFeature([], tf.int64) for key in PHOTO_INT_STATS},
  }


def spec_fingerprint() -> str:
  """What a stored example is (feature_spec, and the stored shapes and encodings above) as a short hash.

  The ingestion's cache key carries it (CocoIngest's `feature_spec`), so Examples cached under
  another spec are made again by the next run, and an unchanged spec keeps the cache.
  """
  spec = sorted((key, f.dtype.name, list(f.shape), f.default_value) for key, f in feature_spec().items())
  stored = (L_SHAPE, AB_SHAPE, GRAY_SHAPE, EMBEDDING_SHAPE, EMBEDDING_DTYPE, L_BYTES_PER_UNIT, AB_OFFSET,
            RECORD_COMPRESSION)
  return hashlib.sha256(repr((spec, stored)).encode()).hexdigest()[:16]


def _decode_raw(data, shape):
  return tf.reshape(tf.io.decode_raw(data, tf.uint8), (-1,) + shape)


def l_to_model(l_uint8):
  """Stored L bytes decoded to uint8 -> model scale [-1, 1]."""
  return tf.cast(l_uint8, tf.float32) / (50.0 * L_BYTES_PER_UNIT) - 1.0


def ab_to_model(ab_uint8):
  return (tf.cast(ab_uint8, tf.float32) - AB_OFFSET) / AB_SCALE


def gray_to_model(gray_uint8):
  return tf.cast(gray_uint8, tf.float32) / 127.5 - 1.0


def embedding_to_model(data):
  """Stored embedding bytes [B] -> float32 [B, 1000]; an example without one is an error."""
  return tf.cast(tf.reshape(tf.io.decode_raw(data, tf.float16, little_endian=True), (-1,) + EMBEDDING_SHAPE),
                 tf.float32)


_TO_MODEL = {L_KEY: l_to_model, GRAY_KEY: gray_to_model, AB_KEY: ab_to_model}
IMAGE_SHAPES = {L_KEY: L_SHAPE, GRAY_KEY: GRAY_SHAPE, AB_KEY: AB_SHAPE}
# What the fusion model reads (its inputs and the `ab` target), with the global features
# computed live from `gray` or read precomputed from `embedding`.
MODEL_KEYS_LIVE = (L_KEY, GRAY_KEY, AB_KEY)
MODEL_KEYS_PRECOMPUTED = (L_KEY, EMBEDDING_KEY, AB_KEY)


def decode_examples(serialized, keys=MODEL_KEYS_LIVE + (IMAGE_ID_KEY, SOURCE_KEY)):
  """A batch of serialized tf.Examples -> the `keys`, images as their stored uint8 values.

  `l` [B,224,224,1], `gray` [B,299,299,1], `ab` [B,224,224,2] uint8; `embedding` [B,1000]
  float32; `image_id` and `source` as stored. Only the asked-for features are parsed.
  `to_model` brings an image to model scale.
  """
  spec = feature_spec()
  parsed = tf.io.parse_example(serialized, {key: spec[key] for key in keys})
  return {key: _decode_raw(value, IMAGE_SHAPES[key]) if key in IMAGE_SHAPES
          else embedding_to_model(value) if key == EMBEDDING_KEY else value for key, value in parsed.items()}


def to_model(key: str, value):
  """A decoded feature (`decode_examples`), or a linear map of one such as a resampling, at model scale."""
  return _TO_MODEL[key](value) if key in _TO_MODEL else value


def parse_examples(serialized, keys=MODEL_KEYS_LIVE + (IMAGE_ID_KEY, SOURCE_KEY)):
  """A batch of serialized tf.Examples -> the `keys` as model-scale tensors.

  `l` [B,224,224,1], `gray` [B,299,299,1], `embedding` [B,1000] (model inputs), `ab`
  [B,224,224,2] (the target), `image_id` and `source` as stored. Only the asked-for
  features are parsed and decoded.
  """
  return {key: to_model(key, value) for key, value in decode_examples(serialized, keys).items()}
