"""The serving SavedModel: size, signatures, agreement with the Keras model, a clean-process
colorization of real historical photos at their own resolution, and the REST request body
TF Serving / Vertex AI map onto the default signature."""
import base64
import io
import json
import os
import struct
import subprocess
import sys

import image_files
import numpy as np
from PIL import Image
import pytest
from skimage import color as skcolor
import tensorflow as tf
import tf_serving_rest

from imaging import images
from schemas import features
from schemas import signatures
from trainer import export
from trainer import tf_color

pytest_plugins = ("trainer_fixtures",)

# L* of the colorized photo vs the input photo. The path keeps the input's own L (and
# desaturates colours that do not exist at that lightness instead of clipping them); only
# the uint8 rounding of the output RGB moves it.
L_MEAN_TOLERANCE = 0.3
L_P99_TOLERANCE = 1.0

# Runs in a fresh interpreter (-I: no user site, no PYTHONPATH, no cwd on sys.path) with
# this project's packages made unimportable: only TensorFlow may serve the model.
CLEAN_PROCESS_SCRIPT = """
import json, sys
import importlib.abc
class NoProject(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("trainer", "schemas", "pipelines", "components", "tensorflow_io"):
      raise ImportError("the SavedModel must not need " + name)
sys.meta_path.insert(0, NoProject())
import numpy as np
import tensorflow as tf
model_dir, out_dir, *photos = sys.argv[1:]
colorize = tf.saved_model.load(model_dir).signatures["colorize_image"]
for i, photo in enumerate(photos):
  out = colorize(image_bytes=tf.constant(open(photo, "rb").read()))
  np.save(f"{out_dir}/{i}.npy", out["colorized_rgb"].numpy())
  open(f"{out_dir}/{i}.jpg", "wb").write(out["colorized_jpeg"].numpy())
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("trainer", "schemas", "pipelines"))))
"""


@pytest.fixture(scope="module")
def loaded(serving_model):
  return tf.saved_model.load(str(serving_model[1]))


@pytest.fixture(scope="module")
def test_examples(coco128_examples):
  """4 serialized examples of the real test split."""
  return next(iter(features.records([f"{coco128_examples.uri}/Split-test/*"]).batch(4)))


def _l_star(rgb):
  return skcolor.rgb2lab(np.asarray(rgb, np.uint8))[..., 0]


def test_saved_model_holds_each_weight_once_and_no_optimizer_state(serving_model):
  model, path = serving_model
  assert model.optimizer.variables, "the fixture's model has Adam slots"
  saved = [(name, shape) for name, shape in tf.train.list_variables(str(path / "variables" / "variables"))
           if not name.startswith(("_CHECKPOINTABLE_OBJECT_GRAPH", f"{signatures.MAX_PIXELS}/"))]
  assert len(saved) == len(model.weights)
  assert sum(int(np.prod(shape)) for _, shape in saved) == model.count_params()
  size = sum(f.stat().st_size for f in (path / "variables").iterdir())
  assert size < model.count_params() * 4 * 1.01  # float32, once: ~250 MB


def test_signatures_and_their_keys(loaded):
  served = loaded.signatures
  assert set(served) == {signatures.REST_SIGNATURE, signatures.EXAMPLES_SIGNATURE, signatures.IMAGE_SIGNATURE,
                             signatures.L_SIGNATURE}
  # What TF Serving and Vertex AI's prebuilt containers call when a request names no signature.
  assert signatures.REST_SIGNATURE == tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
  rest = served[signatures.REST_SIGNATURE]
  assert rest.structured_input_signature[1][signatures.IMAGE_INPUT].shape.as_list() == [None]
  assert list(rest.structured_outputs) == [signatures.REST_OUTPUT]
  # TF Serving's REST API base64-maps string tensors named *_bytes.
  assert signatures.IMAGE_INPUT.endswith("_bytes") and signatures.REST_OUTPUT.endswith("_bytes")
  examples = served[signatures.EXAMPLES_SIGNATURE]
  assert set(examples.structured_input_signature[1]) == {signatures.EXAMPLES_INPUT}
  assert examples.structured_outputs[signatures.AB_OUTPUT].shape.as_list() == [None, 224, 224, 2]
  image = served[signatures.IMAGE_SIGNATURE]
  assert set(image.structured_input_signature[1]) == {signatures.IMAGE_INPUT}
  assert set(image.structured_outputs) == {signatures.JPEG_OUTPUT, signatures.RGB_OUTPUT}
  l_sig = served[signatures.L_SIGNATURE]
  assert l_sig.structured_input_signature[1][signatures.L_INPUT].shape.as_list() == [None, 224, 224, 1]
  assert set(l_sig.structured_outputs) == {signatures.AB_OUTPUT}


