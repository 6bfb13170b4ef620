"""sRGB <-> CIELAB (D65, 2 degree observer) in numpy, fast enough for ingestion.

The constants are scikit-image's (`skimage.color.rgb2lab`): its sRGB->XYZ matrix, its
D65 white and its 0.008856 / 7.787 linear segment, so ingestion matches skimage
(tests/test_color.py pins |L|, |a|, |b| to within LAB_TOLERANCE of skimage on the real
photos; float32 arithmetic is the only difference). Serving's TensorFlow twin of these
functions imports the same constants, so training and serving see the same colour space.

Speed: uint8 inputs make the sRGB transfer a 256-entry table lookup, then X/Xn, Y/Yn, Z/Zn
are weighted sums of the three float32 channel planes and f(t) a cbrt; L* and a*b* come out
as separate contiguous arrays (rgb_to_l_ab), ready to encode: ~1 ms for a 224x224 photo,
~10x faster than skimage.
"""
from typing import Tuple

import numpy as np

# sRGB (linear) -> XYZ, and the D65 reference white, exactly as scikit-image has them.
SRGB_TO_XYZ = np.array([
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
])
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# CIELAB's linear segment near black, as skimage states it (CIE: (6/29)^3 and (29/6)^2/3).
LAB_EPSILON = 0.008856
LAB_SLOPE = 7.787
LAB_OFFSET = 16.0 / 116.0
# Bound on |rgb_to_lab - skimage.color.rgb2lab| in L*/a*/b* units; over all 2^24 sRGB
# colours the largest difference is 1.2e-4 (float32 rounding).
LAB_TOLERANCE = 1e-3

# Transparency: every transparent or half-transparent pixel is composited over this opaque
# background in 8-bit sRGB, exactly as PIL's paste does: round((c * alpha + 255 * (255 - alpha)) / 255).
# Ingestion (imaging/images.py) and the serving signature (trainer/tf_color.py's twin) use it.
ALPHA_BACKGROUND = 255

_F_EPSILON = np.cbrt(LAB_EPSILON)
_SRGB_LEVELS = np.arange(256) / 255.0


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
  """sRGB-encoded values in [0, 1] -> linear light in [0, 1] (the IEC 61966-2-1 curve)."""
  return np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
  """Linear light in [0, 1] -> sRGB-encoded values in [0, 1]."""
  v = np.clip(v, 0.0, 1.0)
  return np.where(v > 0.0031308, 1.055 * v ** (1 / 2.4) - 0.055, v * 12.92)


_LINEAR_LUT = srgb_to_linear(_SRGB_LEVELS).astype(np.float32)
# Rows pre-divided by the white point: X/Xn, Y/Yn, Z/Zn are each one weighted sum of R, G, B.
_XYZ_WHITE_WEIGHTS = (SRGB_TO_XYZ / D65_WHITE[:, None]).astype(np.float32)
# Grey needs only Y: per-channel tables of the weighted linear levels in units of
# 1/65535 (they sum to at most 65535, so uint16 holds Y) and a table from Y back to the
# sRGB grey level. Equals l_to_gray(L*) within one level (off by one next to rounding
# boundaries: 0.2% of all colours, about 1% of a photo's pixels).
_Y_SCALE = 65535
_Y_LUTS = np.rint(srgb_to_linear(_SRGB_LEVELS)[None, :] * SRGB_TO_XYZ[1][:, None] * _Y_SCALE).astype(np.uint16)
_GRAY_LUT = np.rint(linear_to_srgb(np.arange(_Y_SCALE + 3) / _Y_SCALE) * 255).astype(np.uint8)
# The tables of the full-resolution recombination (rgb8_to_l, lab_to_rgb8_keep_lightness), shared
# with the TF twin (trainer/tf_color.py): luminance steps of 1/Y_STEPS -> L* (within 0.02 of the
# exact value), and linear light in those steps -> uint8 sRGB (0.05 sRGB levels near black).
Y_STEPS = _Y_SCALE
Y_OF_LEVEL = _Y_LUTS.astype(np.int32)
L_OF_Y = (116.0 * np.cbrt(np.maximum(np.arange(Y_STEPS + 3) / Y_STEPS, LAB_EPSILON)) - 16.0).astype(np.float32)
L_OF_Y[:int(LAB_EPSILON * Y_STEPS) + 1] = (
    116.0 * (LAB_SLOPE * np.arange(int(LAB_EPSILON * Y_STEPS) + 1) / Y_STEPS + LAB_OFFSET) - 16.0)
