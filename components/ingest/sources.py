"""What to ingest: the photos under a COCO root or a plain folder, local or gs://.

Everything is read through Beam's FileSystems (local paths, gs:// through the
google-cloud-storage client, which honours STORAGE_EMULATOR_HOST; tests/test_gcs.py runs
the ingestion against an emulator). The input is listed once, with one recursive match.

COCO root: a folder holding `train2017/` and/or `val2017/` (the official zips unpacked).
For each of them, `annotations/instances_<name>.json`, when present, is the list of
photos (file name, image id, licence id) and makes the category filter possible;
without it every file in the folder is listed. A file the annotations name but the
folder lacks is still listed, so it shows up as an `unreadable` skip instead of
vanishing.

Plain folder: every non-hidden file below it, recursively (non-images become
`not_an_image` skips, never silently ignored). The image id is the file name's number
when it is one (COCO names such as 000000000009.jpg -> 9), otherwise a stable 63-bit
hash of the path relative to the folder, so ids do not depend on the machine or the
listing order.

`input_fingerprint` summarises the same files by name, size and modification time (no
file is read), so the component's driver can key TFX's cache on the input's state.
"""
import dataclasses
import hashlib
import json
import posixpath
from typing import Dict, Iterable, List, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems

COCO_SUBSETS = ("train2017", "val2017")
ANNOTATIONS_DIR = "annotations"
UNKNOWN_LICENSE = 0


class SourceError(ValueError):
  """The input cannot be listed (missing, empty, bad annotations or filter); the message names the path."""


@dataclasses.dataclass(frozen=True)
class Photo:
  image_id: int
  path: str       # full path, local or gs://
  source: str     # path relative to the input root: what the example's `source` feature holds
  license: int    # COCO licence id, UNKNOWN_LICENSE when there are no annotations


@dataclasses.dataclass(frozen=True)
class Listing:
  photos: List[Photo]
  licenses: Dict[int, dict]   # licence id -> {"name", "url"} from the annotations
  layout: str                 # "coco" or "folder"
  annotations: List[str]      # annotation files used


def list_photos(root: str, categories: Sequence[str] = (), max_images: int = 0) -> Listing:
  """The photos to ingest, sorted by image id; at most max_images (0 = all) after the category filter."""
  root = _strip(root)
  files = _files(root)
  subsets = _subsets(files)
  if subsets:
    listing = _list_coco(root, files, subsets, categories)
  else:
    if categories:
      raise SourceError(f"--categories needs COCO annotations, but {root} has no {'/'.join(COCO_SUBSETS)} folder")
    listing = Listing(_photos(root, files), {}, "folder", [])
  if not listing.photos:
    what = f" containing any of the categories {list(categories)}" if categories else ""
    raise SourceError(f"no images{what} found under {root}")
  _check_unique_ids(listing.photos)
  photos = sorted(listing.photos, key=lambda p: p.image_id)
  if max_images:
    photos = photos[:max_images]
  return dataclasses.replace(listing, photos=photos)


def input_fingerprint(root: str) -> str:
  """Number, total size and a SHA-256 of (name, size, mtime) of the files `list_photos` draws on.

  COCO root: the subset folders and their annotation files (not e.g. the zips beside
  them); plain folder: every listed file. Listing only, nothing is read: a photo added,
  removed or rewritten, or the annotations changed, changes the fingerprint.
  """
  root = _strip(root)
  files = _files(root)
  subsets = _subsets(files)
  if subsets:
    annotations = {_annotations_file(s) for s in subsets}
    files = {r: m for r, m in files.items() if r.split("/", 1)[0] in subsets or r in annotations}
  digest = hashlib.sha256()
  for relative in sorted(files):
    digest.update(f"{relative}\t{files[relative].size_in_bytes}\t{files[relative].last_updated_in_seconds!r}\n"
                  .encode())
  total = sum(m.size_in_bytes for m in files.values())
  return f"files:{len(files)},bytes:{total},sha256:{digest.hexdigest()}"


def read_bytes(path: str) -> bytes:
  """A whole file, local or gs://, exactly as stored (no decompression by file extension)."""
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    return f.read()


def _strip(root: str) -> str:
  return root.rstrip("/") if root not in ("/", "gs://") else root


