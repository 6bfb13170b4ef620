"""The tf.data input pipeline on the real coco128 Examples artifact."""
import numpy as np
import pytest
import tensorflow as tf

from schemas import features
from trainer import data
from trainer import tf_color


@pytest.fixture(scope="module")
def train_files(coco128_examples):
  return [f"{coco128_examples.uri}/Split-train/*"]


@pytest.fixture(scope="module")
def eval_files(coco128_examples):
  return [f"{coco128_examples.uri}/Split-eval/*"]


@pytest.fixture(scope="module")
def examples(train_files):
  """8 decoded train examples (stored uint8, not augmented), with static batch shapes."""
  serialized = next(iter(features.records(train_files).batch(8)))
  decoded = features.decode_examples(serialized)
  return {k: tf.ensure_shape(decoded[k], (8,) + data._SHAPES[k]) for k in features.MODEL_KEYS_LIVE}


def _model_scale(example):
  return {k: features.to_model(k, v) for k, v in example.items()}


def _first(ds, n):
  return [(x, y) for x, y in ds.take(n)]


def _augmented(examples, seed):
  """`examples` (stored uint8) augmented as the training step does, with random_maps(8, seed)."""
  inputs = {key: value for key, value in examples.items() if key != features.AB_KEY}
  inputs[data.MAPS_KEY] = data.random_maps(8, seed)
  inputs, ab = data.augment(inputs, examples[features.AB_KEY])
  return {**inputs, features.AB_KEY: ab}


def test_training_batches_leave_the_host_stored_and_reach_the_model_at_its_scales(train_files):
  inputs, ab = next(iter(data.make_dataset(train_files, 4, training=True, seed=1)))
  assert set(inputs) == {features.L_KEY, features.GRAY_KEY, data.MAPS_KEY}
  assert inputs[features.L_KEY].dtype == ab.dtype == inputs[features.GRAY_KEY].dtype == tf.uint8
  assert inputs[data.MAPS_KEY].shape == (4, 5)
  inputs, ab = data.augment(inputs, ab)
  assert set(inputs) == {features.L_KEY, features.GRAY_KEY}
  assert inputs[features.L_KEY].shape == (4,) + features.L_SHAPE
  assert inputs[features.GRAY_KEY].shape == (4,) + features.GRAY_SHAPE
  assert ab.shape == (4,) + features.AB_SHAPE
  for t in (inputs[features.L_KEY], inputs[features.GRAY_KEY], ab):  # [-1, 1], but for float32 rounding
    assert t.dtype == tf.float32 and -1.0 - 1e-6 <= float(tf.reduce_min(t)) and float(tf.reduce_max(t)) <= 1.0 + 1e-6
  assert float(tf.math.reduce_std(ab)) > 0.01  # real colour, not a constant


def test_identity_warp_reproduces_the_image_and_flip_mirrors_it(examples):
  identity = tf.tile([[1.0, 0.0, 1.0, 0.0, 0.0]], [8, 1])
  flip = tf.tile([[-1.0, 0.0, 1.0, 0.0, 0.0]], [8, 1])
  for key in (features.L_KEY, features.GRAY_KEY):
    plane = examples[key][..., 0]  # stored levels 0..255: within 1/100 of a level
    np.testing.assert_allclose(data.warp(plane, identity), plane, atol=0.01)
    np.testing.assert_allclose(data.warp(plane, flip), tf.reverse(plane, axis=[2]), atol=0.01)


def _bilinear_reference(image, a):
  """Numpy, float64: output pixel (x, y) of an S x S image [S, S, C], in centred half-size
  coordinates u, v in [-1, 1], reads source (a0 u + a1 v + tx, a2 v + ty) bilinearly."""
  size = image.shape[0]
  a0, a1, a2, tx, ty = a
  v, u = np.meshgrid(np.linspace(-1.0, 1.0, size), np.linspace(-1.0, 1.0, size), indexing="ij")
  sx = np.clip((a0 * u + a1 * v + tx + 1.0) * (size - 1) / 2.0, 0, size - 1)
  sy = np.clip((a2 * v + ty + 1.0) * (size - 1) / 2.0, 0, size - 1)
  x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
  x1, y1 = np.minimum(x0 + 1, size - 1), np.minimum(y0 + 1, size - 1)
  wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
  image = image.astype(np.float64)
  top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
  bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
  return top * (1 - wy) + bottom * wy