SRGB8_OF_LINEAR = np.rint(linear_to_srgb(np.arange(Y_STEPS + 1) / Y_STEPS) * 255).astype(np.uint8)


def flatten_alpha(rgba: np.ndarray) -> np.ndarray:
  """[..., 4] uint8 sRGB + alpha -> [..., 3] uint8 sRGB over ALPHA_BACKGROUND (the one definition)."""
  rgb = rgba[..., :3].astype(np.uint32)
  alpha = rgba[..., 3:].astype(np.uint32)
  # Integer division rounds to nearest here: v / 255 is never exactly k + 1/2 (255 is odd).
  return ((rgb * alpha + ALPHA_BACKGROUND * (255 - alpha) + 127) // 255).astype(np.uint8)


def _f_inverse(f: np.ndarray) -> np.ndarray:
  return np.where(f > _F_EPSILON, f ** 3, (f - LAB_OFFSET) / LAB_SLOPE)


def _lab_f(t: np.ndarray) -> np.ndarray:
  """CIELAB's f(t): the cube root, and its linear segment near black."""
  f = np.cbrt(t)
  linear = t * LAB_SLOPE
  linear += LAB_OFFSET
  # Over the whole array, copied where it applies: a boolean-indexed gather and scatter cost more.
  np.copyto(f, linear, where=t <= LAB_EPSILON)
  return f


def rgb_to_l_ab(rgb: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """SRGB uint8 [..., 3] -> (L* [...], a*b* [..., 2]), float32, each contiguous (see rgb_to_lab).

  Channel planes throughout: sums of three gathered planes instead of a matmul with an inner size of 3,
  and no strided views of an interleaved Lab array when the L and ab features are encoded.
  """
  if rgb.dtype != np.uint8:
    raise TypeError(f"rgb_to_l_ab expects uint8 sRGB, got {rgb.dtype}")
  # mode="clip" skips numpy's bounds check: uint8 indices are always inside the 256 entries.
  r, g, b = (np.take(_LINEAR_LUT, rgb[..., c], mode="clip") for c in range(3))
  fx, fy, fz = (_lab_f(w[0] * r + w[1] * g + w[2] * b) for w in _XYZ_WHITE_WEIGHTS)
  l_star = fy * 116.0
  l_star -= 16.0
  ab = np.empty(rgb.shape[:-1] + (2,), np.float32)
  np.multiply(fx - fy, 500.0, out=ab[..., 0])
  np.multiply(fy - fz, 200.0, out=ab[..., 1])
  return l_star, ab


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
  """SRGB uint8 [..., 3] -> CIELAB float32 [..., 3]: L* in [0, 100], a*, b* roughly [-128, 127]."""
  l_star, ab = rgb_to_l_ab(rgb)
  return np.concatenate([l_star[..., None], ab], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
  """CIELAB [..., 3] -> sRGB uint8 [..., 3]; colours outside the sRGB gamut are clipped."""
  lab = np.asarray(lab, np.float64)
  fy = (lab[..., 0] + 16.0) / 116.0
  f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
  xyz = _f_inverse(f) * D65_WHITE
  rgb = linear_to_srgb(xyz @ XYZ_TO_SRGB.T)
  return np.rint(rgb * 255.0).astype(np.uint8)


def l_to_gray(l_star: np.ndarray) -> np.ndarray:
  """L* in [0, 100] -> the sRGB grey level (uint8) with that lightness (a* = b* = 0).

  A neutral colour under D65 has linear R = G = B = Y/Yn, so the grey level is the
  sRGB encoding of Y/Yn = f^-1((L* + 16) / 116).
  """
  y = _f_inverse((np.asarray(l_star, np.float64) + 16.0) / 116.0)
  return np.rint(linear_to_srgb(y) * 255.0).astype(np.uint8)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
  """SRGB uint8 [..., 3] -> sRGB grey uint8 [...] with the same L*: l_to_gray(rgb_to_lab(rgb)[..., 0]).

  Computed from Y alone with integer tables (no cube roots): this is the 299x299
  `gray` feature, the largest array ingestion makes.
  """
  if rgb.dtype != np.uint8:
    raise TypeError(f"rgb_to_gray expects uint8 sRGB, got {rgb.dtype}")
  r, g, b = np.moveaxis(rgb, -1, 0)
  # mode="clip" skips numpy's bounds check: every index is inside its table (the sum is at most _Y_SCALE).
  y = np.take(_Y_LUTS[0], r, mode="clip")
  y += np.take(_Y_LUTS[1], g, mode="clip")
  y += np.take(_Y_LUTS[2], b, mode="clip")
  return np.take(_GRAY_LUT, y, mode="clip")


def colorfulness(rgb: np.ndarray) -> np.ndarray:
  """Colorfulness of uint8 sRGB images [..., H, W, 3] (Hasler and Suesstrunk 2003), one value an image:
  sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = R - G, yb = (R + G) / 2 - B.
  0 for a grey image; around 30-60 for ordinary photos.
  """
  r, g, b = np.moveaxis(np.asarray(rgb, np.float64), -1, 0)
  rg = (r - g).reshape(r.shape[:-2] + (-1,))
  yb = (0.5 * (r + g) - b).reshape(r.shape[:-2] + (-1,))
  spread = np.sqrt(rg.var(axis=-1) + yb.var(axis=-1))
  mean = np.sqrt(rg.mean(axis=-1) ** 2 + yb.mean(axis=-1) ** 2)
  return spread + 0.3 * mean


def rgb8_to_l(rgb: np.ndarray) -> np.ndarray:
  """SRGB uint8 [..., 3] -> L* float32 [...] by table lookups (tf_color.rgb8_to_l's twin)."""
  y = np.take(Y_OF_LEVEL[0], rgb[..., 0], mode="clip")
  y += np.take(Y_OF_LEVEL[1], rgb[..., 1], mode="clip")
  y += np.take(Y_OF_LEVEL[2], rgb[..., 2], mode="clip")
  return np.take(L_OF_Y, y, mode="clip")


def lab_to_rgb8_keep_lightness(l_star: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
  """L*, a*, b* planes [...] -> uint8 sRGB written into `out` [..., 3]; an out-of-gamut colour is
  desaturated towards the grey of its luminance until it fits, so L* is kept
  (tf_color.lab_to_rgb8_keep_lightness's twin: the same float32 steps in the same order, here
  written in place to make fewer passes over memory).
  """
  f32 = np.float32
  fy = l_star + f32(16.0)
  fy *= f32(1.0 / 116.0)
  x = _f_inverse32(fy + a * f32(1.0 / 500.0))
  x *= f32(D65_WHITE[0])
  y = _f_inverse32(fy)
  z = b * f32(1.0 / 200.0)
  np.subtract(fy, z, out=z)
  np.maximum(z, f32(0.0), out=z)
  z = _f_inverse32(z)
  z *= f32(D65_WHITE[2])
  rgb = []
  for m in XYZ_TO_SRGB:  # m[0] x + m[1] y + m[2] z
    plane = x * f32(m[0])
    plane += y * f32(m[1])
    plane += z * f32(m[2])
    rgb.append(plane)
  high = np.maximum(rgb[0], rgb[1])
  np.maximum(high, rgb[2], out=high)
  high -= y
  low = np.minimum(rgb[0], rgb[1])
  np.minimum(low, rgb[2], out=low)
  np.subtract(y, low, out=low)
  # The largest mix weight keeping every channel in [0, 1]: min((1 - y) / high, y / low, 1).
  np.maximum(high, f32(1e-12), out=high)
  weight = f32(1.0) - y
  weight /= high
  np.maximum(low, f32(1e-12), out=low)
  np.divide(y, low, out=low)
  np.minimum(weight, low, out=weight)
  np.minimum(weight, f32(1.0), out=weight)
  for c, plane in enumerate(rgb):
    # In place, as y + weight * (plane - y) clipped to [0, 1], then the table index.
    np.subtract(plane, y, out=plane)
    np.multiply(plane, weight, out=plane)
    np.add(plane, y, out=plane)
    np.clip(plane, f32(0.0), f32(1.0), out=plane)
    np.multiply(plane, f32(Y_STEPS), out=plane)
    np.add(plane, f32(0.5), out=plane)
    out[..., c] = np.take(SRGB8_OF_LINEAR, plane.astype(np.int32), mode="clip")
  return out


def _f_inverse32(f: np.ndarray) -> np.ndarray:
  """f^3, or the linear segment where that is at most LAB_EPSILON (near black)."""
  cube = f * f
  cube *= f
  linear = f - np.float32(LAB_OFFSET)
  linear *= np.float32(1.0 / LAB_SLOPE)
  np.copyto(cube, linear, where=cube <= np.float32(LAB_EPSILON))
  return cube