def _files(root: str) -> Dict[str, FileMetadata]:
  """Every non-hidden file below root (hidden: any path part starting with '.'), by path relative to root."""
  prefix = root if root.endswith("/") else root + "/"
  matched = FileSystems.match([prefix + "**"])[0].metadata_list
  files = {m.path[len(prefix):]: m for m in matched if m.path.startswith(prefix)}
  files = {r: m for r, m in files.items() if r and not any(part.startswith(".") for part in r.split("/"))}
  if not files:
    if not FileSystems.exists(root):
      raise SourceError(f"input path does not exist: {root}")
    # A folder (local, or a gs:// folder placeholder) also exists with a trailing slash; a file does not.
    if not FileSystems.exists(prefix):
      raise SourceError(f"input path is not a folder: {root}")
  return files


def _subsets(files: Dict[str, FileMetadata]) -> List[str]:
  present = {r.split("/", 1)[0] for r in files if "/" in r}
  return [s for s in COCO_SUBSETS if s in present]


def _annotations_file(subset: str) -> str:
  return posixpath.join(ANNOTATIONS_DIR, f"instances_{subset}.json")


def _list_coco(root: str, files: Dict[str, FileMetadata], subsets: Sequence[str],
               categories: Sequence[str]) -> Listing:
  photos: List[Photo] = []
  licenses: Dict[int, dict] = {}
  used = []
  for subset in subsets:
    annotations_path = _join(root, _annotations_file(subset))
    if _annotations_file(subset) in files:
      annotations = _read_annotations(annotations_path)
      used.append(annotations_path)
      licenses.update({int(l["id"]): {"name": l.get("name", ""), "url": l.get("url", "")}
                       for l in annotations.get("licenses", [])})
      wanted = _images_with_categories(annotations, categories, annotations_path) if categories else None
      for image in annotations["images"]:
        if wanted is None or image["id"] in wanted:
          source = posixpath.join(subset, image["file_name"])
          license_id = int(image.get("license", UNKNOWN_LICENSE))
          photos.append(Photo(int(image["id"]), _join(root, source), source, license_id))
    elif categories:
      raise SourceError(f"--categories needs {annotations_path}, which does not exist")
    else:
      photos.extend(_photos(root, {r: m for r, m in files.items() if r.startswith(subset + "/")}))
  return Listing(photos, licenses, "coco", used)


def _read_annotations(path: str) -> dict:
  try:
    annotations = json.loads(read_bytes(path))
    if not isinstance(annotations, dict) or not isinstance(annotations.get("images"), list):
      raise ValueError("no 'images' list")
    for image in annotations["images"]:
      image["id"] = int(image["id"])
      str(image["file_name"])
  except (ValueError, KeyError, TypeError) as e:
    raise SourceError(f"{path} is not a COCO instances file: {type(e).__name__}: {e}") from e
  return annotations


def _images_with_categories(annotations: dict, names: Sequence[str], path: str) -> set:
  by_name = {c["name"]: int(c["id"]) for c in annotations.get("categories", [])}
  unknown = sorted(set(names) - set(by_name))
  if unknown:
    raise SourceError(f"unknown COCO categories {unknown} (not in {path}); known: {sorted(by_name)}")
  ids = {by_name[n] for n in names}
  return {int(a["image_id"]) for a in annotations.get("annotations", []) if int(a["category_id"]) in ids}


def _photos(root: str, files: Dict[str, FileMetadata]) -> List[Photo]:
  return [Photo(image_id_from_name(relative), _join(root, relative), relative, UNKNOWN_LICENSE)
          for relative in sorted(files)]


def image_id_from_name(relative_path: str) -> int:
  """COCO-style numeric file names keep their number; any other name gets a stable 63-bit hash."""
  stem = posixpath.splitext(posixpath.basename(relative_path))[0]
  if stem.isdigit() and len(stem) <= 18:
    return int(stem)
  return int.from_bytes(hashlib.sha256(relative_path.encode("utf-8")).digest()[:8], "big") >> 1


def _check_unique_ids(photos: Iterable[Photo]) -> None:
  seen: Dict[int, str] = {}
  for p in photos:
    if p.image_id in seen:
      raise SourceError(f"two files have image id {p.image_id}: {seen[p.image_id]} and {p.path}")
    seen[p.image_id] = p.path


def _join(root: str, *parts: str) -> str:
  # posixpath also suits gs:// paths; local paths on this project's platforms are POSIX.
  return posixpath.join(root, *parts)
