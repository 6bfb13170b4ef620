"""sRGB <-> CIELAB (D65) in TensorFlow ops, for the serving signatures and TensorBoard.

The TF twin of `imaging/color.py` (numpy, used by ingestion), built from its
constants; tests/test_tf_color.py pins both to each other and to `skimage.color` on real
photos. Pure TF ops, so a SavedModel holding them loads with plain TensorFlow.
Conventions: RGB float in [0, 1] (channels last), L* in [0, 100], a*b* unbounded
(about [-128, 127]). The `rgb8` functions take or give uint8 sRGB through lookup
tables instead of powers: ~4x faster on a full-resolution photo.
"""
import tensorflow as tf

from imaging import color

_RGB_TO_XYZ = color.SRGB_TO_XYZ.tolist()
_XYZ_TO_RGB = color.XYZ_TO_SRGB.tolist()
_WHITE = color.D65_WHITE.tolist()
_EPSILON = color.LAB_EPSILON
_KAPPA = color.LAB_SLOPE
_OFFSET = color.LAB_OFFSET
# The uint8 tables (imaging/color.py holds them for both twins).
_Y_STEPS = color.Y_STEPS
_Y_OF_LEVEL = color.Y_OF_LEVEL
_L_OF_Y = color.L_OF_Y
_SRGB8_OF_LINEAR = color.SRGB8_OF_LINEAR


def _linearize(srgb):
  return tf.where(srgb > 0.04045, tf.pow((tf.maximum(srgb, 0.04045) + 0.055) / 1.055, 2.4), srgb / 12.92)


def _gamma(linear):
  return tf.where(linear > 0.0031308,
                  1.055 * tf.pow(tf.maximum(linear, 0.0031308), 1.0 / 2.4) - 0.055, linear * 12.92)


def _f(t):
  return tf.where(t > _EPSILON, tf.pow(tf.maximum(t, _EPSILON), 1.0 / 3.0), _KAPPA * t + _OFFSET)


def _f_inverse(f):
  cube = f * f * f
  return tf.where(cube > _EPSILON, cube, (f - _OFFSET) * (1.0 / _KAPPA))


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


def rgb8_to_l(rgb8):
  """[..., 3] uint8 sRGB -> [..., 1] L* (table lookups: no powers)."""
  rgb8 = tf.cast(rgb8, tf.int32)
  y = sum(tf.gather(tf.constant(_Y_OF_LEVEL[c]), rgb8[..., c]) for c in range(3))
  return tf.gather(tf.constant(_L_OF_Y), y)[..., tf.newaxis]


def lab_to_rgb_keep_lightness(lab):
  """Like lab_to_rgb, but an out-of-gamut colour is desaturated towards the grey of the
  same luminance until it fits, instead of clipped per channel: L* is kept exactly.

  Mixing linear RGB with the grey (Y, Y, Y) keeps Y, because the luminance row of the
  sRGB matrix sums to 1; the mix weight is the largest that keeps every channel in [0, 1].
  """
  return tf.clip_by_value(_gamma(tf.stack(_fit_gamut(lab), axis=-1)), 0.0, 1.0)


def lab_to_rgb8_keep_lightness(lab):
  """lab_to_rgb_keep_lightness as uint8 sRGB (a table lookup instead of the gamma power)."""
  table = tf.constant(_SRGB8_OF_LINEAR)
  return tf.stack([tf.gather(table, tf.cast(tf.clip_by_value(c, 0.0, 1.0) * _Y_STEPS + 0.5, tf.int32))
                   for c in _fit_gamut(lab)], axis=-1)


def _fit_gamut(lab):
  """[..., 3] L*a*b* -> linear (r, g, b) planes, desaturated into [0, 1] at constant Y.

  Plane by plane: on a full-resolution photo this is ~3x faster than [..., 3] tensors
  (no strided channel ops, no reductions over a size-3 axis).
  """
  lab = tf.convert_to_tensor(lab, tf.float32)
  # Multiplied by reciprocals, never divided by a constant: in a tf.function TensorFlow rewrites
  # x / c as x * (1 / c), which rounds differently (1 ulp) from eager TF and from the numpy twin.
  fy = (lab[..., 0] + 16.0) * (1.0 / 116.0)
  x = _f_inverse(fy + lab[..., 1] * (1.0 / 500.0)) * _WHITE[0]
  y = _f_inverse(fy)
  z = _f_inverse(tf.maximum(fy - lab[..., 2] * (1.0 / 200.0), 0.0)) * _WHITE[2]
  rgb = [m[0] * x + m[1] * y + m[2] * z for m in _XYZ_TO_RGB]
  high = tf.maximum(tf.maximum(rgb[0], rgb[1]), rgb[2]) - y
  low = y - tf.minimum(tf.minimum(rgb[0], rgb[1]), rgb[2])
  weight = tf.minimum(tf.minimum((1.0 - y) / tf.maximum(high, 1e-12), y / tf.maximum(low, 1e-12)), 1.0)
  return [y + weight * (c - y) for c in rgb]


def l_to_gray(l):
  """[..., 1] L* -> [..., 1] the sRGB grey level in [0, 1] with that lightness (a* = b* = 0)."""
  l = tf.convert_to_tensor(l, tf.float32)
  return tf.clip_by_value(_gamma(_f_inverse((l + 16.0) / 116.0)), 0.0, 1.0)


def flatten_alpha8(rgba8):
  """[..., 4] uint8 sRGB + alpha -> [..., 3] uint8 over the background: color.flatten_alpha's twin."""
  rgba = tf.cast(rgba8, tf.int32)
  alpha = rgba[..., 3:]
  return tf.cast((rgba[..., :3] * alpha + color.ALPHA_BACKGROUND * (255 - alpha) + 127) // 255, tf.uint8)
