"""One photo's colorization, split around a network that runs on batches (`colorize photos`, local or Beam).

The per-photo work is two pure functions of the photo's bytes, shared by the single-process
path (serving/photos.py) and the Beam pipeline (serving/archive.py), so both write the same
bytes:
  network_inputs(data): decode (JPEG in draft mode: libjpeg's DCT scaling to the smallest
      size whose shorter side still covers GLOBAL_SIZE), turn upright (EXIF), flatten
      transparency, resize the whole frame (nothing cropped) with PIL's antialiased bilinear
      filter to 224 and 299, and encode L and grey exactly as ingestion stores them
      (schemas/features.py): the network sees what it was trained on.
  recombine(data, ab): decode again at full resolution, and merge the photo's own L with ab
      upsampled bilinearly (half-pixel centres) from 224, out-of-gamut colours desaturated at
      constant L (imaging/color.py; its TF twin in the image signature gives the same bytes on
      the same input); encode in the output's format (JPEG: quality 95, no chroma subsampling).
In between, Network runs the SavedModel's examples signature (schemas/signatures.py) on a
batch of those L and grey images: the image signature takes one photo at a time, the L
signature derives grey from the 224 L, and only the examples signature takes both at once.

Memory: a batch holds only its network inputs (~140 kB a photo); a photo is decoded at full
resolution only in recombine, one at a time per thread, and recombined in strips of
STRIP_PIXELS. So a worker's peak is ~ the model + the network's working memory at the batch
size (~17 MB a photo) + threads x (the largest photo allowed x ~10 bytes per pixel: PIL's
4-byte pixels and the 3-byte array side by side, twice (decode, encode), plus the encoded
input and output), independent of how many photos there are (README, "Colorize an archive",
measured by bench/photos.py). The a*b* upsampled to the photo's width (~1.8 kB a column) is
bounded by signatures.MAX_SIDE.

Not the image signature's bytes (what an endpoint, or `colorize photos` before batching,
returns), by choice: the signature shrinks the photo for the network with tf.image.resize
from its full decode, this module with PIL's filter (ingestion's, which made the training
photos) from libjpeg's reduced decode; and TF's JPEG header says 300 dpi, PIL's none (their
pixels agree). The L channel, the photo's detail, is the photo's own in both; only the
predicted chroma may differ slightly. Matching the signature byte for byte would take a
full-resolution TF decode and resize per photo on the host, the cost batching removed. What
must match, and is tested, is the local path and Beam (both call these functions).

The photo is read twice rather than held between the two halves: a 100-megapixel TIFF is
300 MB, a batch of them would be gigabytes.
"""
import dataclasses
import io
from typing import List, Optional, Sequence
import warnings

import numpy as np

from imaging import color
from imaging import images
from imaging import tree
from schemas import features
from schemas import signatures

JPEG_QUALITY = 95
# No format the signature reads stores a pixel in more than 8 bytes (16-bit RGBA or CMYK,
# uncompressed) and metadata (EXIF, ICC profiles, previews) adds tens of MB at most: a larger
# file cannot hold a photo within the pixel limit, and is refused before it is read.
MAX_BYTES_PER_PIXEL = 8
METADATA_BYTES = 64_000_000
# Pixels per strip of the full-resolution colour math (~50 bytes of float32 temporaries each):
# 3 MB, so they stay in a core's L2 cache; strips of 1 << 20 made it 1.6x slower (bench.photos).
STRIP_PIXELS = 1 << 16
_SAVE_OPTIONS = {"JPEG": {"quality": JPEG_QUALITY, "subsampling": 0}, "WEBP": {"quality": 95},
                 "TIFF": {"compression": "tiff_deflate"}}


class PhotoError(Exception):
  """A photo cannot be read; the message says why."""


class ModelError(ValueError):
  """The SavedModel cannot be loaded or read; the message (one line) says why."""


@dataclasses.dataclass(frozen=True)
class NetworkInputs:
  """One photo's network inputs in their stored byte form (schemas/features.py)."""
  l: bytes     # L_SHAPE uint8
  gray: bytes  # GRAY_SHAPE uint8


