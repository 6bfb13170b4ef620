"""sRGB <-> CIELAB (D65) in TensorFlow ops, for the serving signatures and TensorBoard.

The TF twin of `components/color.py` (numpy, used by ingestion), built from its
constants; tests/test_tf_color.py pins both to each other and to `skimage.color` on real
photos. Pure TF ops, so a SavedModel holding them loads with plain TensorFlow.
Conventions: RGB float in [0, 1] (channels last), L* in [0, 100], a*b* unbounded
(about [-128, 127]).
"""
import tensorflow as tf

from components import color

_RGB_TO_XYZ = color.SRGB_TO_XYZ.tolist()
_XYZ_TO_RGB = color.XYZ_TO_SRGB.tolist()
_WHITE = color.D65_WHITE.tolist()
_EPSILON = color.LAB_EPSILON
_KAPPA = color.LAB_SLOPE
_OFFSET = color.LAB_OFFSET


def _linearize(srgb):
  return tf.where(srgb > 0.04045, tf.pow((tf.maximum(srgb, 0.04045) + 0.055) / 1.055, 2.4), srgb / 12.92)


def _gamma(linear):
  return tf.where(linear > 0.0031308,
                  1.055 * tf.pow(tf.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055, linear * 12.92)


def _f(t):
  return tf.where(t > _EPSILON, tf.pow(tf.maximum(t, _EPSILON), 1.0 / 3.0), _KAPPA * t + _OFFSET)


def _f_inverse(f):
  cube = tf.pow(f, 3.0)
  return tf.where(cube > _EPSILON, cube, (f - _OFFSET) / _KAPPA)


def rgb_to_lab(rgb):
  """[..., 3] sRGB in [0, 1] -> [..., 3] L*a*b*."""
  rgb = tf.convert_to_tensor(rgb, tf.float32)
  xyz = tf.tensordot(_linearize(rgb), tf.transpose(tf.constant(_RGB_TO_XYZ)), 1) / tf.constant(_WHITE)
  fx, fy, fz = tf.unstack(_f(xyz), axis=-1)
  return tf.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def rgb_to_l(rgb):
  """[..., 3] sRGB in [0, 1] -> [..., 1] L* (cheaper than the full conversion)."""
  rgb = tf.convert_to_tensor(rgb, tf.float32)
  y = tf.tensordot(_linearize(rgb), tf.constant(_RGB_TO_XYZ[1]), 1)
  return 116.0 * _f(y)[..., tf.newaxis] - 16.0


def _lab_to_linear(lab):
  """[..., 3] L*a*b* -> (linear sRGB [..., 3], unclipped; relative luminance Y [..., 1])."""
  lab = tf.convert_to_tensor(lab, tf.float32)
  l, a, b = tf.unstack(lab, axis=-1)
  fy = (l + 16.0) / 116.0
  # z < 0 is outside any real colour; skimage clips it the same way.
  f = tf.stack([fy + a / 500.0, fy, tf.maximum(fy - b / 200.0, 0.0)], axis=-1)
  xyz = _f_inverse(f) * tf.constant(_WHITE)
  return tf.tensordot(xyz, tf.transpose(tf.constant(_XYZ_TO_RGB)), 1), xyz[..., 1:2]


def lab_to_rgb(lab):
  """[..., 3] L*a*b* -> [..., 3] sRGB in [0, 1] (out-of-gamut colours clipped, as skimage)."""
  return tf.clip_by_value(_gamma(_lab_to_linear(lab)[0]), 0.0, 1.0)


def lab_to_rgb_keep_lightness(lab):
  """Like lab_to_rgb, but an out-of-gamut colour is desaturated towards the grey of the
  same luminance until it fits, instead of clipped per channel: L* is kept exactly.

  Mixing linear RGB with the grey (Y, Y, Y) keeps Y, because the luminance row of the
  sRGB matrix sums to 1; the mix weight is the largest that keeps every channel in [0, 1].
  """
  linear, y = _lab_to_linear(lab)
  away = linear - y
  room = tf.where(away > 0.0, (1.0 - y) / tf.maximum(away, 1e-12), tf.where(away < 0.0, y / tf.maximum(-away, 1e-12),
                                                                             1.0))
  weight = tf.clip_by_value(tf.reduce_min(room, axis=-1, keepdims=True), 0.0, 1.0)
  return tf.clip_by_value(_gamma(y + weight * away), 0.0, 1.0)


def l_to_gray(l):
  """[..., 1] L* -> [..., 1] the sRGB grey level in [0, 1] with that lightness (a* = b* = 0)."""
  l = tf.convert_to_tensor(l, tf.float32)
  return tf.clip_by_value(_gamma(_f_inverse((l + 16.0) / 116.0)), 0.0, 1.0)
