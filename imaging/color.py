"""sRGB <-> CIELAB (D65, 2 degree observer) in numpy, fast enough for ingestion.

The constants are scikit-image's (`skimage.color.rgb2lab`): its sRGB->XYZ matrix, its
D65 white and its 0.008856 / 7.787 linear segment, so ingestion matches skimage
(tests/test_color.py pins |L|, |a|, |b| to within LAB_TOLERANCE of skimage on the real
photos; float32 arithmetic is the only difference). Serving's TensorFlow twin of these
functions imports the same constants, so training and serving see the same colour space.

Speed: uint8 inputs make the sRGB transfer a 256-entry table lookup, the matrix is a
float32 matmul and f(t) a cbrt: ~0.6 ms for a 224x224 photo, ~10x faster than skimage.
"""
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
# Rows pre-divided by the white point, so one matmul gives X/Xn, Y/Yn, Z/Zn.
_RGB_TO_XYZ_WHITE = (SRGB_TO_XYZ / D65_WHITE[:, None]).T.astype(np.float32)
# Grey needs only Y: per-channel tables of the weighted linear levels in units of
# 1/65535 (they sum to at most 65535, so uint16 holds Y) and a table from Y back to the
# sRGB grey level. Equals l_to_gray(L*) within one level (off by one next to rounding
# boundaries: 0.2% of all colours, about 1% of a photo's pixels).
_Y_SCALE = 65535
_Y_LUTS = np.rint(srgb_to_linear(_SRGB_LEVELS)[None, :] * SRGB_TO_XYZ[1][:, None] * _Y_SCALE).astype(np.uint16)
_GRAY_LUT = np.rint(linear_to_srgb(np.arange(_Y_SCALE + 3) / _Y_SCALE) * 255).astype(np.uint8)


def _f_inverse(f: np.ndarray) -> np.ndarray:
  return np.where(f > _F_EPSILON, f ** 3, (f - LAB_OFFSET) / LAB_SLOPE)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
  """SRGB uint8 [..., 3] -> CIELAB float32 [..., 3]: L* in [0, 100], a*, b* roughly [-128, 127]."""
  if rgb.dtype != np.uint8:
    raise TypeError(f"rgb_to_lab expects uint8 sRGB, got {rgb.dtype}")
  xyz = np.take(_LINEAR_LUT, rgb) @ _RGB_TO_XYZ_WHITE
  f = np.cbrt(xyz)
  # The linear segment over the whole array, copied where it applies: a boolean-indexed
  # gather and scatter cost ~1 ms more per 224x224 photo.
  np.copyto(f, LAB_SLOPE * xyz + LAB_OFFSET, where=xyz <= LAB_EPSILON)
  lab = np.empty_like(f)
  lab[..., 0] = 116.0 * f[..., 1] - 16.0
  lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
  lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
  return lab


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
  y = np.take(_Y_LUTS[0], r)
  y += np.take(_Y_LUTS[1], g)
  y += np.take(_Y_LUTS[2], b)
  return np.take(_GRAY_LUT, y)
