"""tf.data input pipeline: gzip TFRecords of the Examples artifact -> (inputs, ab) batches.

Examples are parsed a batch at a time with the shared feature definition
(`schemas.features.parse_examples`). Augmentation draws one random affine map per
example (horizontal flip, zoom, shear) and applies it to L, ab and the 299x299 grey
image alike: the map is defined on centred pixel coordinates, so the 224 and 299
images move together. It costs ~1.5 ms per example on one CPU core (bench/train.py):
every output pixel is resampled. Randomness is stateless and keyed by (seed, batch index), so the
stream of training batches is a pure function of the seed: a resumed run skips the
batches already trained on and sees exactly what an uninterrupted run would have.
"""
from typing import Dict, Sequence, Tuple

import tensorflow as tf

from schemas import features

ZOOM_RANGE = 0.2       # zoom in: the source window is 1 - z to 1 times the photo (and smaller when sheared)
SHEAR_RANGE = 0.2      # horizontal shear factor (tan of the angle) in [-s, s]
SHUFFLE_BUFFER = 256   # examples (~60 MB of decoded pixels)
# Multi-worker runs: every worker makes this same stream of global batches and trains on its
# own part of each, so batch N is the same on every worker (and in a one-process run) and a
# resumed run skips exactly the batches done. TF's default would shard by file when there are
# enough files, giving each worker a stream of its own.
_SHARD_BY_DATA = tf.data.Options()
_SHARD_BY_DATA.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
_IMAGE_SHAPES = {features.L_KEY: features.L_SHAPE, features.AB_KEY: features.AB_SHAPE,
                 features.GRAY_KEY: features.GRAY_SHAPE}


def count_examples(patterns: Sequence[str]) -> int:
  records = features.records(patterns)
  return int(records.batch(1024).reduce(tf.constant(0, tf.int64), lambda n, b: n + tf.size(b, tf.int64)))


def make_dataset(patterns: Sequence[str], batch_size: int, *, training: bool, augment: bool = True,
                 seed: int = 0, skip_batches: int = 0, drop_remainder: bool = False) -> tf.data.Dataset:
  """Batches of ({"l", "gray"}, ab) at the model's scales.

  training=True: shuffled, repeated forever, full batches only, augmented if `augment`,
  starting after `skip_batches` batches. training=False: one ordered pass without
  augmentation; with `drop_remainder` only full batches (a partial last batch can
  leave a replica of MirroredStrategy with no examples, which TF's CPU convolutions
  reject).
  """
  records = features.records(patterns).with_options(_SHARD_BY_DATA)
  if not training:
    return records.batch(batch_size, drop_remainder=drop_remainder).map(
        _to_model_io, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
  batches = (records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
             .repeat()
             .batch(batch_size, drop_remainder=True)
             .skip(skip_batches)
             .enumerate(start=skip_batches))

  def parse(index, serialized):
    example = features.parse_examples(serialized)
    for key, shape in _IMAGE_SHAPES.items():
      example[key] = tf.ensure_shape(example[key], (batch_size,) + shape)
    if augment:
      example = augment_batch(example, tf.stack([tf.cast(seed, tf.int64), index]))
    return _split(example)

  return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def augment_batch(example: Dict[str, tf.Tensor], seed) -> Dict[str, tf.Tensor]:
  """The same random flip/zoom/shear on l, ab and gray of each example in a batch.

  Zoom only enlarges and the sheared window is placed at a random position inside
  the photo, so no border pixels are invented for the L/ab targets.
  """
  l, ab, gray = example[features.L_KEY], example[features.AB_KEY], example[features.GRAY_KEY]
  n = l.shape[0]
  u = tf.random.stateless_uniform([n, 5], seed=seed)
  flip = tf.where(u[:, 0] < 0.5, -1.0, 1.0)
  shear = SHEAR_RANGE * (2.0 * u[:, 1] - 1.0)
  zoom = (1.0 - ZOOM_RANGE * u[:, 2]) / (1.0 + tf.abs(shear))
  # Centred output pixel (x, y) reads source (a0 x + a1 y + tx, a2 y + ty), in half-sizes.
  a = tf.stack([zoom * flip, zoom * shear, zoom,
                (1.0 - zoom * (1.0 + tf.abs(shear))) * (2.0 * u[:, 3] - 1.0),
                (1.0 - zoom) * (2.0 * u[:, 4] - 1.0)], axis=1)
  out = dict(example)
  # One crop_and_resize per image: concatenating l and ab costs more than a second call.
  lab_rows = _row_boxes(a, features.IMAGE_SIZE)
  out[features.L_KEY] = _warp(l, *lab_rows)
  out[features.AB_KEY] = _warp(ab, *lab_rows)
  out[features.GRAY_KEY] = _warp(gray, *_row_boxes(a, features.GLOBAL_SIZE))
  return out


def _row_boxes(a, size):
  """One crop_and_resize box per output row, so each row of the result is a line
  segment of the source: an exact bilinear affine warp by `a` [B, 5] (see augment_batch).
  """
  v = tf.linspace(-1.0, 1.0, size)[tf.newaxis, :]            # centred rows, in half-sizes
  a0, a1, a2, tx, ty = [t[:, tf.newaxis] for t in tf.unstack(a, axis=1)]
  y = a2 * v + ty
  boxes = tf.stack([y, -a0 + a1 * v + tx, y, a0 + a1 * v + tx], axis=-1)
  n = a.shape[0]
  return tf.reshape((boxes + 1.0) / 2.0, [n * size, 4]), tf.repeat(tf.range(n), size)


def _warp(images, boxes, box_indices):
  n, size, _, channels = images.shape
  rows = tf.image.crop_and_resize(images, boxes, box_indices, [1, size])
  return tf.reshape(rows, [n, size, size, channels])


def _split(example) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
  return {features.L_KEY: example[features.L_KEY], features.GRAY_KEY: example[features.GRAY_KEY]}, \
      example[features.AB_KEY]


def _to_model_io(serialized):
  return _split(features.parse_examples(serialized))
