"""trainer/tf_color.py (serving's TF colour ops) pinned to imaging/color.py and skimage on real photos."""
import numpy as np
from PIL import Image
import pytest
from skimage import color as skcolor

from imaging import color
from trainer import tf_color

# float32 TF math against skimage's float64 (imaging/color.py's own bound is 1e-3).
LAB_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def real_photos(coco128, historical):
  paths = sorted((coco128 / "train2017").glob("*.jpg"))[::16] + sorted(historical.iterdir())[::3]
  return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def test_rgb_to_lab_matches_numpy_twin_and_skimage_on_real_photos(real_photos):
  assert len(real_photos) == 8 + 5
  for name, rgb in real_photos:
    lab = tf_color.rgb_to_lab(rgb / 255.0).numpy()
    np.testing.assert_allclose(lab, skcolor.rgb2lab(rgb), atol=LAB_TOLERANCE, rtol=0, err_msg=name)
    np.testing.assert_allclose(lab, color.rgb_to_lab(rgb), atol=LAB_TOLERANCE, rtol=0, err_msg=name)
    np.testing.assert_allclose(tf_color.rgb_to_l(rgb / 255.0).numpy()[..., 0], lab[..., 0], atol=LAB_TOLERANCE,
                               err_msg=name)


def test_lab_to_rgb_matches_numpy_twin_and_skimage_on_real_photos(real_photos):
  for name, rgb in real_photos:
    lab = skcolor.rgb2lab(rgb)
    back = tf_color.lab_to_rgb(lab).numpy()
    np.testing.assert_allclose(back, skcolor.lab2rgb(lab), atol=1e-4, err_msg=name)
    # The numpy twin rounds to uint8; the TF ops give the unrounded value.
    assert np.abs(back * 255.0 - color.lab_to_rgb(lab)).max() <= 0.5 + 1e-3, name
    np.testing.assert_array_equal(np.rint(back * 255.0).astype(np.uint8), rgb, err_msg=name)


def test_lab_to_rgb_clips_out_of_gamut_like_skimage():
  lab = np.array([[[50.0, 20.0, -30.0], [75.0, -40.0, 60.0], [50.0, 127.0, -128.0], [20.0, 0.0, 127.0]]])
  with pytest.warns(UserWarning, match="negative Z values"):  # the last colour has z < 0
    expected = np.clip(skcolor.lab2rgb(lab), 0, 1)
  np.testing.assert_allclose(tf_color.lab_to_rgb(lab).numpy(), expected, atol=1e-4)


def test_l_to_gray_matches_numpy_twin_on_every_level():
  l_star = np.linspace(0.0, 100.0, 1001)
  gray = tf_color.l_to_gray(l_star[:, None]).numpy()[:, 0]
  np.testing.assert_array_equal(np.rint(gray * 255.0).astype(np.uint8), color.l_to_gray(l_star))
  # The grey really has that lightness.
  np.testing.assert_allclose(skcolor.rgb2lab(np.repeat(gray[None, :, None], 3, axis=-1))[0, :, 0], l_star, atol=1e-3)


def test_keep_lightness_equals_plain_conversion_in_gamut(real_photos):
  for name, rgb in real_photos[:4]:
    lab = skcolor.rgb2lab(rgb)
    np.testing.assert_allclose(tf_color.lab_to_rgb_keep_lightness(lab).numpy(), tf_color.lab_to_rgb(lab).numpy(),
                               atol=1e-4, err_msg=name)


def test_keep_lightness_desaturates_out_of_gamut_colours_at_the_same_l():
  l, a, b = np.meshgrid(np.linspace(2, 98, 25), np.linspace(-120, 120, 13), np.linspace(-120, 120, 13), indexing="ij")
  lab = np.stack([l, a, b], axis=-1).reshape(-1, 3)
  kept = tf_color.lab_to_rgb_keep_lightness(lab).numpy()
  assert kept.min() >= 0 and kept.max() <= 1
  out = skcolor.rgb2lab(kept[None])[0]
  np.testing.assert_allclose(out[:, 0], lab[:, 0], atol=1e-3)
  clipped_l = skcolor.rgb2lab(tf_color.lab_to_rgb(lab).numpy()[None])[0, :, 0]
  assert np.abs(clipped_l - lab[:, 0]).max() > 10  # what per-channel clipping does instead
  # Towards grey, not elsewhere: chroma shrinks and the hue keeps its quadrant.
  assert (np.hypot(out[:, 1], out[:, 2]) <= np.hypot(lab[:, 1], lab[:, 2]) + 1e-3).all()
  strong = (np.hypot(out[:, 1], out[:, 2]) > 5)[:, None] & (np.abs(lab[:, 1:]) >= 20)
  assert (np.sign(out[:, 1:]) == np.sign(lab[:, 1:]))[strong].mean() > 0.95


