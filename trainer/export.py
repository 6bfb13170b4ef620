"""The serving SavedModel: a fresh uncompiled copy of the trained model behind four signatures.

Keras 3 pitfalls measured with this model: `model.save(dir, save_format="tf")` fails,
`model.export()` stores every weight twice (438 MB), and `tf.saved_model.save` of the
compiled training model also stores the Adam slots. So the weights are copied into a
freshly built, uncompiled float32 model and that is saved with `tf.saved_model.save`.
Everything inside is plain TensorFlow (including the Lab colour math of `tf_color`):
the SavedModel loads and runs with TensorFlow alone, without this project or Keras.

Signatures: names, inputs and outputs are defined in schemas/signatures.py.
"""
from typing import Optional

from absl import logging
import keras
import tensorflow as tf

from schemas import features
from schemas import signatures
from trainer import model as model_lib
from trainer import strategy as strategy_lib
from trainer import tf_color

JPEG_QUALITY = 95
# Pixels per strip of the full-resolution colour math (~40 bytes of temporaries each).
STRIP_PIXELS = 1 << 20


def export(model: keras.Model, export_dir: str, embedder: Optional[keras.Model] = None,
           max_megapixels: float = signatures.MAX_MEGAPIXELS) -> None:
  """Saves a serving copy of `model` (trained, possibly compiled and mixed precision).

  `model` is the fusion model, or the colorizer head trained on precomputed embeddings
  together with the `embedder` that made them: either way the SavedModel holds the
  whole network, Inception-ResNet-v2 included. `max_megapixels` bounds the photos the
  image signatures take (their memory grows with the pixel count); it is stored in the
  SavedModel as the variable `max_pixels`.
  """
  if not 0 < max_megapixels < 1e6:
    raise ValueError(f"max_megapixels must be in (0, 1e6), got {max_megapixels}")
  with strategy_lib.dtype_policy_scope("float32"):
    serving = model_lib.build_model(weights="none")
  model_lib.copy_weights([model] if embedder is None else [embedder, model], serving)
  colorizer = _Colorizer(serving, int(max_megapixels * 1e6))
  # TF logs every captured Keras variable's placeholder name (thousands) at INFO while saving.
  # The logger's own level is restored (a local run listens at INFO: pipelines/progress.py), not
  # get_verbosity()'s, which is that of absl's flags.
  absl_logger = logging.get_absl_logger()
  level = absl_logger.level
  absl_logger.setLevel(logging.converter.STANDARD_WARNING)
  try:
    tf.saved_model.save(colorizer, export_dir, signatures={
        signatures.REST_SIGNATURE: colorizer.colorize_images,
        signatures.EXAMPLES_SIGNATURE: colorizer.predict_examples,
        signatures.IMAGE_SIGNATURE: colorizer.colorize_image,
        signatures.L_SIGNATURE: colorizer.predict_ab,
    })
  finally:
    absl_logger.setLevel(level)


class _Colorizer(tf.Module):
  """Holds the network's variables and one traced copy of its forward pass.

  The Keras model itself stays out of the saved object graph: walking its ~800 layers
  for tf.functions to save takes minutes and adds nothing the signatures use.
  """

  def __init__(self, model: keras.Model, max_pixels: int):
    super().__init__()
    self.network_variables = list(model.variables)
    self.max_pixels = tf.Variable(max_pixels, dtype=tf.int64, trainable=False, name=signatures.MAX_PIXELS)
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
    l = tf.debugging.check_numerics(l, f"{signatures.L_INPUT!r} holds NaN or Inf")
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
    rgb8 = _decode(image_bytes, self.max_pixels)
    # The network's inputs are made as ingestion makes them (antialiased bilinear resize of
    # uint8 sRGB, then L and grey), except that the whole frame is used: nothing is cropped.
    small = _resize8(rgb8, features.IMAGE_SIZE)
    with tf.control_dependencies([small]):  # one full-resolution float copy at a time, not two
      large = _resize8(rgb8, features.GLOBAL_SIZE)
    l_small = tf_color.rgb8_to_l(small)
    gray = tf_color.l_to_gray(tf_color.rgb8_to_l(large))
    ab = self._predict(features.l_to_model(l_small * features.L_BYTES_PER_UNIT),
                       features.gray_to_model(gray * 255.0)) * features.AB_SCALE
    return _with_ab(rgb8, ab[0])


