"""imaging/color.py against scikit-image, on the real photos and across the sRGB cube."""
import numpy as np
from PIL import Image
import pytest
from skimage import color as skcolor

from imaging import color
from imaging import images
from schemas import features


def _photos(coco128, historical):
  paths = sorted((coco128 / "train2017").glob("*.jpg"))[::8] + sorted(historical.iterdir())
  return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


@pytest.fixture(scope="module")
def real_photos(coco128, historical):
  return _photos(coco128, historical)


@pytest.fixture(scope="module")
def srgb_cube():
  levels = np.arange(0, 256, 5, dtype=np.uint8)  # 52^3 colours, both ends included
  return np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)


def test_rgb_to_lab_matches_skimage_on_real_photos(real_photos):
  assert len(real_photos) == 16 + 13
  for name, rgb in real_photos:
    np.testing.assert_allclose(color.rgb_to_lab(rgb), skcolor.rgb2lab(rgb), atol=color.LAB_TOLERANCE, rtol=0,
                               err_msg=name)


def test_rgb_to_lab_matches_skimage_across_srgb_cube(srgb_cube):
  lab = color.rgb_to_lab(srgb_cube)
  assert lab.dtype == np.float32
  np.testing.assert_allclose(lab, skcolor.rgb2lab(srgb_cube), atol=color.LAB_TOLERANCE, rtol=0)


def test_lab_to_rgb_inverts_rgb_to_lab(srgb_cube, real_photos):
  np.testing.assert_array_equal(color.lab_to_rgb(color.rgb_to_lab(srgb_cube)), srgb_cube)
  for name, rgb in real_photos[:4]:
    np.testing.assert_array_equal(color.lab_to_rgb(color.rgb_to_lab(rgb)), rgb, err_msg=name)


def test_lab_to_rgb_matches_skimage_and_clips_out_of_gamut():
  lab = np.array([[[50.0, 20.0, -30.0], [75.0, -40.0, 60.0], [50.0, 127.0, -128.0]]])
  expected = np.rint(np.clip(skcolor.lab2rgb(lab), 0, 1) * 255).astype(np.uint8)
  np.testing.assert_array_equal(color.lab_to_rgb(lab), expected)


def test_l_to_gray_is_the_grey_with_the_same_lightness():
  greys = np.arange(256, dtype=np.uint8)
  neutral = np.repeat(greys[:, None], 3, axis=1)
  l_star = skcolor.rgb2lab(neutral[None])[0, :, 0]
  np.testing.assert_array_equal(color.l_to_gray(l_star), greys)
  # skimage's rounded matrix and white leave greys at |a|, |b| < 0.005, not exactly 0.
  np.testing.assert_allclose(skcolor.rgb2lab(neutral[None])[0, :, 1:], 0, atol=0.01)
  assert color.l_to_gray(np.array([0.0, 100.0])).tolist() == [0, 255]


def test_rgb_to_gray_equals_l_to_gray_of_lab(real_photos, srgb_cube):
  for name, rgb in real_photos + [("cube", srgb_cube)]:
    fast = color.rgb_to_gray(rgb).astype(int)
    exact = color.l_to_gray(skcolor.rgb2lab(rgb)[..., 0]).astype(int)
    assert np.abs(fast - exact).max() <= 1, name
    assert np.mean(fast == exact) > 0.98, name  # off by one only next to rounding boundaries


def test_uint8_only():
  with pytest.raises(TypeError, match="uint8"):
    color.rgb_to_lab(np.zeros((2, 2, 3), np.float32))
  with pytest.raises(TypeError, match="uint8"):
    color.rgb_to_gray(np.zeros((2, 2, 3), np.int32))


def test_stored_encodings_round_trip_real_photo(coco128):
  arrays = images.to_arrays((coco128 / "train2017" / "000000000009.jpg").read_bytes())
  l_back = features.decode_l_numpy(features.encode_l(arrays.l))[..., 0]
  ab_back = features.decode_ab_numpy(features.encode_ab(arrays.ab))
  gray_back = features.decode_gray_numpy(features.encode_gray(arrays.gray))[..., 0]
  assert np.abs(l_back - arrays.l).max() <= 0.5 / features.L_BYTES_PER_UNIT + 1e-4
  assert np.abs(ab_back - arrays.ab).max() <= 0.5 + 1e-4
  np.testing.assert_array_equal(gray_back, arrays.gray)
