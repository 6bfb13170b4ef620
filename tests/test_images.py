"""imaging/images.py: decoding every kind of input, the resize policy and the black-and-white test."""
import io

import image_files
import numpy as np
from PIL import Image
import pytest

from imaging import color
from imaging import images
from imaging.images import SkipReason
from schemas import features

COCO_BLACK_AND_WHITE = {86, 328, 359, 542, 634}


@pytest.fixture(scope="module")
def photo_bytes(coco128) -> bytes:
  return (coco128 / "train2017" / "000000000009.jpg").read_bytes()


@pytest.fixture(scope="module")
def photo(photo_bytes) -> Image.Image:
  return Image.open(io.BytesIO(photo_bytes)).convert("RGB")


def _close(a, b, mean_tolerance):
  diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
  assert diff.mean() < mean_tolerance, diff.mean()


def test_every_real_photo_gives_model_arrays(coco128, historical):
  paths = sorted((coco128 / "train2017").glob("*.jpg")) + sorted(historical.iterdir())
  for path in paths:
    arrays = images.to_arrays(path.read_bytes())
    assert arrays.l.shape == features.L_SHAPE[:2] and arrays.ab.shape == features.AB_SHAPE, path.name
    assert arrays.gray.shape == features.GRAY_SHAPE[:2] and arrays.gray.dtype == np.uint8, path.name
    assert 0 <= arrays.l.min() and arrays.l.max() <= 100, path.name
    assert -128 <= arrays.ab.min() and arrays.ab.max() <= 127, path.name


def test_black_and_white_photos_are_exactly_cocos_five(coco128):
  found = {int(p.stem) for p in (coco128 / "train2017").glob("*.jpg")
           if images.to_arrays(p.read_bytes()).black_and_white}
  assert found == COCO_BLACK_AND_WHITE


def test_historical_photos_are_black_and_white_even_when_tinted(historical):
  for path in sorted(historical.iterdir()):
    assert images.to_arrays(path.read_bytes()).black_and_white, path.name


def test_black_and_white_threshold_on_synthetic_tints():
  sepia = np.stack([np.full((224, 224), 8.0), np.full((224, 224), 20.0)], axis=-1)  # strongly tinted, no colour
  assert images.coloured_share(sepia) == 0
  coloured = sepia.copy()
  coloured[:3, :] += 30.0  # 3 rows of 224: 1.3% of the pixels in a different colour
  assert images.coloured_share(coloured) > images.BW_MAX_COLOURED_SHARE


def test_centre_square_resize_policy(photo):
  small, large = images.square_resizes(photo)
  assert small.shape == (224, 224, 3) and large.shape == (299, 299, 3)
  w, h = photo.size
  s = min(w, h)
  left, top = (w - s) // 2, (h - s) // 2
  expected = photo.crop((left, top, left + s, top + s)).resize((224, 224), images.RESAMPLE)
  _close(small, expected, 1.0)


def test_draft_decoding_keeps_enough_pixels_for_the_299_crop(photo):
  big = photo.resize((2560, 1920), Image.BICUBIC)
  data = image_files.encode(big, "JPEG", quality=95)
  decoded = images.decode(data)
  assert 299 <= min(decoded.size) < 2 * 299  # DCT-scaled by 1/4 to 480 px: the smallest that covers 299
  full_small, _ = images.square_resizes(Image.open(io.BytesIO(data)).convert("RGB"))
  draft_small, _ = images.square_resizes(decoded)
  _close(draft_small, full_small, 2.0)


def test_exif_orientation_is_applied(photo):
  decoded = images.decode(image_files.rotated_with_exif(photo))
  assert decoded.size == photo.size
  _close(decoded, photo, 4.0)


def test_transparency_is_composited_on_white(photo):
  decoded = np.asarray(images.decode(image_files.rgba_half_transparent(photo)))
  half = photo.size[0] // 2
  assert (decoded[:, :half] == 255).all()
  np.testing.assert_array_equal(decoded[:, half:], np.asarray(photo)[:, half:])
  palette = images.decode(image_files.palette_with_transparency(photo))
  assert palette.mode == "RGB" and (np.asarray(palette) == 255).all(axis=-1).mean() > 0.05


def test_odd_modes_become_rgb(photo):
  grey = np.asarray(photo.convert("L"))
  cases = {
      "palette": (image_files.encode(photo.quantize(256), "PNG"), np.asarray(photo.quantize(256).convert("RGB")), 0.0),
      "greyscale": (image_files.encode(photo.convert("L"), "PNG"), grey[..., None].repeat(3, -1), 0.0),
      "1-bit": (image_files.encode(photo.convert("1"), "PNG"), np.asarray(photo.convert("1").convert("RGB")), 0.0),
      "16-bit grey": (image_files.gray16(photo), grey[..., None].repeat(3, -1), 0.0),
      "16-bit RGB": (image_files.rgb16(photo), np.asarray(photo), 0.0),
      "CMYK JPEG": (image_files.encode(photo.convert("CMYK"), "JPEG", quality=95), np.asarray(photo), 4.0),
      "GIF": (image_files.encode(photo.quantize(256), "GIF"), np.asarray(photo.quantize(256).convert("RGB")), 0.0),
      "WebP": (image_files.encode(photo, "WEBP", lossless=True), np.asarray(photo), 0.0),
  }
  for name, (data, expected, tolerance) in cases.items():
    decoded = images.decode(data)
    assert decoded.mode == "RGB" and decoded.size == photo.size, name
    if tolerance:
      _close(decoded, expected, tolerance)
    else:
      np.testing.assert_array_equal(np.asarray(decoded), expected, err_msg=name)


@pytest.mark.parametrize("make, reason", [
    (lambda jpg, photo: b"", SkipReason.NOT_AN_IMAGE),
    (lambda jpg, photo: b"colour,photo\n1,2\n", SkipReason.NOT_AN_IMAGE),
    (lambda jpg, photo: jpg[:len(jpg) // 2], SkipReason.TRUNCATED),
    (lambda jpg, photo: image_files.encode(photo, "PNG")[:50000], SkipReason.TRUNCATED),
    (lambda jpg, photo: image_files.corrupt_png(photo), SkipReason.CORRUPT),
    (lambda jpg, photo: image_files.encode(photo.resize((31, 200)), "PNG"), SkipReason.TOO_SMALL),
    (lambda jpg, photo: image_files.decompression_bomb(), SkipReason.TOO_LARGE),
    (lambda jpg, photo: image_files.float_tiff(photo), SkipReason.UNSUPPORTED_MODE),
], ids=["empty", "text", "truncated-jpeg", "truncated-png", "corrupt-png", "too-small", "bomb", "float-tiff"])
def test_bad_input_is_a_typed_skip(photo_bytes, photo, make, reason):
  with pytest.raises(images.Skip) as raised:
    images.to_arrays(make(photo_bytes, photo))
  assert raised.value.reason == reason
  assert raised.value.detail


def test_smallest_accepted_photo(photo):
  arrays = images.to_arrays(image_files.encode(photo.resize((32, 32)), "PNG"))
  assert arrays.l.shape == (224, 224)


def test_arrays_are_the_colour_math_of_the_resized_photo(photo_bytes):
  small, large = images.square_resizes(images.decode(photo_bytes))
  arrays = images.to_arrays(photo_bytes)
  lab = color.rgb_to_lab(small)
  np.testing.assert_array_equal(arrays.l, lab[..., 0])
  np.testing.assert_array_equal(arrays.ab, lab[..., 1:])
  np.testing.assert_array_equal(arrays.gray, color.rgb_to_gray(large))
