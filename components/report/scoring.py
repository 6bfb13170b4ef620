"""One pass over the test split: the model's ab MSE beside its baselines, picture metrics, grid rows.

The mean-ab baseline predicts the TRAINING split's mean a*, b* for every pixel (the best
constant colour a model could learn without looking at the photo); it is measured on the
test images like everything else here.
"""
import dataclasses
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from components import metrics
from imaging import color
from schemas import features

# serialized tf.Examples [B] -> predicted ab at model scale, any shape with B rows
Predictor = Callable[[tf.Tensor], tf.Tensor]


@dataclasses.dataclass
class Scores:
  test_images: int
  mse: float
  no_colour_mse: float
  mean_ab_mse: float
  train_mean_ab: Tuple[float, float]       # a*, b* of the training split
  psnr: float                              # dB, mean over images, sRGB uint8
  ssim: float
  no_colour_psnr: float                    # the same for the grey photo (ab = 0)
  no_colour_ssim: float
  colorfulness_prediction: float           # Hasler and Suesstrunk, mean over images
  colorfulness_truth: float

  def to_dict(self) -> Dict:
    return dataclasses.asdict(self)


def train_mean_ab(batches: Iterable[tf.Tensor]) -> np.ndarray:
  """Mean a*, b* (model scale) over every pixel of every example in `batches` of serialized
  tf.Examples; only the ab feature is decoded.
  """
  total, count = np.zeros(2), 0
  spec = {features.AB_KEY: features.feature_spec()[features.AB_KEY]}
  for serialized in batches:
    ab = metrics.ab_as_model_scale(tf.io.parse_example(serialized, spec)[features.AB_KEY]).numpy()
    pixels = ab.reshape(-1, 2).astype(np.float64)
    total += pixels.sum(axis=0)
    count += len(pixels)
  if not count:
    raise ValueError("the training split is empty: no mean ab to compare with")
  return total / count


def score(batches: Iterable[tf.Tensor], predict: Predictor, mean_ab: np.ndarray, grid_rows: int
          ) -> Tuple[Scores, List[Sequence[np.ndarray]]]:
  """Runs the model once over the test `batches` (serialized tf.Examples) and measures it.

  Returns the scores and the first `grid_rows` (grayscale, prediction, truth) sRGB images.
  """
  sums = dict(model=0.0, no_colour=0.0, mean_ab=0.0, values=0)
  per_image: Dict[str, List[np.ndarray]] = {k: [] for k in (
      "psnr", "ssim", "no_colour_psnr", "no_colour_ssim", "colorfulness_prediction", "colorfulness_truth")}
  grid: List[Sequence[np.ndarray]] = []
  mean_ab = np.asarray(mean_ab, np.float64)
  spec = features.feature_spec()
  for serialized in batches:
    parsed = tf.io.parse_example(serialized, {k: spec[k] for k in (features.L_KEY, features.AB_KEY)})
    ab_true = metrics.ab_as_model_scale(parsed[features.AB_KEY]).numpy().astype(np.float64)
    ab_pred = metrics.ab_as_model_scale(predict(serialized)).numpy().astype(np.float64)
    sums["model"] += np.square(ab_true - ab_pred).sum()
    sums["no_colour"] += np.square(ab_true).sum()
    sums["mean_ab"] += np.square(ab_true.reshape(len(ab_true), -1, 2) - mean_ab).sum()
    sums["values"] += ab_true.size

    l_star = np.stack([features.decode_l_numpy(b) for b in parsed[features.L_KEY].numpy()])
    truth = _srgb(l_star, ab_true)
    prediction = _srgb(l_star, ab_pred)
    gray = np.repeat(color.l_to_gray(l_star), 3, axis=-1)
    per_image["psnr"].append(metrics.psnr(truth, prediction))
    per_image["ssim"].append(metrics.ssim(truth, prediction))
    per_image["no_colour_psnr"].append(metrics.psnr(truth, gray))
    per_image["no_colour_ssim"].append(metrics.ssim(truth, gray))
    per_image["colorfulness_prediction"].append(color.colorfulness(prediction))
    per_image["colorfulness_truth"].append(color.colorfulness(truth))
    grid.extend(zip(gray, prediction, truth, strict=True))
    del grid[grid_rows:]
  if not sums["values"]:
    raise ValueError("the test split is empty: nothing to evaluate")
  means = {k: float(np.mean(np.concatenate(v))) for k, v in per_image.items()}
  values = sums["values"]
  return Scores(
      test_images=int(values // np.prod(features.AB_SHAPE)),
      mse=sums["model"] / values,
      no_colour_mse=sums["no_colour"] / values,
      mean_ab_mse=sums["mean_ab"] / values,
      train_mean_ab=tuple(float(v) * features.AB_SCALE for v in mean_ab),
      **means,
  ), grid


def _srgb(l_star: np.ndarray, ab_model: np.ndarray) -> np.ndarray:
  """L* [B, H, W, 1] and ab at model scale [B, H*W*2] -> sRGB uint8 [B, H, W, 3]."""
  ab = ab_model.reshape(l_star.shape[:-1] + (2,)) * features.AB_SCALE
  return color.lab_to_rgb(np.concatenate([l_star, ab], axis=-1))