def test_augmentation_is_the_exact_bilinear_warp_of_each_image(examples):
  """The compiled warp of the training pipeline against a plain bilinear resampling of the
  same real photos by the same random maps (flips, zooms and shears among them)."""
  seed = tf.constant([11, 3], tf.int64)
  augmented = _augmented(examples, seed)
  maps = data.random_maps(8, seed).numpy()
  assert (maps[:, 0] < 0).any() and (maps[:, 0] > 0).any() and np.abs(maps[:, 1]).max() > 0.05
  for key in features.MODEL_KEYS_LIVE:
    expected = np.stack([_bilinear_reference(image, a) for image, a in zip(examples[key].numpy(), maps, strict=True)])
    assert augmented[key].dtype == tf.float32
    # float32 coordinates against float64 ones: 1e-4 of the model scale is ~1/80 of a stored level.
    np.testing.assert_allclose(augmented[key], features.to_model(key, expected.astype(np.float32)), atol=1e-4)


def _l_of_gray(gray):
  """Model-scale 299 grey -> L* at 224: the lightness the grey image shows."""
  rgb = tf.image.resize(tf.repeat((gray + 1.0) / 2.0, 3, axis=-1), [features.IMAGE_SIZE] * 2, antialias=True)
  return tf_color.rgb_to_l(rgb)


def test_augmentation_moves_l_ab_and_gray_together(examples):
  """The 299 grey image must show the same scene as L after augmentation: its lightness
  matches L about as well as before augmenting, and far better than with another draw."""
  def l_error(l, gray):
    return float(tf.reduce_mean(tf.abs((l + 1.0) * 50.0 - _l_of_gray(gray))))

  seed = tf.constant([7, 0], tf.int64)
  augmented = _augmented(examples, seed)
  other = _augmented(examples, tf.constant([8, 0], tf.int64))
  examples = _model_scale(examples)
  before = l_error(examples[features.L_KEY], examples[features.GRAY_KEY])
  after = l_error(augmented[features.L_KEY], augmented[features.GRAY_KEY])
  mismatched = l_error(augmented[features.L_KEY], other[features.GRAY_KEY])
  assert before < 1.5, before
  assert after < before + 1.0, (before, after)
  assert mismatched > 4 * after, (after, mismatched)
  # It did move things, and ab moved with L: the colour is still where the lightness is.
  assert l_error(examples[features.L_KEY], augmented[features.GRAY_KEY]) > 4 * after
  np.testing.assert_allclose(float(tf.reduce_mean(augmented[features.AB_KEY])),
                             float(tf.reduce_mean(examples[features.AB_KEY])), atol=0.02)


def test_batches_are_a_function_of_seed_and_position(train_files):
  """What a resumed run relies on: skipping k batches gives batch k of a fresh run."""
  fresh = _first(data.make_dataset(train_files, 4, training=True, seed=5), 3)
  again = _first(data.make_dataset(train_files, 4, training=True, seed=5), 3)
  resumed = _first(data.make_dataset(train_files, 4, training=True, seed=5, skip_batches=2), 1)
  other = _first(data.make_dataset(train_files, 4, training=True, seed=6), 1)
  for (x1, y1), (x2, y2) in zip(fresh, again, strict=True):
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(x1[features.GRAY_KEY], x2[features.GRAY_KEY])
    np.testing.assert_array_equal(x1[data.MAPS_KEY], x2[data.MAPS_KEY])
  np.testing.assert_array_equal(resumed[0][1], fresh[2][1])
  np.testing.assert_array_equal(resumed[0][0][features.L_KEY], fresh[2][0][features.L_KEY])
  np.testing.assert_array_equal(resumed[0][0][data.MAPS_KEY], fresh[2][0][data.MAPS_KEY])
  assert not np.array_equal(other[0][1], fresh[0][1])


def test_training_stream_repeats_over_epochs_with_new_order(train_files):
  count = data.count_examples(train_files)
  batches = count // 4
  ds = data.make_dataset(train_files, 4, training=True, augment=False, seed=1)
  means = [float(tf.reduce_mean(y)) for _, y in ds.take(2 * batches)]
  assert len(means) == 2 * batches  # it does not run dry after one pass
  assert means[:batches] != means[batches:]  # reshuffled


def test_eval_pass_reads_every_example_once_unaugmented(eval_files):
  count = data.count_examples(eval_files)
  assert count == sum(1 for _ in features.records(eval_files))
  batches = list(data.make_dataset(eval_files, 4, training=False))
  assert sum(int(y.shape[0]) for _, y in batches) == count
  full = list(data.make_dataset(eval_files, 4, training=False, drop_remainder=True))
  assert len(full) == count // 4 and all(y.shape[0] == 4 for _, y in full)
  raw = features.parse_examples(next(iter(features.records(eval_files).batch(4))))
  np.testing.assert_array_equal(batches[0][0][features.L_KEY], raw[features.L_KEY])
  np.testing.assert_array_equal(batches[0][1], raw[features.AB_KEY])


def test_no_matching_files_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
    data.make_dataset([str(tmp_path / "Split-train" / "*")], 4, training=True)
