"""What to ingest: the photos under a COCO root or a plain folder, local or gs:// (tf.io.gfile).

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
"""
import dataclasses
import hashlib
import json
import posixpath
from typing import Dict, Iterable, List, Optional, Sequence

import tensorflow as tf

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
  root = root.rstrip("/") if root not in ("/", "gs://") else root
  if not tf.io.gfile.exists(root):
    raise SourceError(f"input path does not exist: {root}")
  if not tf.io.gfile.isdir(root):
    raise SourceError(f"input path is not a folder: {root}")
  subsets = [s for s in COCO_SUBSETS if tf.io.gfile.isdir(_join(root, s))]
  if subsets:
    listing = _list_coco(root, subsets, categories)
  else:
    if categories:
      raise SourceError(f"--categories needs COCO annotations, but {root} has no {'/'.join(COCO_SUBSETS)} folder")
    listing = Listing(_list_folder(root), {}, "folder", [])
  if not listing.photos:
    what = f" containing any of the categories {list(categories)}" if categories else ""
    raise SourceError(f"no images{what} found under {root}")
  _check_unique_ids(listing.photos)
  photos = sorted(listing.photos, key=lambda p: p.image_id)
  if max_images:
    photos = photos[:max_images]
  return dataclasses.replace(listing, photos=photos)


def _list_coco(root: str, subsets: Sequence[str], categories: Sequence[str]) -> Listing:
  photos: List[Photo] = []
  licenses: Dict[int, dict] = {}
  used = []
  for subset in subsets:
    annotations_path = _join(root, ANNOTATIONS_DIR, f"instances_{subset}.json")
    if tf.io.gfile.exists(annotations_path):
      annotations = _read_annotations(annotations_path)
      used.append(annotations_path)
      licenses.update({int(l["id"]): {"name": l.get("name", ""), "url": l.get("url", "")}
                       for l in annotations.get("licenses", [])})
      wanted = _images_with_categories(annotations, categories, annotations_path) if categories else None
      for image in annotations["images"]:
        if wanted is None or image["id"] in wanted:
          source = posixpath.join(subset, image["file_name"])
          photos.append(Photo(int(image["id"]), _join(root, source), source, int(image.get("license", UNKNOWN_LICENSE))))
    elif categories:
      raise SourceError(f"--categories needs {annotations_path}, which does not exist")
    else:
      photos.extend(_list_folder(root, subset))
  return Listing(photos, licenses, "coco", used)


def _read_annotations(path: str) -> dict:
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      annotations = json.load(f)
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


def _list_folder(root: str, subdir: Optional[str] = None) -> List[Photo]:
  top = _join(root, subdir) if subdir else root
  photos = []
  for directory, subdirs, files in tf.io.gfile.walk(top):
    subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
    for name in sorted(files):
      if name.startswith("."):
        continue
      path = _join(directory.rstrip("/"), name)
      source = path[len(root):].lstrip("/")
      photos.append(Photo(image_id_from_name(source), path, source, UNKNOWN_LICENSE))
  return photos


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