def test_uint8_table_paths_match_the_exact_ones(real_photos):
  for name, rgb in real_photos[:6]:
    l_exact = tf_color.rgb_to_l(rgb / 255.0).numpy()
    np.testing.assert_allclose(tf_color.rgb8_to_l(rgb).numpy(), l_exact, atol=0.03, err_msg=name)
    np.testing.assert_allclose(tf_color.rgb8_to_l(rgb).numpy()[..., 0], color.rgb_to_lab(rgb)[..., 0], atol=0.03,
                               err_msg=name)
    lab = skcolor.rgb2lab(rgb) * np.array([1.0, 1.5, 1.5])  # more saturated: some out of gamut
    exact = tf_color.lab_to_rgb_keep_lightness(lab).numpy() * 255.0
    fast = tf_color.lab_to_rgb8_keep_lightness(lab).numpy()
    assert fast.dtype == np.uint8 and fast.shape == rgb.shape
    assert np.abs(fast - exact).max() <= 0.5 + 0.1, name
  # Black and white ends.
  assert tf_color.rgb8_to_l(np.array([[0, 0, 0], [255, 255, 255]], np.uint8)).numpy()[:, 0].tolist() == \
      pytest.approx([0.0, 100.0], abs=0.02)


def test_alpha_is_flattened_as_pil_composites_it_by_both_twins(real_photos):
  # One definition (imaging/color.py); ingestion used PIL's paste on white before, so it must equal that.
  for name, rgb in real_photos[:4]:
    alpha = (np.arange(rgb.shape[0] * rgb.shape[1]) % 256).astype(np.uint8).reshape(rgb.shape[:2])
    rgba = np.dstack([rgb, alpha])
    pasted = Image.new("RGB", rgb.shape[1::-1], (255, 255, 255))
    pasted.paste(Image.fromarray(rgba, "RGBA"), mask=Image.fromarray(alpha, "L"))
    np.testing.assert_array_equal(color.flatten_alpha(rgba), np.asarray(pasted), err_msg=name)
    np.testing.assert_array_equal(tf_color.flatten_alpha8(rgba).numpy(), np.asarray(pasted), err_msg=name)


def test_numpy_recombination_twin_gives_the_same_bytes_as_the_tf_one(real_photos):
  # serving/colorizer.py recombines on the host with the numpy twin; the image signature with the TF one.
  for name, rgb in real_photos[:6]:
    np.testing.assert_array_equal(color.rgb8_to_l(rgb), tf_color.rgb8_to_l(rgb).numpy()[..., 0], err_msg=name)
    lab = (color.rgb_to_lab(rgb) * np.array([1.0, 1.5, 1.5])).astype(np.float32)  # some out of gamut
    out = np.empty(rgb.shape, np.uint8)
    color.lab_to_rgb8_keep_lightness(lab[..., 0], lab[..., 1], lab[..., 2], out)
    np.testing.assert_array_equal(out, tf_color.lab_to_rgb8_keep_lightness(lab).numpy(), err_msg=name)


def test_host_upsampling_and_recombination_give_the_signatures_bytes(real_photos, monkeypatch):
  # serving/colorizer.py's strips (host) against trainer/export.py's (the image signature), whole photos:
  # the same ab upsampling and colour math, whatever the strip sizes (a short last strip on each side).
  import tensorflow as tf

  from serving import colorizer
  from trainer import export
  monkeypatch.setattr(colorizer, "STRIP_PIXELS", 1000 * 23)
  monkeypatch.setattr(export, "STRIP_PIXELS", 1000 * 37)
  signature_with_ab = tf.function(export._with_ab)
  for i, (name, rgb) in enumerate(real_photos):
    ab = np.random.default_rng(i).uniform(-90, 90, (224, 224, 2)).astype(np.float32)  # some out of gamut
    host = rgb.copy()
    colorizer._with_ab(host, ab)
    np.testing.assert_array_equal(host, signature_with_ab(tf.constant(rgb), tf.constant(ab)).numpy(), err_msg=name)
