"""`colorize photos IN... -o OUTDIR --model DIR | --endpoint URL|RESOURCE`: colorize photos.

Each photo goes whole through the SavedModel's image signature (trainer/export.py), so
the output keeps the input's resolution: ab is predicted at 224x224 and merged with the
photo's own full-resolution L. Photos are turned upright first (EXIF orientation), and
written upright without an orientation tag, JPEG as JPEG and PNG as PNG, under their
own names. Unreadable files are skipped with a message; the exit code is 1 if any was.
TensorFlow is imported only when the command runs, so `colorize --help` stays instant.

With --endpoint the same photos go to a deployed model instead (serving/endpoint.py),
which returns JPEG: PNG outputs are that JPEG (quality 95) decoded and saved as PNG.
"""
import io
import pathlib
from typing import Dict, Iterable, List, Tuple

import click

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


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Where the colorized photos go (created if missing), under the input file names.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              help="An exported SavedModel, a Trainer's model output, or a Pusher's base directory "
                   "(its newest version is used).")
@click.option("--endpoint", help="Instead of --model, a deployed model: a REST :predict URL "
                                 "(TF Serving: http://HOST:8501/v1/models/NAME:predict) or a Vertex AI endpoint, "
                                 "projects/PROJECT/locations/REGION/endpoints/ID (uses your gcloud login).")
def photos(inputs, output_dir, model_dir, endpoint):
  """Colorize photos: JPEG/PNG files, or folders of them, at their original resolution."""
  from serving import endpoint as endpoint_lib  # pylint: disable=g-import-not-at-top
  if (model_dir is None) == (endpoint is None):
    raise click.UsageError("give either --model DIR or --endpoint URL|RESOURCE")
  jobs = plan(inputs, output_dir)
  if not jobs:
    raise click.UsageError(f"no {'/'.join(PHOTO_SUFFIXES)} photos in {', '.join(map(str, inputs))}")
  if endpoint is None:
    saved_model = resolve_model_dir(pathlib.Path(model_dir))
    click.echo(f"Colorizing {len(jobs)} photo(s) with {saved_model}", err=True)
    results = _local_results(load_colorizer(saved_model), jobs)
  else:
    try:
      remote = endpoint_lib.connect(endpoint)
    except endpoint_lib.EndpointError as e:
      raise click.UsageError(str(e)) from e
    click.echo(f"Colorizing {len(jobs)} photo(s) with {remote.url}", err=True)
    results = _endpoint_results(remote, jobs)
  output_dir.mkdir(parents=True, exist_ok=True)

  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  failed, done = [], 0
  progress = tqdm(total=len(jobs), unit="photo", dynamic_ncols=True)
  try:
    for source, target, result in results:
      try:
        if isinstance(result, Exception):
          raise result
        target.write_bytes(result)
        done += 1
      except (PhotoError, OSError) as e:
        failed.append(source)
        tqdm.write(f"skipped {source}: {e}", file=click.get_text_stream("stderr"))
      progress.update()
  except endpoint_lib.EndpointError as e:  # the endpoint cannot be used: say how far it got
    raise click.ClickException(f"{e}\n{done} of {len(jobs)} photo(s) were colorized into {output_dir} before") from e
  finally:
    progress.close()
  click.echo(f"Colorized {done} photo(s) into {output_dir}"
             + (f"; skipped {len(failed)} unreadable" if failed else ""))
  if failed:
    raise SystemExit(1)


def _local_results(colorize, jobs):
  for source, target in jobs:
    try:
      yield source, target, colorize_photo(colorize, source.read_bytes(), target.suffix.lower())
    except (PhotoError, OSError) as e:
      yield source, target, e


def _endpoint_results(remote, jobs):
  """The photos sent to `remote` in batches; unreadable ones are reported without being sent."""
  from serving import endpoint as endpoint_lib  # pylint: disable=g-import-not-at-top
  unreadable = []

  def readable():
    for source, target in jobs:
      try:
        yield (source, target), upright(source.read_bytes())
      except (PhotoError, OSError) as e:
        unreadable.append((source, target, e))

  for (source, target), result in endpoint_lib.colorize(remote, readable()):
    yield from unreadable
    unreadable.clear()
    if isinstance(result, endpoint_lib.RejectedPhoto):
      result = PhotoError(str(result))
    elif not result.startswith(_JPEG_MAGIC):
      result = PhotoError(f"the endpoint answered something else than a JPEG ({result[:16]!r}...)")
    else:
      result = from_jpeg(result, target.suffix.lower())
    yield source, target, result
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
      raise click.UsageError(f"{source} would be overwritten: choose another --output-dir")
    jobs.append((source, target))
  return jobs


def resolve_model_dir(path: pathlib.Path) -> pathlib.Path:
  """A SavedModel directory; a Trainer Model artifact (Format-Serving/); or a Pusher base
  directory of numbered versions, of which the newest."""
  for candidate in (path, path / "Format-Serving"):
    if (candidate / SAVED_MODEL_FILE).is_file():
      return candidate
  versions = [p for p in path.iterdir() if p.name.isdigit() and (p / SAVED_MODEL_FILE).is_file()]
  if not versions:
    raise click.UsageError(f"no SavedModel in {path} (expected {SAVED_MODEL_FILE}, Format-Serving/ "
                           "or numbered version folders)")
  return max(versions, key=lambda p: int(p.name))


def load_colorizer(saved_model: pathlib.Path):
  """The SavedModel's image signature."""
  from pipelines import quiet  # pylint: disable=g-import-not-at-top
  quiet.install()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import export  # pylint: disable=g-import-not-at-top
  signatures = tf.saved_model.load(str(saved_model)).signatures
  if export.IMAGE_SIGNATURE not in signatures:
    raise click.UsageError(f"{saved_model} has no {export.IMAGE_SIGNATURE!r} signature "
                           f"(it has {sorted(signatures)}); export it with trainer/export.py")
  return signatures[export.IMAGE_SIGNATURE]


def colorize_photo(colorize, data: bytes, suffix: str) -> bytes:
  """Encoded photo -> the colorized photo encoded as `suffix` says (JPEG or PNG)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from trainer import export  # pylint: disable=g-import-not-at-top
  try:
    outputs = colorize(**{export.IMAGE_INPUT: tf.constant(upright(data))})
  except tf.errors.InvalidArgumentError as e:
    raise PhotoError(f"cannot decode image ({e.message.splitlines()[0]})") from e
  if suffix in JPEG_SUFFIXES:
    return outputs[export.JPEG_OUTPUT].numpy()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  Image.fromarray(outputs[export.RGB_OUTPUT].numpy()).save(out, format="PNG")
  return out.getvalue()


def from_jpeg(jpeg: bytes, suffix: str) -> bytes:
  """A colorized JPEG as the output `suffix` asks: itself, or decoded and saved as PNG."""
  if suffix in JPEG_SUFFIXES:
    return jpeg
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  Image.open(io.BytesIO(jpeg)).convert("RGB").save(out, format="PNG")
  return out.getvalue()


def upright(data: bytes) -> bytes:
  """The photo's bytes as the image signature should see them: unchanged when they are
  an upright JPEG/PNG it decodes, otherwise rotated per EXIF and/or converted to PNG."""
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
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
