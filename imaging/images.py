"""Photo bytes -> the arrays of one example, or a typed reason to skip the photo.

Pure functions (no Beam, no I/O), so the image handling is testable on its own.

Decoding: PIL, any format it reads. The EXIF orientation is applied; transparent
images (RGBA, LA, palette with transparency) are composited on white (color.flatten_alpha); palette, 1-bit,
greyscale, CMYK and YCbCr images are converted to RGB; 16-bit greyscale is scaled to
8 bits. JPEGs are decoded in draft mode (libjpeg's DCT-domain downscaling by 1/2, 1/4
or 1/8) to the smallest size whose shorter side still covers GLOBAL_SIZE, so large
photos decode several times faster and nothing is upsampled that was not already small.

Resize policy (schemas/features.py states it; this is the one implementation): the
largest centred square, resized with PIL's antialiased BILINEAR filter to IMAGE_SIZE
(-> L, ab) and GLOBAL_SIZE (-> gray).

Black-and-white photos: a photo is black-and-white when fewer than BW_MAX_COLOURED_SHARE
of its pixels are more than BW_CHROMA a*b* units away from the photo's mean a*b*. The
distance from the mean, not from neutral, makes sepia or blue-tinted prints count as
black-and-white too. On coco128 this finds exactly its 5 black-and-white photos (ids
86, 328, 359, 542, 634; 359 is tinted) and all 13 historical photos (several tinted):
their share is 0.00%, while the least colourful colour photo (143, grey birds on a white
sky with yellow tail tips) has 2.6%, five times the threshold.
"""
import dataclasses
import enum
import io
from typing import Tuple
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from imaging import color
from schemas import features

MIN_SIDE = 32
ORIENTATION_TAG = 0x0112
RESAMPLE = Image.BILINEAR
BW_CHROMA = 6.0
BW_MAX_COLOURED_SHARE = 0.005


class SkipReason(str, enum.Enum):
  """Why a file did not become an example. The value is what reports and metrics show."""
  UNREADABLE = "unreadable"              # the file could not be read (missing, permission, I/O error)
  NOT_AN_IMAGE = "not_an_image"          # no image format recognises the bytes (or the file is empty)
  TRUNCATED = "truncated"                # the image data ends early
  CORRUPT = "corrupt"                    # the image data is broken
  TOO_SMALL = "too_small"                # shorter side under MIN_SIDE pixels
  TOO_LARGE = "too_large"                # more pixels than PIL's decompression-bomb limit
  UNSUPPORTED_MODE = "unsupported_mode"  # a pixel format with no meaningful sRGB reading (e.g. float)
  GRAYSCALE = "grayscale"                # a genuinely black-and-white photo: no colour to learn
  # Found while listing the input, before anything is opened (components/ingest/local_tree.py).
  OUTSIDE_ROOT = "outside_root"          # a path or link that leads outside the data root: never read
  NOT_A_FILE = "not_a_file"              # a FIFO, socket or device (opening a FIFO would block forever)
  BROKEN_LINK = "broken_link"            # a link to nothing, or a link loop
  DUPLICATE = "duplicate"                # the same file (or folder) already listed under another path
  HIDDEN = "hidden"                      # a name starting with '.', not read
  NOT_ANNOTATED = "not_annotated"        # in a COCO folder, but not in its annotations file
  MISSING = "missing"                    # named by the annotations, absent from the folder


