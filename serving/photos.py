"""Colorize photo files with an exported model (the library behind `colorize photos`).

With a local model, photos go through serving/colorizer.py (the network on batches of
DEFAULT_BATCH_SIZE), so the output keeps the input's resolution: ab is predicted at 224x224
and merged with the photo's own full-resolution L. Photos are turned upright first (EXIF
orientation) and written upright without an orientation tag, in the format their name says.
serving/archive.py does the same on Beam, with these functions, for archives.

Nothing is lost or overwritten (README, "Colorize your photos"):
- Output names mirror the inputs: each photo's path relative to the folder that holds
  every input (a single folder given: that folder) is kept under the output folder, so
  two distinct photos never share an output; a name whose suffix is not a photo format
  written here gets `.png` appended.
- An existing file is kept unless `overwrite`; an input, or a file this run wrote, is
  never replaced (compared by device and inode, which sees through links and
  case-insensitive names).
- Each file is written under a temporary name (TEMP_PREFIX) in its folder and renamed,
  so a killed run leaves no half-written photo; leftovers of dead runs are removed.
- The output folder is created, written to and its free space checked before the model
  is loaded.
Folders are read with imaging/tree.py: links inside the folder are followed, everything
else (links leading out, broken links, loops, FIFOs, non-photos) is passed over with a reason.
TensorFlow is imported only when a photo is colorized, so `colorize --help` stays instant.

With a deployed model (serving/endpoint.py) the same photos go over REST instead; it
returns JPEG, so other outputs are that JPEG (quality 95) decoded and saved in their format.
"""
import contextlib
import dataclasses
import errno
import io
import itertools
import os
import pathlib
import posixpath
import secrets
import shutil
from typing import Iterable, List, Optional, Tuple
import warnings

from imaging import images
from imaging import tree
from schemas import signatures
from serving import colorizer
from serving import endpoint as endpoint_lib
from serving.photo_settings import DEFAULT_BATCH_SIZE

PhotoError = colorizer.PhotoError

# Formats the image signature reads (after PIL's conversion where needed) and PIL writes.
FORMAT_OF_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG",
                    ".gif": "GIF", ".bmp": "BMP", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
FALLBACK_SUFFIX = ".png"
TEMP_PREFIX = ".colorize-tmp-"
SAVED_MODEL_FILE = "saved_model.pb"
# What the image signature decodes natively; anything else is converted with PIL first.
_NATIVE = {("JPEG", "L"), ("JPEG", "RGB"),
           ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "I;16"), ("PNG", "I")}
_EXIF_ORIENTATION = 0x0112
_JPEG_MAGIC = b"\xff\xd8\xff"
# Conservative output sizes for the free-space check: JPEG at quality 95 without chroma
# subsampling stays under ~1 byte per pixel on photos (the historical set: 0.2-0.5);
# PNG, BMP and TIFF hold up to 3 bytes per pixel plus headers.
_BYTES_PER_PIXEL = {"JPEG": 1.0, "WEBP": 1.0, "GIF": 1.1, "PNG": 3.1, "BMP": 3.1, "TIFF": 3.1}
_PER_FILE_BYTES = 64 * 1024
# What is read of a photo for an endpoint: the deployed model's own limit is not known here.
_ENDPOINT_MAX_PIXELS = int(signatures.MAX_MEGAPIXELS * 1_000_000)
_WRITTEN = "the output of another photo of this run"
TEMPORARY = "a temporary output"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


class UsageError(ValueError):
  """The inputs, output folder or model cannot be used as given; the message says why."""


class OutputFullError(OSError):
  """The output folder takes no more files (full, over quota, read-only)."""


@dataclasses.dataclass(frozen=True)
class Job:
  source: pathlib.Path
  target: pathlib.Path


@dataclasses.dataclass
class Plan:
  jobs: List[Job]
  passed_over: List[Tuple[str, str]]  # (path, reason)


def plan(inputs: Iterable[pathlib.Path], output_dir: pathlib.Path) -> Plan:
  """Which photo goes to which output path (see the module doc), and what is passed over."""
  found, passed_over = find_photos(inputs, os.path.realpath(output_dir))
  jobs = _targets(found, output_dir)
  _refuse_inputs_as_outputs(jobs)
  return Plan(jobs, passed_over)