def test_examples_signature_equals_the_keras_model_on_real_test_examples(serving_model, loaded, test_examples):
  model, _ = serving_model
  parsed = features.parse_examples(test_examples)
  expected = np.asarray(model({features.L_KEY: parsed[features.L_KEY], features.GRAY_KEY: parsed[features.GRAY_KEY]},
                              training=False))
  assert np.abs(expected).max() > 0.05  # the tint: not a trivially zero output
  served = loaded.signatures[signatures.EXAMPLES_SIGNATURE](examples=test_examples)[signatures.AB_OUTPUT].numpy()
  np.testing.assert_allclose(served, expected, atol=1e-4)
  # Serving needs no target: examples without `ab` give the same prediction.
  stripped = []
  for serialized in test_examples.numpy():
    example = tf.train.Example.FromString(serialized)
    del example.features.feature[features.AB_KEY]
    stripped.append(example.SerializeToString())
  without_ab = loaded.signatures[signatures.EXAMPLES_SIGNATURE](examples=tf.constant(stripped))[signatures.AB_OUTPUT]
  np.testing.assert_allclose(without_ab.numpy(), served, atol=1e-6)


def test_l_signature_predicts_ab_from_l_alone(loaded, test_examples):
  parsed = features.parse_examples(test_examples)
  l = parsed[features.L_KEY]
  ab = loaded.signatures[signatures.L_SIGNATURE](l=l)[signatures.AB_OUTPUT].numpy()
  assert ab.shape == (4,) + features.AB_SHAPE and np.abs(ab).max() <= 1.0
  # Same as the examples signature up to the grey image, which it rebuilds from L at 224.
  from_examples = loaded.signatures[signatures.EXAMPLES_SIGNATURE](examples=test_examples)[signatures.AB_OUTPUT].numpy()
  np.testing.assert_allclose(ab, from_examples, atol=0.02)
  one = loaded.signatures[signatures.L_SIGNATURE](l=l[:1])[signatures.AB_OUTPUT].numpy()
  np.testing.assert_allclose(one, ab[:1], atol=1e-5)


