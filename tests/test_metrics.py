"""The evaluation's numbers equal independent references on real COCO photos (ingested coco128)."""
import os

import numpy as np
import pytest
from skimage import metrics as skmetrics
import tensorflow as tf

from components import metrics
from components.report import grid
from components.report import scoring
from imaging import color
from schemas import features

NUM_PHOTOS = 6


@pytest.fixture(scope="module")
def serialized(coco128_examples):
  """The first real coco128 examples of the train split, as ingestion wrote them."""
  files = tf.io.gfile.glob(os.path.join(coco128_examples.uri, f"Split-{features.TRAIN_SPLIT}", "*"))
  records = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP").take(NUM_PHOTOS)
  return tf.constant([r.numpy() for r in records])


def _feature(serialized, key):
  return [tf.train.Example.FromString(r).features.feature[key].bytes_list.value[0] for r in serialized.numpy()]


@pytest.fixture(scope="module")
def stored_ab(serialized):
  """ab / 128 as stored, [N, 224, 224, 2] float64."""
  return np.stack([features.decode_ab_numpy(b) for b in _feature(serialized, features.AB_KEY)]
                  ).astype(np.float64) / features.AB_SCALE


@pytest.fixture(scope="module")
def l_star(serialized):
  return np.stack([features.decode_l_numpy(b) for b in _feature(serialized, features.L_KEY)])


@pytest.fixture(scope="module")
def photos(l_star, stored_ab):
  """The examples as sRGB uint8 [N, 224, 224, 3]."""
  return color.lab_to_rgb(np.concatenate([l_star, stored_ab * features.AB_SCALE], -1))


@pytest.fixture(scope="module")
def predicted_ab(stored_ab):
  """A plausible prediction: the truth shrunk halfway to grey, plus noise, within [-1, 1]."""
  rng = np.random.default_rng(0)
  return np.clip(0.5 * stored_ab + rng.normal(0.0, 0.05, stored_ab.shape), -1, 1).astype(np.float32)


def _metric_value(metric, labels, predictions, batch=4):
  for start in range(0, len(predictions), batch):
    metric.update_state(labels[start:start + batch], predictions[start:start + batch])
  return float(metric.result())


@pytest.mark.parametrize("label_form", ["stored_bytes", "flat_bytes", "decoded", "decoded_flat"])
def test_tfma_metrics_equal_numpy_reference(serialized, stored_ab, predicted_ab, label_form):
  raw = tf.io.parse_example(serialized, features.feature_spec())[features.AB_KEY].numpy()
  labels = {
      "stored_bytes": raw.reshape(-1, 1),     # with a schema: [B, 1] strings
      "flat_bytes": raw,                      # without one
      "decoded": stored_ab,
      "decoded_flat": stored_ab.reshape(len(stored_ab), -1),
  }[label_form]
  mse = np.mean((stored_ab - predicted_ab) ** 2)
  no_colour = np.mean(stored_ab ** 2)
  assert _metric_value(metrics.AbMse(), labels, predicted_ab) == pytest.approx(mse, rel=1e-6)
  assert _metric_value(metrics.NoColourMse(), labels, predicted_ab) == pytest.approx(no_colour, rel=1e-6)
  assert _metric_value(metrics.MseGainOverNoColour(), labels, predicted_ab) == pytest.approx(
      no_colour - mse, rel=1e-5)
  assert 0 < mse < no_colour


def test_metric_names_are_what_tfma_calls_them():
  # TFMA names a metric configured by class name after the snake_case class name.
  for cls, name in ((metrics.AbMse, metrics.AB_MSE), (metrics.NoColourMse, metrics.NO_COLOUR_MSE),
                    (metrics.MseGainOverNoColour, metrics.GAIN_OVER_NO_COLOUR)):
    assert cls().name == name
    assert "".join(w.capitalize() for w in name.split("_")) == cls.__name__


def test_example_weights_weigh_whole_images(stored_ab, predicted_ab):
  metric = metrics.AbMse()
  metric.update_state(stored_ab, predicted_ab, sample_weight=np.array([2.0] + [1.0] * (len(stored_ab) - 1)))
  per_image = np.mean((stored_ab - predicted_ab) ** 2, axis=(1, 2, 3))
  assert float(metric.result()) == pytest.approx(
      (2 * per_image[0] + per_image[1:].sum()) / (len(per_image) + 1), rel=1e-6)