def find_photos(inputs: Iterable[pathlib.Path], output_real: Optional[str]
                ) -> Tuple[List[Tuple[pathlib.Path, str]], List[Tuple[str, str]]]:
  """The photos among local `inputs` as (source, path relative to the folder holding every
  input), and what is passed over as (path, reason); `output_real` (a real path, or None when
  the output is not local) is never read.
  """
  inputs = [pathlib.Path(os.path.abspath(p)) for p in inputs]
  # os.path.isdir, not Path.is_dir: that raises for a path under a folder that may not be entered,
  # which is passed over below with its reason.
  anchors = [str(p) if os.path.isdir(p) else str(p.parent) for p in inputs]
  base = os.path.commonpath(anchors)
  found: List[Tuple[pathlib.Path, str]] = []
  passed_over: List[Tuple[str, str]] = []
  for path in inputs:
    if os.path.isdir(path):
      if os.path.realpath(path) == output_real:
        raise UsageError(f"the output folder {output_real} is the input folder {path}: choose a new folder")
      listing = tree.walk(str(path), exclude=output_real)
      passed_over += listing.passed_over
      prefix = os.path.relpath(path, base)
      for entry in listing.files:
        reason = name_reason(entry.relative)
        if reason == TEMPORARY:
          continue  # an unfinished output of a killed run, not a photo
        if reason:
          passed_over.append((entry.path, reason))
          continue
        found.append((pathlib.Path(entry.path), os.path.normpath(os.path.join(prefix, entry.relative))))
    else:
      try:
        reason = tree.special_file_reason(os.stat(path).st_mode)
      except OSError as e:  # a link loop or a broken link given by name
        reason = tree.unreachable_reason(str(path), e)
      if reason:
        passed_over.append((str(path), reason))
      else:
        found.append((path, os.path.relpath(path, base)))
  return found, passed_over


def name_reason(relative: str) -> Optional[str]:
  """Why a file found in a folder is not colorized, by its name (TEMPORARY: a temporary
  output of this module), or None for a photo.
  """
  name = posixpath.basename(relative)
  if name.startswith(TEMP_PREFIX):
    return TEMPORARY
  if pathlib.PurePath(name).suffix.lower() not in FORMAT_OF_SUFFIX:
    return "not a photo by its name (JPEG, PNG, GIF, BMP, WebP or TIFF)"
  return None


def target_name(relative: str) -> str:
  """The output's path relative to the output folder, for a photo's relative path."""
  return relative if pathlib.PurePath(relative).suffix.lower() in FORMAT_OF_SUFFIX else relative + FALLBACK_SUFFIX


def _targets(found: List[Tuple[pathlib.Path, str]], output_dir: pathlib.Path) -> List[Job]:
  by_target = {}
  for source, relative in found:
    target = output_dir / target_name(relative)
    other = by_target.setdefault(target, source)
    if other != source and not _same_file(other, source):
      raise UsageError(f"{other} and {source} would both be written to {target}: colorize them in separate runs")
  return [Job(source, target) for target, source in by_target.items()]


def _same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
  return _identity(a) == _identity(b)


def _identity(path) -> Optional[Tuple[int, int]]:
  """(device, inode) of what `path` leads to (through links), or None if nothing is there."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_dev, st.st_ino


def _refuse_inputs_as_outputs(jobs: List[Job]) -> None:
  inputs = {_identity(job.source): job.source for job in jobs}
  for job in jobs:
    source = inputs.get(_identity(job.target)) if os.path.lexists(job.target) else None
    if source is not None:
      raise UsageError(f"{job.target} is the input {source} and would be overwritten: choose another --output-dir")


def prepare_output(output_dir: pathlib.Path, jobs: List[Job], todo: List[Job]) -> None:
  """Creates the output folders of `jobs`, removes temporaries of dead runs there, and proves
  the folder takes the outputs of `todo` (those to write): a test file is written, and the
  free space must exceed a conservative estimate of their size. Raises UsageError otherwise.
  """
  folder = output_dir  # the one named when something fails: a sub-folder of the outputs, or the output folder
  try:
    for folder in sorted({output_dir} | {job.target.parent for job in jobs}):
      folder.mkdir(parents=True, exist_ok=True)
      remove_stale_temporaries(folder)
    folder = output_dir
    probe = _temporary(output_dir)
    try:
      with open(probe, "xb") as f:
        f.write(b"\0" * _PER_FILE_BYTES)
        f.flush()
        os.fsync(f.fileno())
    finally:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(probe)
  except OSError as e:
    raise UsageError(f"cannot write into {folder}: {e.strerror or e}") from e
  needed = sum(estimated_output_bytes(job) for job in todo)
  free = shutil.disk_usage(output_dir).free
  if needed > free:
    raise UsageError(f"{output_dir} has {free / 1e6:.1f} MB free; the {len(todo)} photo(s) need up to "
                     f"~{needed / 1e6:.1f} MB (a conservative estimate): free some space or choose another folder")


def estimated_output_bytes(job: Job) -> int:
  """An upper estimate of the output's size, from the photo's header (nothing is decoded)."""
  from PIL import Image
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked later, from the header
      with tree.open_regular(str(job.source)) as f, Image.open(f) as image:
        pixels = image.size[0] * image.size[1]
  except Exception:
    return _PER_FILE_BYTES
  return int(pixels * _BYTES_PER_PIXEL[output_format(job.target)]) + _PER_FILE_BYTES


def output_format(target: pathlib.Path) -> str:
  return FORMAT_OF_SUFFIX[target.suffix.lower()]


def remove_stale_temporaries(folder: pathlib.Path) -> None:
  """Deletes this module's temporary files in `folder` whose writing process is gone."""
  for entry in os.scandir(folder):
    if entry.name.startswith(TEMP_PREFIX) and not _alive(entry.name[len(TEMP_PREFIX):].split("-")[0]):
      # Another user's, in a shared (sticky) folder, may not be ours to delete: listings skip it anyway.
      with contextlib.suppress(FileNotFoundError, PermissionError):
        os.unlink(entry.path)


