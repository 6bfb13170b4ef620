"""tf.data input pipeline: gzip TFRecords of the Examples artifact -> (inputs, ab) batches.

Examples are parsed a batch at a time with the shared feature definition
(`schemas.features.decode_examples`, `parse_examples`). Augmentation draws one random affine
map per example (horizontal flip, zoom, shear) and applies it to L, ab and the 299x299 grey
image alike: the map is defined on centred pixel coordinates, so the 224 and 299 images move
together. Randomness is stateless and keyed by (seed, batch index), so the stream of training
batches is a pure function of the seed: a resumed run skips the batches already trained on
and sees exactly what an uninterrupted run would have.

The host's part (make_dataset) reads, parses to the stored uint8 images and draws the maps;
the warp (`augment`) runs in the training step, where the replica runs (trainer/training_model.py).
CPU time per example on this 2-core machine (coco128, batch 32; bench/train.py's input_* and warp*):
  read + gunzip (stored gzip, 240 KB)   0.40 ms   (1.9 ms for Beam's level-6 deflate, see Embed)
  parse + decode to uint8, maps         0.09 ms   (0.37 ms to float32)
  the host's whole part                 ~1,950 examples per CPU second live, ~2,150 precomputed
  warp l + ab (224), to model scale     0.9 ms    (1.5 ms with crop_and_resize, a box per row)
  warp gray (299, live only)            0.5 ms    (0.9 ms with crop_and_resize)
On a GPU the warp is a small part of the step; on a CPU-only machine a core does both parts:
~525 examples per second live, ~720 precomputed.
"""
from typing import Dict, Sequence, Tuple

import tensorflow as tf

from schemas import features

ZOOM_RANGE = 0.2       # zoom in: the source window is 1 - z to 1 times the photo (and smaller when sheared)
SHEAR_RANGE = 0.2      # horizontal shear factor (tan of the angle) in [-s, s]
SHUFFLE_BUFFER = 256   # examples (~60 MB of decoded pixels)
MAPS_KEY = "augment_maps"  # an augmented training batch's [B, 5] affine maps (random_maps)
# Multi-worker runs: every worker makes this same stream of global batches and trains on its
# own part of each, so batch N is the same on every worker (and in a one-process run) and a
# resumed run skips exactly the batches done. TF's default would shard by file when there are
# enough files, giving each worker a stream of its own.
_SHARD_BY_DATA = tf.data.Options()
_SHARD_BY_DATA.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
_SHAPES = {**features.IMAGE_SHAPES, features.EMBEDDING_KEY: features.EMBEDDING_SHAPE}


def count_examples(patterns: Sequence[str]) -> int:
  records = features.records(patterns)
  return int(records.batch(1024).reduce(tf.constant(0, tf.int64), lambda n, b: n + tf.size(b, tf.int64)))


