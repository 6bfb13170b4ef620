"""The serving SavedModel: a fresh uncompiled copy of the trained model behind four signatures.

Keras 3 pitfalls measured with this model: `model.save(dir, save_format="tf")` fails,
`model.export()` stores every weight twice (438 MB), and `tf.saved_model.save` of the
compiled training model also stores the Adam slots. So the weights are copied into a
freshly built, uncompiled float32 model and that is saved with `tf.saved_model.save`.
Everything inside is plain TensorFlow (including the Lab colour math of `tf_color`):
the SavedModel loads and runs with TensorFlow alone, without this project or Keras.

Signatures: names, inputs and outputs are defined in schemas/signatures.py.
"""
from absl import logging
import keras
import tensorflow as tf

from schemas import features
from schemas import signatures
from trainer import model as model_lib
from trainer import strategy as strategy_lib
from trainer import tf_color

JPEG_QUALITY = 95


def export(model: keras.Model, export_dir: str) -> None:
  """Saves a serving copy of `model` (trained, possibly compiled and mixed precision)."""
  with strategy_lib.dtype_policy_scope("float32"):
    serving = model_lib.build_model(weights="none")
  serving.set_weights(model.get_weights())
  colorizer = _Colorizer(serving)
  # TF logs every captured Keras variable's placeholder name (thousands) at INFO while saving.
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    tf.saved_model.save(colorizer, export_dir, signatures={
        signatures.REST_SIGNATURE: colorizer.colorize_images,
        signatures.EXAMPLES_SIGNATURE: colorizer.predict_examples,
        signatures.IMAGE_SIGNATURE: colorizer.colorize_image,
        signatures.L_SIGNATURE: colorizer.predict_ab,
    })
  finally:
    logging.set_verbosity(verbosity)


class _Colorizer(tf.Module):
  """Holds the network's variables and one traced copy of its forward pass.

  The Keras model itself stays out of the saved object graph: walking its ~800 layers
  for tf.functions to save takes minutes and adds nothing the signatures use.
  """

  def __init__(self, model: keras.Model):
    super().__init__()
    self.network_variables = list(model.variables)
    self._predict = tf.function(
        lambda l, gray: model({features.L_KEY: l, features.GRAY_KEY: gray}, training=False),
        input_signature=[tf.TensorSpec((None,) + features.L_SHAPE, tf.float32),
                         tf.TensorSpec((None,) + features.GRAY_SHAPE, tf.float32)])

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.EXAMPLES_INPUT)])
  def predict_examples(self, examples):
    spec = features.feature_spec()
    parsed = tf.io.parse_example(examples, {k: spec[k] for k in (features.L_KEY, features.GRAY_KEY)})
    l = tf.reshape(tf.io.decode_raw(parsed[features.L_KEY], tf.uint8), (-1,) + features.L_SHAPE)
    gray = tf.reshape(tf.io.decode_raw(parsed[features.GRAY_KEY], tf.uint8), (-1,) + features.GRAY_SHAPE)
    return {signatures.AB_OUTPUT: self._predict(features.l_to_model(l), features.gray_to_model(gray))}

  @tf.function(input_signature=[tf.TensorSpec([None] + list(features.L_SHAPE), tf.float32, name=signatures.L_INPUT)])
  def predict_ab(self, l):
    l_star = (l + 1.0) * 50.0
    return {signatures.AB_OUTPUT: self._predict(l, _gray_from_l(l_star))}

  @tf.function(input_signature=[tf.TensorSpec([], tf.string, name=signatures.IMAGE_INPUT)])
  def colorize_image(self, image_bytes):
    rgb_out = self._colorize(image_bytes)
    return {signatures.JPEG_OUTPUT: _encode_jpeg(rgb_out), signatures.RGB_OUTPUT: rgb_out}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=signatures.IMAGE_INPUT)])
  def colorize_images(self, image_bytes):
    jpegs = tf.map_fn(lambda one: _encode_jpeg(self._colorize(one)), image_bytes,
                      fn_output_signature=tf.TensorSpec([], tf.string), parallel_iterations=1)
    return {signatures.REST_OUTPUT: jpegs}

  def _colorize(self, image_bytes):
    """One encoded photo -> uint8 [H, W, 3], the colorized photo at its own resolution."""
    rgb8 = _decode(image_bytes)
    # The network's inputs are made as ingestion makes them (antialiased bilinear resize of
    # uint8 sRGB, then L and grey), except that the whole frame is used: nothing is cropped.
    l_small = tf_color.rgb8_to_l(_resize8(rgb8, features.IMAGE_SIZE))
    gray = tf_color.l_to_gray(tf_color.rgb8_to_l(_resize8(rgb8, features.GLOBAL_SIZE)))
    ab = self._predict(features.l_to_model(l_small * features.L_BYTES_PER_UNIT),
                       features.gray_to_model(gray * 255.0)) * features.AB_SCALE
    ab_full = tf.image.resize(ab, tf.shape(rgb8)[:2])[0]
    return tf_color.lab_to_rgb8_keep_lightness(tf.concat([tf_color.rgb8_to_l(rgb8), ab_full], axis=-1))


def _encode_jpeg(rgb8):
  return tf.io.encode_jpeg(rgb8, quality=JPEG_QUALITY, chroma_downsampling=False)


def _resize8(rgb8, size):
  resized = tf.image.resize(rgb8[tf.newaxis], [size, size], antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _decode(image_bytes):
  """-> uint8 [H, W, 3]. JPEG with the accurate IDCT, as PIL and libjpeg decode it by
  default (TF's default fast IDCT is off by ~1 level per pixel, which would move L).
  """
  return tf.cond(
      tf.io.is_jpeg(image_bytes),
      lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False))


def _gray_from_l(l_star):
  """[B, 224, 224, 1] L* -> the model-scale 299x299 grey image with that lightness."""
  l_global = tf.image.resize(l_star, [features.GLOBAL_SIZE] * 2)
  return features.gray_to_model(tf_color.l_to_gray(l_global) * 255.0)