def _alive(pid: str) -> bool:
  try:
    os.kill(int(pid), 0)
  except (ValueError, ProcessLookupError):
    return False
  except PermissionError:
    return True
  return True


def _temporary(folder: pathlib.Path) -> pathlib.Path:
  return folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"


class Writer:
  """Puts finished files in place without ever replacing an input or a file it wrote."""

  def __init__(self, jobs: List[Job], overwrite: bool):
    self.overwrite = overwrite
    self._protected = {_identity(job.source): f"the input {job.source}" for job in jobs}
    self._protected.pop(None, None)  # a photo deleted since the plan

  def keeps(self, target: pathlib.Path) -> bool:
    """Whether `target` exists and stays as it is (nothing to write). Raises PhotoError if
    it is a file this run wrote under another name.
    """
    if not os.path.lexists(target):
      return False
    self._refuse_written(target)
    return not self.overwrite

  def _refuse_written(self, target: pathlib.Path) -> None:
    held = self._protected.get(_identity(target), "")
    if held.startswith(_WRITTEN):
      raise PhotoError(f"{target} is {held}: not replaced")

  def write(self, target: pathlib.Path, data: bytes) -> bool:
    """Writes `data` to `target` through a temporary file; False if `target` exists and is kept.

    Raises PhotoError if the target may not be replaced, OutputFullError when the folder takes no more.
    """
    temporary = _temporary(target.parent)
    try:
      with open(temporary, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      if self.overwrite:
        held = self._protected.get(_identity(target))
        if held:
          raise PhotoError(f"{target} is {held}: not replaced")
        os.replace(temporary, target)
      elif not _create(temporary, target):
        self._refuse_written(target)
        return False
    except OSError as e:
      if e.errno in _DISK_FULL:
        raise OutputFullError(e.errno, f"{target.parent}: {e.strerror}") from e
      # The output's name and the cause; not the temporary file's name, which OSError's text holds.
      raise PhotoError(f"cannot write {target}: {e.strerror}") from e
    finally:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    self._protected[_identity(target)] = f"{_WRITTEN} as {target} (does the output folder ignore case?)"
    return True


def _create(temporary: pathlib.Path, target: pathlib.Path) -> bool:
  """Gives `temporary` the name `target` unless that name exists (atomically, by a hard link)."""
  try:
    os.link(temporary, target)
  except FileExistsError:
    return False
  except OSError as e:
    if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
      raise
    # A file system without hard links: the check and the rename are two steps.
    if os.path.lexists(target):
      return False
    os.rename(temporary, target)
  return True


def resolve_model_dir(path: pathlib.Path) -> pathlib.Path:
  """A SavedModel directory; a Trainer Model artifact (Format-Serving/); or a Pusher base
  directory of numbered versions, of which the newest. Raises UsageError, also when a folder
  on the way cannot be read.
  """
  try:
    for candidate in (path, path / "Format-Serving"):
      if (candidate / SAVED_MODEL_FILE).is_file():
        return candidate
    versions = [p for p in path.iterdir() if p.name.isdigit() and (p / SAVED_MODEL_FILE).is_file()]
  except OSError as e:  # pathlib's is_file() raises on a folder it may not enter (EACCES)
    raise _unreadable_model(path, e) from e
  if not versions:
    raise UsageError(f"no SavedModel in {path} (expected {SAVED_MODEL_FILE}, Format-Serving/ "
                     "or numbered version folders)")
  return max(versions, key=lambda p: int(p.name))


def check_readable(saved_model: pathlib.Path) -> None:
  """Raises UsageError when a file or folder of the SavedModel cannot be read: what workers that
  load it themselves (Beam) would each fail on, with their tracebacks, after the job started.
  """
  def refuse(e: OSError):
    raise _unreadable_model(saved_model, e) from e

  for folder, _, files in os.walk(saved_model, onerror=refuse):
    for name in files:
      try:
        with open(os.path.join(folder, name), "rb"):
          pass
      except OSError as e:
        refuse(e)


def _unreadable_model(path: pathlib.Path, e: OSError) -> UsageError:
  return UsageError(f"--model {tree.printable(str(path))} cannot be read: {e.strerror} "
                    f"({tree.printable(str(e.filename))})")


def load_network(saved_model: pathlib.Path) -> colorizer.Network:
  try:
    return colorizer.Network(str(saved_model))
  except ValueError as e:
    raise UsageError(str(e)) from e


def local_results(network: colorizer.Network, jobs: Iterable[Job], batch_size: int = DEFAULT_BATCH_SIZE):
  """(job, colorized bytes or the PhotoError/OSError) per job, with a local model, the network
  running on `batch_size` photos at a time (serving/colorizer.py).
  """
  jobs = iter(jobs)
  max_pixels = network.max_pixels
  while batch := list(itertools.islice(jobs, batch_size)):
    ready = []
    for job in batch:
      try:
        ready.append((job, colorizer.network_inputs(colorizer.read_photo(str(job.source), max_pixels), max_pixels)))
      except (PhotoError, OSError) as e:
        yield job, e
    if not ready:
      continue
    for (job, _), ab in zip(ready, network.predict([inputs for _, inputs in ready]), strict=True):
      try:
        data = colorizer.read_photo(str(job.source), max_pixels)
        yield job, colorizer.recombine(data, ab, output_format(job.target), max_pixels)
      except (PhotoError, OSError) as e:
        yield job, e


def endpoint_results(remote: endpoint_lib.Endpoint, jobs: Iterable[Job]):
  """As local_results, with the photos sent to `remote` in batches; unreadable ones are
  reported without being sent. Raises endpoint_lib.EndpointError if the endpoint fails.
  """
  unreadable = []

  def readable():
    for job in jobs:
      try:
        yield job, upright(colorizer.read_photo(str(job.source), _ENDPOINT_MAX_PIXELS))
      except (PhotoError, OSError) as e:
        unreadable.append((job, e))

  for job, answer in endpoint_lib.colorize(remote, readable()):
    yield from unreadable
    unreadable.clear()
    if isinstance(answer, endpoint_lib.PhotoRejectedError):
      yield job, PhotoError(str(answer))
    elif not answer.startswith(_JPEG_MAGIC):
      yield job, PhotoError(f"the endpoint answered something else than a JPEG ({answer[:16]!r}...)")
    else:
      yield job, from_jpeg(answer, output_format(job.target))
  yield from unreadable


def from_jpeg(jpeg: bytes, output: str) -> bytes:
  """A colorized JPEG in the PIL format `output`: itself, or decoded and saved in that format."""
  if output == "JPEG":
    return jpeg
  from PIL import Image
  return colorizer.encode(Image.open(io.BytesIO(jpeg)).convert("RGB"), output)


def upright(data: bytes, max_pixels: Optional[int] = None) -> bytes:
  """The photo's bytes as the image signature (of a deployed model) should see them: unchanged
  when they are an upright JPEG/PNG it decodes, otherwise rotated per EXIF and/or converted to
  PNG (transparency flattened as ingestion flattens it). A photo over `max_pixels` (the model's
  limit) is refused from its header, before it is decoded.
  """
  from PIL import ImageOps
  image = colorizer.open_image(data, max_pixels)
  colorizer.load(image)  # truncated files fail here, not half-way through the model
  orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
  if orientation == 1 and (image.format, image.mode) in _NATIVE:
    return data
  image = ImageOps.exif_transpose(image)
  if image.mode not in ("L", "RGB"):
    try:
      image = images.to_rgb(image)
    except images.Skip as e:
      raise PhotoError(e.detail) from e
  out = io.BytesIO()
  image.save(out, format="PNG", compress_level=1)
  return out.getvalue()