def make_dataset(patterns: Sequence[str], batch_size: int, *, training: bool, augment: bool = True,
                 seed: int = 0, skip_batches: int = 0, drop_remainder: bool = False,
                 precomputed: bool = False) -> tf.data.Dataset:
  """Batches of ({"l", "gray"}, ab) at the model's scales; ({"l", "embedding"}, ab) if
  `precomputed` (the colorizer head's inputs: Examples written by components/embed).

  training=True: shuffled, repeated forever, full batches only, starting after
  `skip_batches` batches. With `augment`, l, ab and gray stay uint8 as stored and the
  inputs carry each example's random map (MAPS_KEY): `augment` turns such a batch into
  the model's, in the training step. training=False: one ordered pass without
  augmentation; with `drop_remainder` only full batches (a partial last batch can
  leave a replica of MirroredStrategy with no examples, which TF's CPU convolutions
  reject).
  """
  keys = features.MODEL_KEYS_PRECOMPUTED if precomputed else features.MODEL_KEYS_LIVE
  records = features.records(patterns).with_options(_SHARD_BY_DATA)
  if not training:
    return records.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda serialized: _split(features.parse_examples(serialized, keys)),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
  batches = (records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
             .repeat()
             .batch(batch_size, drop_remainder=True)
             .skip(skip_batches)
             .enumerate(start=skip_batches))

  def parse(index, serialized):
    example = features.decode_examples(serialized, keys)
    for key in keys:
      example[key] = tf.ensure_shape(example[key], (batch_size,) + _SHAPES[key])
    if not augment:
      return _split({key: features.to_model(key, value) for key, value in example.items()})
    # Stored uint8 images and their maps: the warp itself runs in the training step (`augment`).
    inputs, ab = _split(example)
    inputs[MAPS_KEY] = random_maps(batch_size, tf.stack([tf.cast(seed, tf.int64), index]))
    return inputs, ab

  return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def augment(inputs: Dict[str, tf.Tensor], ab: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
  """A training batch as make_dataset(augment=True) yields it -> the model's inputs and target:
  l, ab and gray (if there) of each example warped by its map, at model scale.

  Runs in the training step, on the replica's device (trainer/training_model.py): the host
  only reads and parses, and sends uint8 images (4x fewer bytes than float32). A precomputed
  embedding stays as it is: the class vector of the whole unaugmented photo.
  """
  maps = inputs[MAPS_KEY]
  out = {key: value for key, value in inputs.items() if key != MAPS_KEY}
  out[features.L_KEY], ab = _augment_lab(inputs[features.L_KEY], ab, maps)
  if features.GRAY_KEY in inputs:
    out[features.GRAY_KEY] = _augment_gray(inputs[features.GRAY_KEY], maps)
  return out, ab


def random_maps(n: int, seed) -> tf.Tensor:
  """[n, 5] affine maps (a0, a1, a2, tx, ty): centred output pixel (x, y) reads source
  (a0 x + a1 y + tx, a2 y + ty), in half-sizes, so the 224 and 299 images move together.

  Zoom only enlarges and the sheared window is placed at a random position inside
  the photo, so no border pixels are invented for the L/ab targets.
  """
  u = tf.random.stateless_uniform([n, 5], seed=seed)
  flip = tf.where(u[:, 0] < 0.5, -1.0, 1.0)
  shear = SHEAR_RANGE * (2.0 * u[:, 1] - 1.0)
  zoom = (1.0 - ZOOM_RANGE * u[:, 2]) / (1.0 + tf.abs(shear))
  return tf.stack([zoom * flip, zoom * shear, zoom,
                   (1.0 - zoom * (1.0 + tf.abs(shear))) * (2.0 * u[:, 3] - 1.0),
                   (1.0 - zoom) * (2.0 * u[:, 4] - 1.0)], axis=1)


# Compiled with XLA, which fuses the gathers and blends of `warp` into loops over the output:
# 3-7x less CPU than TF's own gather kernels or crop_and_resize with one box per row. One
# warp per compiled function: XLA 2.16 on CPU miscomputed two warps fused together. Each
# channel is a plane of its own (its gathers of 2-value pixels cost 2.5x more), planes are
# stacked and split with transposes (a concat along the channel axis costs more than the warp).
@tf.function(jit_compile=True)
def _augment_lab(l, ab, a):
  n, size = l.shape[0], l.shape[1]
  planes = tf.concat([l[..., 0], tf.reshape(tf.transpose(ab, [3, 0, 1, 2]), [2 * n, size, size])], axis=0)
  warped = warp(planes, tf.tile(a, [3, 1]))
  ab = tf.transpose(tf.reshape(warped[n:], [2, n, size, size]), [1, 2, 3, 0])
  return features.to_model(features.L_KEY, warped[:n, ..., tf.newaxis]), features.to_model(features.AB_KEY, ab)


@tf.function(jit_compile=True)
def _augment_gray(gray, a):
  return features.to_model(features.GRAY_KEY, warp(gray[..., 0], a)[..., tf.newaxis])


def warp(images, a):
  """Exact bilinear warp of square one-channel images [B, S, S] (any dtype) by the affine
  maps `a` [B, 5] (see random_maps) -> float32 [B, S, S].

  The map is separable: output row y reads source row a2 y + ty and, along it, the columns
  a0 x + (a1 y + tx). So: two gathers of whole source rows, blended, then two gathers of
  one pixel per output pixel, blended. Coordinates are clamped to the image: the maps stay
  inside it, so that only absorbs rounding.
  """
  n, size, _ = images.shape
  half = (size - 1) / 2.0
  v = tf.linspace(-1.0, 1.0, size)[tf.newaxis, :]            # centred rows (and columns), in half-sizes
  a0, a1, a2, tx, ty = [t[:, tf.newaxis] for t in tf.unstack(a, axis=1)]
  y0, y1, wy = _neighbours((a2 * v + ty + 1.0) * half, size)                                     # [B, S]
  x0, x1, wx = _neighbours((a0[:, :, tf.newaxis] * v[:, tf.newaxis, :] + (a1 * v + tx + 1.0)[:, :, tf.newaxis])
                           * half, size)                                                          # [B, S, S]
  top = tf.cast(tf.gather(images, y0, batch_dims=1), tf.float32)
  bottom = tf.cast(tf.gather(images, y1, batch_dims=1), tf.float32)
  rows = top + wy[:, :, tf.newaxis] * (bottom - top)
  left = tf.gather(rows, x0, batch_dims=2)
  right = tf.gather(rows, x1, batch_dims=2)
  return left + wx * (right - left)


def _neighbours(coordinate, size):
  """Pixel coordinates -> (the pixel at or before, the one after, the weight of the one after)."""
  coordinate = tf.clip_by_value(coordinate, 0.0, size - 1.0)
  before = tf.floor(coordinate)
  index = tf.cast(before, tf.int32)
  return index, tf.minimum(index + 1, size - 1), coordinate - before


def _split(example) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
  """-> (model inputs, ab): the inputs are l and whichever global input was parsed."""
  return {k: v for k, v in example.items() if k in (features.L_KEY, features.GRAY_KEY, features.EMBEDDING_KEY)}, \
      example[features.AB_KEY]