def _encode_jpeg(rgb8):
  return tf.io.encode_jpeg(rgb8, quality=JPEG_QUALITY, chroma_downsampling=False)


def _with_ab(rgb8, ab):
  """uint8 [H, W, 3] photo, ab [224, 224, 2] -> uint8 [H, W, 3]: the photo's L with ab upsampled
  bilinearly (as tf.image.resize) to its size. Done in strips of STRIP_PIXELS, so the float
  temporaries of the colour math are bounded instead of ~40 bytes per pixel of the photo.
  """
  height, width = tf.shape(rgb8)[0], tf.shape(rgb8)[1]
  columns = _bilinear_taps(width, features.IMAGE_SIZE)
  ab_columns = _interpolate(ab, columns, axis=1)  # [224, W, 2]: small
  rows = _bilinear_taps(height, features.IMAGE_SIZE)
  strip_rows = tf.maximum(1, STRIP_PIXELS // width)
  strips = (height + strip_rows - 1) // strip_rows

  def strip(i, done):
    start = i * strip_rows
    stop = tf.minimum(start + strip_rows, height)
    ab_strip = _interpolate(ab_columns, [taps[start:stop] for taps in rows], axis=0)
    lab = tf.concat([tf_color.rgb8_to_l(rgb8[start:stop]), ab_strip], axis=-1)
    return i + 1, done.write(i, tf_color.lab_to_rgb8_keep_lightness(lab))

  done = tf.TensorArray(tf.uint8, size=strips, infer_shape=False, element_shape=tf.TensorShape([None, None, 3]))
  _, done = tf.while_loop(lambda i, _: i < strips, strip, [0, done], parallel_iterations=1)
  return done.concat()


def _bilinear_taps(out_size, in_size):
  """(lower index, upper index, weight of upper) per output position: tf.image.resize's bilinear
  sampling with half-pixel centres.
  """
  scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
  position = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * scale - 0.5
  lower = tf.floor(position)
  weight = position - lower
  lower = tf.cast(lower, tf.int32)
  return tf.maximum(lower, 0), tf.minimum(lower + 1, in_size - 1), weight


def _interpolate(values, taps, axis):
  lower, upper, weight = taps
  shape = [-1, 1, 1] if axis == 0 else [1, -1, 1]
  weight = tf.reshape(weight, shape)
  return tf.gather(values, lower, axis=axis) * (1.0 - weight) + tf.gather(values, upper, axis=axis) * weight


def _resize8(rgb8, size):
  resized = tf.image.resize(rgb8[tf.newaxis], [size, size], antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _decode(image_bytes, max_pixels):
  """-> uint8 [H, W, 3], after checking the size in the header against max_pixels.

  JPEG with the accurate IDCT, as PIL and libjpeg decode it by default (TF's default fast
  IDCT is off by ~1 level per pixel, which would move L). PNG and BMP transparency is
  flattened as ingestion flattens it (tf_color.flatten_alpha8); GIF decodes to RGB only.
  """
  is_jpeg = tf.io.is_jpeg(image_bytes)
  is_gif = tf.equal(tf.strings.substr(image_bytes, 0, 3), b"GIF")
  height, width = _header_size(image_bytes, is_jpeg)
  # TF decodes every frame of a GIF (even for the first one alone), each at the first frame's size,
  # whatever the header's screen size says: the limit is on all of them.
  frames, height, width = tf.cond(is_gif, lambda: _gif_frames(image_bytes),
                                  lambda: (tf.constant(1, tf.int64), height, width))
  pixels = height * width
  too_large = tf.debugging.Assert(pixels <= max_pixels, [tf.strings.format(
      signatures.TOO_LARGE_MESSAGE, (width, height, pixels // 1_000_000, max_pixels // 1_000_000))])
  too_many_frames = tf.debugging.Assert((frames == 1) | (pixels * frames <= max_pixels), [tf.strings.format(
      signatures.TOO_MANY_FRAMES_MESSAGE, (frames, width, height, pixels * frames // 1_000_000,
                                           max_pixels // 1_000_000))])
  too_long = tf.debugging.Assert(tf.maximum(height, width) <= signatures.MAX_SIDE, [tf.strings.format(
      signatures.TOO_LONG_MESSAGE, (width, height, signatures.MAX_SIDE))])
  with tf.control_dependencies([too_large, too_many_frames, too_long]):
    return tf.case([
        (is_jpeg, lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE")),
        (is_gif, lambda: tf.io.decode_image(image_bytes, channels=3, expand_animations=False)),
    ], default=lambda: tf_color.flatten_alpha8(tf.io.decode_image(image_bytes, channels=4, expand_animations=False)))


def _header_size(image_bytes, is_jpeg):
  """(height, width) int64 as the image's header states them, read before anything is decoded.

  JPEG through TF's own header parser; PNG (IHDR), GIF (logical screen) and BMP (info
  header) from their fixed header fields; anything else (0, 0), since decoding it fails.
  """
  header = tf.io.decode_raw(tf.strings.substr(image_bytes, 0, 26) + b"\0" * 26, tf.uint8)[:26]
  header = tf.cast(header, tf.int64)

  def number(start, length, big_endian):
    digits = header[start:start + length]
    digits = digits if big_endian else tf.reverse(digits, [0])
    return tf.reduce_sum(digits * tf.constant([256 ** i for i in reversed(range(length))], tf.int64))

  def bmp_height():
    height = number(22, 4, big_endian=False)  # signed: negative for top-down bitmaps
    return tf.abs(tf.where(height >= 2 ** 31, height - 2 ** 32, height))

  prefix = tf.strings.substr(image_bytes, 0, 8)
  size = tf.case([
      (is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64)),
      (tf.equal(prefix, b"\x89PNG\r\n\x1a\n"), lambda: tf.stack([number(20, 4, True), number(16, 4, True)])),
      (tf.equal(tf.strings.substr(prefix, 0, 3), b"GIF"), lambda: tf.stack([number(8, 2, False), number(6, 2, False)])),
      (tf.equal(tf.strings.substr(prefix, 0, 2), b"BM"), lambda: tf.stack([bmp_height(), number(18, 4, False)])),
  ], default=lambda: tf.zeros([2], tf.int64))
  return size[0], size[1]


def _gif_frames(image_bytes):
  """(number of images, height, width of the first) of a GIF, by walking its blocks (nothing is decoded).

  After the header, logical screen descriptor and global colour table, a GIF is a run of
  blocks: extensions (0x21) and images (0x2C, with an optional local colour table), each
  followed by data sub-blocks (a length byte, that many bytes, ..., a zero), up to the
  trailer (0x3B). One loop step reads one byte where a block or sub-block begins.
  """
  data = tf.cast(tf.io.decode_raw(image_bytes, tf.uint8), tf.int64)
  size = tf.size(data, out_type=tf.int64)

  def at(i):
    return tf.gather(data, tf.minimum(i, size - 1))

  one, none = tf.constant(1, tf.int64), tf.constant(0, tf.int64)

  def table(flags):  # bytes of the colour table that the flags announce
    return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), none)

  def step(pos, frames, height, width, in_blocks, done):
    byte = at(pos)
    ends_blocks = in_blocks & tf.equal(byte, 0)
    image = ~in_blocks & tf.equal(byte, 0x2C)
    extension = ~in_blocks & tf.equal(byte, 0x21)
    first = image & tf.equal(frames, 0)
    height = tf.where(first, at(pos + 7) + 256 * at(pos + 8), height)
    width = tf.where(first, at(pos + 5) + 256 * at(pos + 6), width)
    next_pos = tf.where(in_blocks, pos + tf.where(ends_blocks, one, byte + 1),
                        tf.where(image, pos + 11 + table(at(pos + 9)), pos + 2))
    return (next_pos, frames + tf.cast(image, tf.int64), height, width, (in_blocks & ~ends_blocks) | image | extension,
            ~in_blocks & ~image & ~extension)  # the trailer, or bytes that are no block: the decoder decides

  start = tf.constant(13, tf.int64) + table(at(tf.constant(10, tf.int64)))
  _, frames, height, width, _, _ = tf.while_loop(
      lambda pos, frames, height, width, in_blocks, done: (pos < size) & ~done, step,
      (start, none, none, none, tf.constant(False), tf.constant(False)))
  return tf.maximum(frames, 1), height, width


def _gray_from_l(l_star):
  """[B, 224, 224, 1] L* -> the model-scale 299x299 grey image with that lightness."""
  l_global = tf.image.resize(l_star, [features.GLOBAL_SIZE] * 2)
  return features.gray_to_model(tf_color.l_to_gray(l_global) * 255.0)
