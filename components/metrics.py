"""How good a colorization is: pixelwise ab MSE for TFMA, its baselines, and picture metrics.

The tf_keras metrics below are what the Evaluator computes (registered in the EvalConfig
by class name and this module). TFMA's own 'MeanSquaredError' would resolve to its native
metric, which loops over every one of the 224x224x2 values in Python (0.7 s per example);
these reshape labels and predictions to [batch, values] and reduce in TensorFlow.

Labels come straight from the examples: the stored `ab` bytes (schemas/features.py). With a
schema they arrive as [batch, 1] strings, without one flat; already-decoded ab of any shape
works too. Sums are kept in float64: a test split holds 10^8 values.

The picture metrics (PSNR, SSIM; colorfulness is imaging/color.py's) work on sRGB uint8 images, ground-truth L
with predicted ab, as a person sees them.
"""
import numpy as np
import tensorflow as tf
import tf_keras

from schemas import features

AB_MSE = "ab_mse"
NO_COLOUR_MSE = "no_colour_mse"
GAIN_OVER_NO_COLOUR = "mse_gain_over_no_colour"


def ab_as_model_scale(y) -> tf.Tensor:
  """Labels or predictions -> float32 [batch, values] at model scale (ab / 128)."""
  y = tf.convert_to_tensor(y)
  if y.dtype == tf.string:
    y = features.ab_to_model(tf.io.decode_raw(tf.reshape(y, [-1]), tf.uint8))
  y = tf.cast(y, tf.float32)
  return tf.reshape(y, [tf.shape(y)[0], -1])


class _AbSumMetric(tf_keras.metrics.Metric):
  """Mean over every ab value of the test split of a per-value quantity `_values`."""

  def __init__(self, name, dtype=None):
    super().__init__(name=name, dtype=dtype)
    self.total = self.add_weight(name="total", initializer="zeros", dtype=tf.float64)
    self.count = self.add_weight(name="count", initializer="zeros", dtype=tf.float64)

  def _values(self, ab_true, ab_pred):
    raise NotImplementedError

  def update_state(self, y_true, y_pred, sample_weight=None):
    ab_true, ab_pred = ab_as_model_scale(y_true), ab_as_model_scale(y_pred)
    per_example = tf.reduce_sum(tf.cast(self._values(ab_true, ab_pred), tf.float64), axis=1)
    weight = tf.ones_like(per_example)
    if sample_weight is not None:
      weight = tf.broadcast_to(tf.reshape(tf.cast(sample_weight, tf.float64), [-1]), tf.shape(per_example))
    values_per_example = tf.cast(tf.shape(ab_true)[1], tf.float64)
    self.total.assign_add(tf.reduce_sum(per_example * weight))
    self.count.assign_add(tf.reduce_sum(weight) * values_per_example)

  def result(self):
    return tf.math.divide_no_nan(self.total, self.count)

  def reset_state(self):
    self.total.assign(0.0)
    self.count.assign(0.0)


class AbMse(_AbSumMetric):
  """The model's pixelwise MSE on ab in [-1, 1]: the number the user optimises."""

  def __init__(self, name=AB_MSE, dtype=None):
    super().__init__(name=name, dtype=dtype)

  def _values(self, ab_true, ab_pred):
    return tf.square(ab_true - ab_pred)


class NoColourMse(_AbSumMetric):
  """The MSE of predicting ab = 0 (a grey photo) on the same images; ignores the model."""

  def __init__(self, name=NO_COLOUR_MSE, dtype=None):
    super().__init__(name=name, dtype=dtype)

  def _values(self, ab_true, ab_pred):
    return tf.square(ab_true)


class MseGainOverNoColour(_AbSumMetric):
  """no-colour MSE - model MSE: positive when the model beats leaving the photo grey.

  One metric rather than two so a plain TFMA value threshold (lower bound) can bless on it.
  """

  def __init__(self, name=GAIN_OVER_NO_COLOUR, dtype=None):
    super().__init__(name=name, dtype=dtype)

  def _values(self, ab_true, ab_pred):
    return tf.square(ab_true) - tf.square(ab_true - ab_pred)


def mse(ab_true: np.ndarray, ab_pred) -> float:
  """Pixelwise MSE of ab arrays (model scale) broadcast against each other."""
  return float(np.mean(np.square(np.asarray(ab_true, np.float64) - np.asarray(ab_pred, np.float64))))


def psnr(rgb_true: np.ndarray, rgb_pred: np.ndarray) -> np.ndarray:
  """Per-image PSNR in dB of uint8 sRGB batches [B, H, W, 3] (range 255)."""
  return tf.image.psnr(tf.constant(rgb_true), tf.constant(rgb_pred), max_val=255).numpy()


def ssim(rgb_true: np.ndarray, rgb_pred: np.ndarray) -> np.ndarray:
  """Per-image SSIM of uint8 sRGB batches [B, H, W, 3]: 11x11 Gaussian window, sigma 1.5
  (Wang et al. 2004), averaged over channels.
  """
  return tf.image.ssim(tf.constant(rgb_true), tf.constant(rgb_pred), max_val=255).numpy()