def open_image(data: bytes, max_pixels: Optional[int]):
  """The PIL image of `data`, opened but not decoded; a photo over `max_pixels` (the model's
  limit) is refused from its header. Raises PhotoError.
  """
  from PIL import Image
  from PIL import UnidentifiedImageError
  try:
    with warnings.catch_warnings():
      # PIL warns from 89 megapixels on; the model's own limit is checked below, from the same header.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:  # over twice PIL's limit: it will not even open it
    raise PhotoError(f"too large to open ({e})") from e
  except UnidentifiedImageError as e:  # its message names the BytesIO object, nothing of the file
    raise PhotoError("not a readable image (no format PIL reads)") from e
  except (OSError, ValueError, SyntaxError) as e:
    raise PhotoError(f"not a readable image ({e})") from e
  width, height = image.size
  if max(width, height) > signatures.MAX_SIDE:
    raise PhotoError(signatures.TOO_LONG_MESSAGE.format(width, height, signatures.MAX_SIDE))
  if max_pixels is not None and width * height > max_pixels:
    raise PhotoError(signatures.TOO_LARGE_MESSAGE.format(width, height, width * height // 1_000_000,
                                                         max_pixels // 1_000_000))
  return image


def read_photo(path: str, max_pixels: Optional[int]) -> bytes:
  """A listed photo's bytes, local or gs://, refused (imaging/tree.py: an OSError saying why) when
  it is no longer a regular file or too large to hold a photo of at most `max_pixels`.
  """
  limit = None if max_pixels is None else max_pixels * MAX_BYTES_PER_PIXEL + METADATA_BYTES
  if path.startswith("gs://"):
    from apache_beam.io.filesystems import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    # Not decompressed by its name, as Beam would by default (photo.gz): a photo is read as stored.
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      return tree.read_bounded(f, limit)
  return tree.read_file(path, limit)


def load(image) -> None:
  """Decodes an opened image; truncated or broken data is a PhotoError."""
  try:
    image.load()
  except (OSError, ValueError, SyntaxError) as e:
    raise PhotoError(f"not a readable image ({e})") from e


def _upright_rgb(data: bytes, max_pixels: Optional[int], min_side: Optional[int] = None):
  """-> the decoded photo, upright, as an RGB PIL image; JPEG at reduced size if `min_side`."""
  from PIL import ImageOps
  image = open_image(data, max_pixels)
  if min_side and image.format == "JPEG":
    width, height = image.size
    scale = min_side / min(width, height)
    image.draft("RGB" if image.mode == "RGB" else None, (int(np.ceil(width * scale)), int(np.ceil(height * scale))))
  load(image)
  image = ImageOps.exif_transpose(image)
  try:
    return images.to_rgb(image)
  except images.Skip as e:
    raise PhotoError(e.detail) from e


def network_inputs(data: bytes, max_pixels: Optional[int]) -> NetworkInputs:
  """Encoded photo -> its network inputs (see the module doc). Raises PhotoError."""
  from PIL import Image
  image = _upright_rgb(data, max_pixels, min_side=features.GLOBAL_SIZE)
  small = np.asarray(image.resize((features.IMAGE_SIZE,) * 2, Image.BILINEAR))
  large = np.asarray(image.resize((features.GLOBAL_SIZE,) * 2, Image.BILINEAR))
  return NetworkInputs(l=features.encode_l(color.rgb_to_l_ab(small)[0]),
                       gray=features.encode_gray(color.rgb_to_gray(large)))


def recombine(data: bytes, ab: np.ndarray, output: str, max_pixels: Optional[int]) -> bytes:
  """Encoded photo and its predicted a*b* [224, 224, 2] -> the colorized photo encoded in the
  PIL format `output`, at the photo's resolution. Raises PhotoError.
  """
  from PIL import Image
  image = _upright_rgb(data, max_pixels)
  rgb8 = np.array(image)  # writable: the colorized pixels replace the photo's, strip by strip
  del image
  _with_ab(rgb8, ab)
  return encode(Image.fromarray(rgb8, "RGB"), output)


def encode(image, output: str) -> bytes:
  """A PIL image in the PIL format `output`, with this module's settings for it."""
  out = io.BytesIO()
  image.save(out, format=output, **_SAVE_OPTIONS.get(output, {}))
  return out.getvalue()


def _with_ab(rgb8: np.ndarray, ab: np.ndarray) -> None:
  """Replaces rgb8 [H, W, 3] by its L with `ab` upsampled to H x W, in strips of STRIP_PIXELS."""
  height, width = rgb8.shape[:2]
  # a* and b* apart, [2, 224, 224], contiguous: every step below runs along whole rows.
  planes = np.ascontiguousarray(np.moveaxis(ab, -1, 0))
  lower, upper, weight = _bilinear_taps(width, ab.shape[1])
  ab_columns = planes[:, :, lower] * (1.0 - weight) + planes[:, :, upper] * weight  # [2, 224, W]: small
  rows = _bilinear_taps(height, ab.shape[0])
  strip_rows = max(1, STRIP_PIXELS // width)
  for start in range(0, height, strip_rows):
    lower, upper, weight = (taps[start:start + strip_rows] for taps in rows)
    weight = weight[:, None]
    a, b = ab_columns[:, lower] * (1.0 - weight) + ab_columns[:, upper] * weight
    strip = rgb8[start:start + strip_rows]
    color.lab_to_rgb8_keep_lightness(color.rgb8_to_l(strip), a, b, out=strip)


def _bilinear_taps(out_size: int, in_size: int):
  """(lower index, upper index, weight of upper) per output position, float32: bilinear
  sampling with half-pixel centres (tf.image.resize's, as the image signature upsamples).
  """
  scale = np.float32(in_size) / np.float32(out_size)
  position = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
  lower = np.floor(position)
  weight = position - lower
  lower = lower.astype(np.int64)
  return np.maximum(lower, 0), np.minimum(lower + 1, in_size - 1), weight


def read_max_pixels(saved_model: str) -> Optional[int]:
  """The SavedModel's size limit, read from its variables without loading its graph (None for
  models exported before the limit existed).
  """
  import tensorflow as tf
  try:
    return int(tf.train.load_variable(f"{saved_model}/variables/variables",
                                      f"{signatures.MAX_PIXELS}/.ATTRIBUTES/VARIABLE_VALUE"))
  except (tf.errors.NotFoundError, ValueError):
    return None
  except tf.errors.OpError as e:  # e.g. variables that may not be read
    raise _not_loadable(saved_model, e) from e


def _not_loadable(saved_model: str, e: Exception) -> ModelError:
  return ModelError(f"{saved_model} holds no SavedModel that loads ({' '.join(str(e).split())[:200]})")


class Network:
  """The SavedModel's examples signature on batches of NetworkInputs, and its size limit."""

  def __init__(self, saved_model: str):
    import tensorflow as tf
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # protobuf on a junk file, before the error said below
        loaded = tf.saved_model.load(saved_model)
    except (OSError, ValueError, tf.errors.OpError) as e:  # a junk or foreign saved_model.pb, missing variables
      raise _not_loadable(saved_model, e) from e
    if signatures.EXAMPLES_SIGNATURE not in loaded.signatures:
      raise ModelError(f"{saved_model} has no {signatures.EXAMPLES_SIGNATURE!r} signature "
                       f"(it has {sorted(loaded.signatures)}); export it with trainer/export.py")
    self._loaded = loaded  # the signature holds its variables only weakly
    self._predict = loaded.signatures[signatures.EXAMPLES_SIGNATURE]
    limit = getattr(loaded, signatures.MAX_PIXELS, None)
    self.max_pixels: Optional[int] = None if limit is None else int(limit.numpy())

  def predict(self, batch: Sequence[NetworkInputs]) -> List[np.ndarray]:
    """-> a*b* [224, 224, 2] float32 per photo."""
    import tensorflow as tf
    examples = []
    for inputs in batch:
      example = tf.train.Example()
      example.features.feature[features.L_KEY].bytes_list.value.append(inputs.l)
      example.features.feature[features.GRAY_KEY].bytes_list.value.append(inputs.gray)
      examples.append(example.SerializeToString())
    ab = self._predict(**{signatures.EXAMPLES_INPUT: tf.constant(examples)})[signatures.AB_OUTPUT].numpy()
    return list(ab * np.float32(features.AB_SCALE))