def test_colorizes_real_photos_at_their_resolution_in_a_clean_process(serving_model, historical, coco128,
                                                                     tmp_path):
  photos = [historical / "Detroit_circa_1915.jpg", historical / "Audrey_Hepburn.jpg"]
  # Other encodings the signature takes: a greyscale PNG and an RGBA PNG (opaque).
  gray_png = tmp_path / "helen_keller_gray.png"
  Image.open(historical / "Helen_Keller_meeting_Charlie_Chaplin_in_1919.jpg").convert("L").save(gray_png)
  rgba_png = tmp_path / "coco_rgba.png"
  Image.open(sorted((coco128 / "train2017").glob("*.jpg"))[3]).convert("RGBA").save(rgba_png)
  photos += [gray_png, rgba_png]
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([sys.executable, "-I", "-c", CLEAN_PROCESS_SCRIPT, str(serving_model[1]), str(out_dir),
                           *map(str, photos)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.strip().splitlines()[-1]) == []

  for i, photo in enumerate(photos):
    source = np.asarray(Image.open(photo).convert("RGB"))
    colorized = np.load(out_dir / f"{i}.npy")
    assert colorized.shape == source.shape, photo.name
    error = np.abs(_l_star(colorized) - _l_star(source))
    assert error.mean() < L_MEAN_TOLERANCE, (photo.name, error.mean())
    assert np.percentile(error, 99) < L_P99_TOLERANCE, (photo.name, np.percentile(error, 99))
    # It is coloured (the tint), not the grey input back.
    chroma = np.hypot(*np.moveaxis(skcolor.rgb2lab(colorized)[..., 1:], -1, 0))
    assert np.median(chroma) > 5, photo.name
    jpeg = Image.open(io.BytesIO((out_dir / f"{i}.jpg").read_bytes()))
    assert jpeg.format == "JPEG" and jpeg.size == (source.shape[1], source.shape[0])
    # JPEG at quality 95 without chroma subsampling: close to the exact pixels, L within ~1.
    assert np.abs(np.asarray(jpeg, np.float32) - colorized).mean() < 3.0
    assert np.abs(_l_star(jpeg) - _l_star(source)).mean() < 1.0


def test_undecodable_bytes_are_an_error_not_a_crash(loaded, historical):
  with pytest.raises(tf.errors.InvalidArgumentError):
    loaded.signatures[signatures.IMAGE_SIGNATURE](image_bytes=tf.constant(b"not an image"))
  jpeg = (historical / "Detroit_circa_1915.jpg").read_bytes()
  with pytest.raises(tf.errors.InvalidArgumentError):
    loaded.signatures[signatures.IMAGE_SIGNATURE](image_bytes=tf.constant(jpeg[:len(jpeg) // 2]))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_an_image_over_the_export_limit_is_refused_from_its_header(loaded, historical, fmt):
  photo = Image.open(historical / "Detroit_circa_1915.jpg")
  data = image_files.claiming_size(image_files.encode(photo, fmt), 12000, 10000)
  message = r"image is 12000x10000 pixels \(120 megapixels\): over the limit of this model, 100 megapixels"
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded.signatures[signatures.IMAGE_SIGNATURE](image_bytes=tf.constant(data))
  assert loaded.max_pixels.numpy() == signatures.MAX_MEGAPIXELS * 1e6  # recorded in the SavedModel


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])  # JPEG and GIF headers cannot state a side this long
def test_an_image_with_a_side_over_jpegs_limit_is_refused_from_its_header(loaded, historical, fmt):
  # 7 megapixels, within the pixel limit; its width alone would make the a*b* upsampling huge.
  photo = Image.open(historical / "Detroit_circa_1915.jpg")
  data = image_files.claiming_size(image_files.encode(photo, fmt), 70000, 100)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="image is 70000x100 pixels: a side over 65535 pixels, the longest a JPEG can have"):
    loaded.signatures[signatures.IMAGE_SIGNATURE](image_bytes=tf.constant(data))


def test_l_signature_refuses_non_finite_input(loaded, test_examples):
  l = features.parse_examples(test_examples)[features.L_KEY][:1].numpy()
  for bad in (np.nan, np.inf, -np.inf):
    poisoned = l.copy()
    poisoned[0, 100, 7, 0] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
      loaded.signatures[signatures.L_SIGNATURE](l=tf.constant(poisoned))


def test_transparency_is_flattened_as_ingestion_flattens_it(loaded, coco128):
  photo = Image.open(coco128 / "train2017" / "000000000009.jpg")
  with_alpha = image_files.with_hidden_colour(photo)
  flattened = image_files.encode(images.decode(with_alpha), "PNG")  # what ingestion makes of it
  colorize = loaded.signatures[signatures.IMAGE_SIGNATURE]
  served = colorize(image_bytes=tf.constant(with_alpha))[signatures.RGB_OUTPUT].numpy()
  expected = colorize(image_bytes=tf.constant(flattened))[signatures.RGB_OUTPUT].numpy()
  np.testing.assert_array_equal(served, expected)
  third = served.shape[1] // 3
  assert (served[:, :third] == 255).all()  # white, not the red stored under the transparent pixels


def test_full_resolution_strips_equal_the_whole_frame_math(historical, monkeypatch):
  rgb8 = tf.constant(np.asarray(Image.open(historical / "Detroit_circa_1915.jpg").convert("RGB")))
  ab = tf.random.stateless_uniform(features.AB_SHAPE, seed=(1, 2), minval=-60.0, maxval=60.0)
  whole = tf_color.lab_to_rgb8_keep_lightness(
      tf.concat([tf_color.rgb8_to_l(rgb8), tf.image.resize(ab[tf.newaxis], tf.shape(rgb8)[:2])[0]], axis=-1))
  monkeypatch.setattr(export, "STRIP_PIXELS", 1000 * 37)  # 37 rows a strip: a short last strip too
  strips = tf.function(export._with_ab)(rgb8, ab)
  difference = np.abs(strips.numpy().astype(int) - whole.numpy())
  assert strips.shape == rgb8.shape and difference.max() <= 1 and difference.mean() < 1e-3


def _b64(data: bytes) -> dict:
  return {"b64": base64.b64encode(data).decode()}


def test_rest_request_colorizes_a_batch_of_real_photos_of_different_sizes(loaded, historical):
  names = ["Detroit_circa_1915.jpg", "Audrey_Hepburn.jpg", "Helen_Keller_meeting_Charlie_Chaplin_in_1919.jpg"]
  photos = [(historical / name).read_bytes() for name in names]
  # Exactly what a client sends over HTTP: JSON text, no signature name (the default).
  body = json.dumps({"instances": [_b64(photo) for photo in photos]})
  response = json.loads(json.dumps(tf_serving_rest.predict(loaded, json.loads(body))))
  assert list(response) == ["predictions"] and len(response["predictions"]) == len(photos)
  single = loaded.signatures[signatures.IMAGE_SIGNATURE]
  for name, photo, prediction in zip(names, photos, response["predictions"], strict=True):
    assert list(prediction) == ["b64"], name
    jpeg = base64.b64decode(prediction["b64"])
    assert Image.open(io.BytesIO(jpeg)).size == Image.open(io.BytesIO(photo)).size, name
    # The same photo as the one-photo signature makes, byte for byte.
    assert jpeg == single(image_bytes=tf.constant(photo))[signatures.JPEG_OUTPUT].numpy(), name
  # The named form of an instance means the same.
  named = tf_serving_rest.predict(loaded, {"instances": [{signatures.IMAGE_INPUT: _b64(photos[2])}]})
  assert named["predictions"] == response["predictions"][2:]


def test_rest_request_with_a_broken_photo_fails_whole_with_the_decoder_message(loaded, historical):
  good = (historical / "Detroit_circa_1915.jpg").read_bytes()
  with pytest.raises(tf_serving_rest.RestError, match="(?i)jpeg|image"):
    tf_serving_rest.predict(loaded, {"instances": [_b64(good), _b64(good[:len(good) // 2])]})


def test_tfma_calls_the_examples_signature_of_new_and_older_models(loaded, tmp_path):
  from tensorflow_model_analysis.utils import model_util

  from pipelines import config as config_lib
  from pipelines import evaluation
  spec = evaluation.eval_config(config_lib.EvalConfig()).model_specs[0]
  assert model_util.get_callable(loaded, spec.signature_name) is loaded.signatures[signatures.EXAMPLES_SIGNATURE]
  # A model exported before the REST signature: its examples signature is "serving_default".
  older = tf.Module()
  older.f = tf.function(lambda examples: {signatures.AB_OUTPUT: tf.zeros([tf.size(examples), 1])},
                        input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)])
  tf.saved_model.save(older, str(tmp_path / "older"), signatures={"serving_default": older.f})
  older_loaded = tf.saved_model.load(str(tmp_path / "older"))
  assert model_util.get_callable(older_loaded, spec.signature_name) is older_loaded.signatures["serving_default"]


def test_the_limit_holds_for_every_frame_a_gif_decodes_to(loaded, historical):
  """TF decodes every frame of a GIF, each at the first frame's size whatever the header's screen says:
  101 frames of 1000x1000 on a 1x1 screen (a 2 kB file) decode to 101 megapixels, over the 100 MP limit."""
  blank = b"\x02" + bytes([0xFE]) + b"\x84" * 254 + b"\x00"  # LZW sub-blocks, not a valid picture: never decoded
  frame = b"\x2c" + bytes(4) + struct.pack("<HH", 1000, 1000) + b"\x00" + blank
  gif = b"GIF89a" + struct.pack("<HH", 1, 1) + b"\x80\x00\x00" + b"\x00" * 3 + b"\xff" * 3 + frame * 101 + b"\x3b"
  assert Image.open(io.BytesIO(gif)).n_frames == 101
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"GIF of 101 frames of 1000x1000 pixels \(101 megapixels "
                                                           r"decoded in all\): over the limit of this model, 100"):
    loaded.signatures[signatures.IMAGE_SIGNATURE](image_bytes=tf.constant(gif))
  # What TF makes of such frames (a small one, decoded): the first frame's size, not the screen's.
  tiny = b"\x2c" + bytes(4) + struct.pack("<HH", 1, 1) + b"\x00" + b"\x02\x02\x44\x01\x00"
  screen = b"GIF89a" + struct.pack("<HH", 5, 4) + b"\x80\x00\x00" + b"\x00" * 3 + b"\xff" * 3
  assert tf.io.decode_gif(screen + tiny * 2 + b"\x3b").shape == (2, 1, 1, 3)
  # A real photo as a GIF of 2 frames is well within the limit, and colorized (its first frame).
  photo = Image.open(historical / "Detroit_circa_1915.jpg").convert("RGB").resize((64, 48))
  out = io.BytesIO()
  photo.save(out, format="GIF", save_all=True, append_images=[Image.new("RGB", photo.size, (0, 90, 200))])
  colorized = loaded.signatures[signatures.IMAGE_SIGNATURE](image_bytes=tf.constant(out.getvalue()))
  assert Image.open(io.BytesIO(colorized[signatures.JPEG_OUTPUT].numpy())).size == (64, 48)