class Skip(Exception):  # noqa: N818 (a verdict on a file, not an error of the program)
  """A file that is left out, with the reason and a human-readable detail."""

  def __init__(self, reason: SkipReason, detail: str):
    super().__init__(f"{reason.value}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class Arrays:
  """One photo's model arrays (before the byte encoding of schemas/features.py)."""
  l: np.ndarray       # L*, IMAGE_SIZE x IMAGE_SIZE, float32 in [0, 100]
  ab: np.ndarray      # a*b*, IMAGE_SIZE x IMAGE_SIZE x 2, float32
  gray: np.ndarray    # sRGB grey, GLOBAL_SIZE x GLOBAL_SIZE, uint8
  coloured_share: float  # share of pixels away from the mean tint (see coloured_share())
  colorfulness: float    # of the IMAGE_SIZE crop (color.colorfulness)
  source_size: Tuple[int, int]  # (width, height) of the photo as viewed (EXIF rotation applied), before resizing

  @property
  def black_and_white(self) -> bool:
    return self.coloured_share < BW_MAX_COLOURED_SHARE


def decode(data: bytes, min_side: int = features.GLOBAL_SIZE) -> Image.Image:
  """Encoded image bytes -> upright RGB PIL image whose shorter side is >= min_side when the photo allows.

  Raises Skip for anything that is not a usable photo.
  """
  return decode_with_size(data, min_side)[0]


def decode_with_size(data: bytes, min_side: int = features.GLOBAL_SIZE) -> Tuple[Image.Image, Tuple[int, int]]:
  """`decode`, and the photo's full (width, height) as viewed: draft mode decodes JPEGs smaller."""
  if not data:
    raise Skip(SkipReason.NOT_AN_IMAGE, "empty file")
  try:
    with warnings.catch_warnings():
      # PIL warns about odd but readable files (e.g. palette transparency as bytes).
      warnings.simplefilter("ignore")
      image = Image.open(io.BytesIO(data))
      width, height = image.size
      if min(width, height) < MIN_SIDE:
        raise Skip(SkipReason.TOO_SMALL, f"{width}x{height} px, the shorter side must be >= {MIN_SIDE}")
      if image.format == "JPEG":
        scale = min_side / min(width, height)
        image.draft("RGB" if image.mode == "RGB" else None, (int(np.ceil(width * scale)), int(np.ceil(height * scale))))
      image.load()
      # EXIF orientations 5-8 turn the photo by 90 degrees.
      upright = (height, width) if image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8) else (width, height)
      ImageOps.exif_transpose(image, in_place=True)
      return to_rgb(image), upright
  except Skip:
    raise
  except Image.UnidentifiedImageError as e:
    # The file's bytes never go into a report: it may be anything (a key, a password file).
    raise Skip(SkipReason.NOT_AN_IMAGE, f"no image format PIL reads matches these {len(data)} bytes") from e
  except Image.DecompressionBombError as e:
    raise Skip(SkipReason.TOO_LARGE, _message(e)) from e
  except Exception as e:
    # PIL reports broken data as OSError, SyntaxError, ValueError, zlib.error or
    # struct.error depending on the format; all of them mean the file is unusable.
    reason = SkipReason.TRUNCATED if "truncated" in str(e).lower() else SkipReason.CORRUPT
    raise Skip(reason, _message(e)) from e


def to_rgb(image: Image.Image) -> Image.Image:
  """Any PIL pixel mode -> RGB: transparency flattened by color.flatten_alpha; raises Skip for
  modes with no sRGB reading.
  """
  mode = image.mode
  if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
    return Image.fromarray(color.flatten_alpha(np.asarray(image.convert("RGBA"))), "RGB")
  if mode.startswith("I;16") or mode == "I":
    # 16-bit greyscale (PNG, TIFF): keep the top 8 bits of precision.
    levels = np.asarray(image, np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8), "L").convert("RGB")
  if mode in ("RGB", "L", "P", "1", "CMYK", "YCbCr"):
    return image if mode == "RGB" else image.convert("RGB")
  raise Skip(SkipReason.UNSUPPORTED_MODE, f"pixel mode {mode!r} has no sRGB reading")


def _message(e: Exception) -> str:
  return f"{type(e).__name__}: {e}"[:300]


def square_resizes(image: Image.Image) -> Tuple[np.ndarray, np.ndarray]:
  """RGB image -> its centred square at IMAGE_SIZE and at GLOBAL_SIZE, uint8 HxWx3 each."""
  width, height = image.size
  side = min(width, height)
  left, top = (width - side) / 2, (height - side) / 2
  box = (left, top, left + side, top + side)
  small = image.resize((features.IMAGE_SIZE,) * 2, RESAMPLE, box=box)
  large = image.resize((features.GLOBAL_SIZE,) * 2, RESAMPLE, box=box)
  return np.asarray(small), np.asarray(large)


def coloured_share(ab: np.ndarray) -> float:
  """Share of pixels whose a*b* lie more than BW_CHROMA from the photo's mean a*b*."""
  a, b = ab[..., 0], ab[..., 1]
  # In place: the same float32 arithmetic as da * da + db * db, without three temporaries.
  da, db = a - a.mean(), b - b.mean()
  da *= da
  db *= db
  da += db
  return np.count_nonzero(da > BW_CHROMA ** 2) / a.size


def to_arrays(data: bytes) -> Arrays:
  """Encoded photo -> its L, ab and gray arrays. Raises Skip for unusable files."""
  image, source_size = decode_with_size(data)
  small, large = square_resizes(image)
  l_star, ab = color.rgb_to_l_ab(small)
  return Arrays(l=l_star, ab=ab, gray=color.rgb_to_gray(large), coloured_share=coloured_share(ab),
                colorfulness=float(color.colorfulness(small)), source_size=source_size)