def test_scores_and_baselines_equal_numpy_reference(serialized, stored_ab, predicted_ab, l_star, photos):
  batches = [serialized[:4], serialized[4:]]
  mean_ab = scoring.train_mean_ab(batches[:1])
  np.testing.assert_allclose(mean_ab, stored_ab[:4].reshape(-1, 2).mean(axis=0), rtol=1e-9)

  predictions = iter([predicted_ab[:4], predicted_ab[4:]])
  scores, rows = scoring.score(batches, lambda s: tf.constant(next(predictions)), mean_ab, grid_rows=5)

  assert scores.test_images == len(photos)
  assert scores.mse == pytest.approx(np.mean((stored_ab - predicted_ab) ** 2), rel=1e-9)
  assert scores.no_colour_mse == pytest.approx(np.mean(stored_ab ** 2), rel=1e-9)
  assert scores.mean_ab_mse == pytest.approx(np.mean((stored_ab - mean_ab) ** 2), rel=1e-9)
  assert scores.train_mean_ab == pytest.approx(tuple(mean_ab * features.AB_SCALE))
  # The mean colour of some photos beats grey on others, as on COCO at large.
  assert scores.mean_ab_mse < scores.no_colour_mse

  truth = photos
  prediction = color.lab_to_rgb(np.concatenate([l_star, predicted_ab * features.AB_SCALE], -1))
  psnr = [skmetrics.peak_signal_noise_ratio(t, p, data_range=255) for t, p in zip(truth, prediction, strict=True)]
  assert scores.psnr == pytest.approx(np.mean(psnr), rel=1e-4)
  assert scores.colorfulness_truth == pytest.approx(np.mean([_colorfulness_reference(t) for t in truth]))
  assert scores.colorfulness_prediction < scores.colorfulness_truth  # halved ab is duller

  assert len(rows) == 5
  gray, pred, true = rows[2]
  np.testing.assert_array_equal(true, truth[2])
  np.testing.assert_array_equal(pred, prediction[2])
  assert gray.shape == true.shape and (gray[..., 0] == gray[..., 2]).all()


def test_psnr_and_ssim_equal_skimage(photos):
  rng = np.random.default_rng(1)
  noisy = np.clip(photos.astype(int) + rng.integers(-20, 21, photos.shape), 0, 255).astype(np.uint8)
  psnr = metrics.psnr(photos, noisy)
  ssim = metrics.ssim(photos, noisy)
  for i, (a, b) in enumerate(zip(photos, noisy, strict=True)):
    assert psnr[i] == pytest.approx(skmetrics.peak_signal_noise_ratio(a, b, data_range=255), rel=1e-4)
    assert ssim[i] == pytest.approx(skmetrics.structural_similarity(
        a, b, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False), abs=2e-3)
  assert metrics.ssim(photos[:1], photos[:1])[0] == pytest.approx(1.0)


def _colorfulness_reference(rgb):
  """Hasler and Suesstrunk 2003, eq. (1)-(3), written out per pixel sum."""
  r, g, b = (rgb[..., i].astype(np.float64).ravel() for i in range(3))
  rg, yb = r - g, 0.5 * (r + g) - b
  n = rg.size
  mean_rg, mean_yb = rg.sum() / n, yb.sum() / n
  std_rg = np.sqrt(((rg - mean_rg) ** 2).sum() / n)
  std_yb = np.sqrt(((yb - mean_yb) ** 2).sum() / n)
  return np.sqrt(std_rg ** 2 + std_yb ** 2) + 0.3 * np.sqrt(mean_rg ** 2 + mean_yb ** 2)


def test_colorfulness_equals_reference(photos):
  np.testing.assert_allclose(color.colorfulness(photos), [_colorfulness_reference(p) for p in photos], rtol=1e-9)
  grey = np.repeat(color.rgb_to_gray(photos)[..., None], 3, axis=-1)
  np.testing.assert_allclose(color.colorfulness(grey), 0.0, atol=1e-9)
  assert (color.colorfulness(photos) > 5).all()


def test_grid_has_one_row_per_image_and_the_images_in_it(photos):
  rows = [(p, p[::-1], p[:, ::-1]) for p in photos[:3]]
  image = grid.render(rows)
  assert image.size == grid.expected_size(3, features.IMAGE_SIZE)
  pixels = np.asarray(image)
  top = grid.HEADER_HEIGHT + features.IMAGE_SIZE
  np.testing.assert_array_equal(pixels[top:top + features.IMAGE_SIZE, features.IMAGE_SIZE:2 * features.IMAGE_SIZE],
                                photos[1][::-1])
  with pytest.raises(ValueError):
    grid.render([])
