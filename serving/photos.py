"""Colorize photo files with an exported model (the library behind `colorize photos`).

Each photo goes whole through the SavedModel's image signature (schemas/signatures.py), so
the output keeps the input's resolution: ab is predicted at 224x224 and merged with the
photo's own full-resolution L. Photos are turned upright first (EXIF orientation), and
written upright without an orientation tag, JPEG as JPEG and PNG as PNG, under their
own names. Unreadable files are skipped with a message; the exit code is 1 if any was.
TensorFlow is imported only when a photo is colorized, so `colorize --help` stays instant.

With a deployed model (serving/endpoint.py) the same photos go over REST instead; it
returns JPEG, so PNG outputs are that JPEG (quality 95) decoded and saved as PNG.
"""
import io
import pathlib
from typing import Dict, Iterable, List, Tuple

from schemas import signatures
from serving import endpoint as endpoint_lib

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
JPEG_SUFFIXES = (".jpg", ".jpeg")
SAVED_MODEL_FILE = "saved_model.pb"
# What the image signature decodes natively; anything else is converted with PIL first.
_NATIVE = {("JPEG", "L"), ("JPEG", "RGB"),
           ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "I")}
_EXIF_ORIENTATION = 0x0112
_JPEG_MAGIC = b"\xff\xd8\xff"


class PhotoError(Exception):
  """A photo cannot be read; the message says why."""


class UsageError(ValueError):
  """The inputs, output folder or model cannot be used as given; the message says why."""


def local_results(colorize, jobs):
  """(source, target, colorized bytes or the PhotoError/OSError) per job, with a local model."""
  for source, target in jobs:
    try:
      yield source, target, colorize_photo(colorize, source.read_bytes(), target.suffix.lower())
    except (PhotoError, OSError) as e:
      yield source, target, e


def endpoint_results(remote: endpoint_lib.Endpoint, jobs):
  """As local_results, with the photos sent to `remote` in batches; unreadable ones are
  reported without being sent. Raises endpoint_lib.EndpointError if the endpoint fails.
  """
  unreadable = []

  def readable():
    for source, target in jobs:
      try:
        yield (source, target), upright(source.read_bytes())
      except (PhotoError, OSError) as e:
        unreadable.append((source, target, e))

  for (source, target), answer in endpoint_lib.colorize(remote, readable()):
    yield from unreadable
    unreadable.clear()
    if isinstance(answer, endpoint_lib.PhotoRejectedError):
      yield source, target, PhotoError(str(answer))
    elif not answer.startswith(_JPEG_MAGIC):
      yield source, target, PhotoError(f"the endpoint answered something else than a JPEG ({answer[:16]!r}...)")
    else:
      yield source, target, from_jpeg(answer, target.suffix.lower())
  yield from unreadable


def plan(inputs: Iterable[pathlib.Path], output_dir: pathlib.Path) -> List[Tuple[pathlib.Path, pathlib.Path]]:
  """(photo, output path) pairs: files as given, folders' photos in name order.

  Outputs keep the photo's file name (a repeated name gets a numeric suffix); never
  the photo itself.
  """
  sources: List[pathlib.Path] = []
  for path in inputs:
    if path.is_dir():
      sources += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    else:
      sources.append(path)
  used: Dict[str, int] = {}
  jobs = []
  for source in sources:
    suffix = source.suffix.lower() if source.suffix.lower() in PHOTO_SUFFIXES else ".png"
    name = f"{source.stem}{suffix}"
    used[name] = used.get(name, 0) + 1
    if used[name] > 1:
      name = f"{source.stem}_{used[name]}{suffix}"
    target = output_dir / name
    if target.resolve() == source.resolve():
      raise UsageError(f"{source} would be overwritten: choose another --output-dir")
    jobs.append((source, target))
  return jobs


def resolve_model_dir(path: pathlib.Path) -> pathlib.Path:
  """A SavedModel directory; a Trainer Model artifact (Format-Serving/); or a Pusher base
  directory of numbered versions, of which the newest.
  """
  for candidate in (path, path / "Format-Serving"):
    if (candidate / SAVED_MODEL_FILE).is_file():
      return candidate
  versions = [p for p in path.iterdir() if p.name.isdigit() and (p / SAVED_MODEL_FILE).is_file()]
  if not versions:
    raise UsageError(f"no SavedModel in {path} (expected {SAVED_MODEL_FILE}, Format-Serving/ "
                           "or numbered version folders)")
  return max(versions, key=lambda p: int(p.name))


def load_colorizer(saved_model: pathlib.Path):
  """The SavedModel's image signature."""
  import tensorflow as tf
  loaded = tf.saved_model.load(str(saved_model)).signatures
  if signatures.IMAGE_SIGNATURE not in loaded:
    raise UsageError(f"{saved_model} has no {signatures.IMAGE_SIGNATURE!r} signature "
                     f"(it has {sorted(loaded)}); export it with trainer/export.py")
  return loaded[signatures.IMAGE_SIGNATURE]


def colorize_photo(colorize, data: bytes, suffix: str) -> bytes:
  """Encoded photo -> the colorized photo encoded as `suffix` says (JPEG or PNG)."""
  import tensorflow as tf
  try:
    outputs = colorize(**{signatures.IMAGE_INPUT: tf.constant(upright(data))})
  except tf.errors.InvalidArgumentError as e:
    raise PhotoError(f"cannot decode image ({e.message.splitlines()[0]})") from e
  if suffix in JPEG_SUFFIXES:
    return outputs[signatures.JPEG_OUTPUT].numpy()
  from PIL import Image
  out = io.BytesIO()
  Image.fromarray(outputs[signatures.RGB_OUTPUT].numpy()).save(out, format="PNG")
  return out.getvalue()


def from_jpeg(jpeg: bytes, suffix: str) -> bytes:
  """A colorized JPEG as the output `suffix` asks: itself, or decoded and saved as PNG."""
  if suffix in JPEG_SUFFIXES:
    return jpeg
  from PIL import Image
  out = io.BytesIO()
  Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, format="PNG")
  return out.getvalue()


def upright(data: bytes) -> bytes:
  """The photo's bytes as the image signature should see them: unchanged when they are
  an upright JPEG/PNG it decodes, otherwise rotated per EXIF and/or converted to PNG.
  """
  from PIL import Image
  from PIL import ImageOps
  from PIL import UnidentifiedImageError
  try:
    image = Image.open(io.BytesIO(data))
    image.load()  # truncated files fail here, not half-way through the model
  except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as e:
    raise PhotoError(f"not a readable image ({e})") from e
  orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
  if orientation == 1 and (image.format, image.mode) in _NATIVE:
    return data
  image = ImageOps.exif_transpose(image)
  if image.mode not in ("L", "RGB"):
    image = image.convert("RGB")
  out = io.BytesIO()
  image.save(out, format="PNG", compress_level=1)
  return out.getvalue()
