"""What to ingest: the photos under a COCO root or a plain folder, local or gs://.

The root is checked first (roots.py: missing, not a folder, no credentials, no network:
one line, in seconds), then listed once. Local roots are walked by local_tree.py
(literal names, links followed only inside the root, special files never opened);
gs:// roots are listed by object-name prefix with the google-cloud-storage client
(literal too: no character of a path is a pattern). Photos are read through
`read_bytes`: local files with local_tree.read_regular, gs:// objects through Beam's
FileSystems (tests/test_gcs.py runs the ingestion against an emulator).

Every entry of the root is either a photo or a refusal with a reason (images.SkipReason)
that the executor puts in the skip report, without opening it: hidden names, links out
of the root, broken links and loops, FIFOs and other special files, the same file
reached twice (links, hard links), an annotation `file_name` that is absolute or climbs
out with `..` (`outside_root`), an annotated file that is absent (`missing`), and a file
in an annotated COCO folder that its annotations do not list (`not_annotated`).

COCO root: a folder holding `train2017/` and/or `val2017/` (the official zips unpacked).
For each of them, `annotations/instances_<name>.json`, when present, is the list of
photos (file name, image id, licence id) and makes the category filter possible;
without it every file in the folder is listed. Other entries beside these folders
(the zips, other annotation files) are not input: the listing names them as `ignored`.

Plain folder: every file below it, recursively (non-images become `not_an_image`
skips, never silently ignored).

Image ids: the annotations' id, else the file name's number when it is one (COCO
names such as 000000000009.jpg -> 9), else a stable 63-bit hash of the path relative to
the root. An id claimed by two photos (the same COCO name in two folders, 9.jpg and
09.jpg, an id repeated in two annotation files) is given up by all its claimants, which
take their path's hash instead: ids are unique, and do not depend on the machine or
the listing order.

`input_fingerprint` summarises the same files by name, size and modification time (no
file is read), so the component's driver can key TFX's cache on the input's state.
"""
import dataclasses
import hashlib
import json
import posixpath
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.ingest import local_tree
from components.ingest import roots
from components.ingest.roots import SourceError
from imaging import images

COCO_SUBSETS = ("train2017", "val2017")
ANNOTATIONS_DIR = "annotations"
UNKNOWN_LICENSE = 0
GCS_LIST_DEADLINE = 60.0  # seconds of retries for one listing of a gs:// root

SkipReason = images.SkipReason


@dataclasses.dataclass(frozen=True)
class Photo:
  image_id: int
  path: str       # full path, local or gs://: what is read (for a local link, its resolved target inside the root)
  source: str     # path relative to the input root: what the example's `source` feature holds
  license: int    # COCO licence id, UNKNOWN_LICENSE when there are no annotations
  refused: str = ""  # a SkipReason value: reported without being read
  detail: str = ""


@dataclasses.dataclass(frozen=True)
class Listing:
  photos: List[Photo]
  licenses: Dict[int, dict]   # licence id -> {"name", "url"} from the annotations
  layout: str                 # "coco" or "folder"
  annotations: List[str]      # annotation files used
  refused: List[Photo] = dataclasses.field(default_factory=list)  # entries reported, never read
  ignored: List[str] = dataclasses.field(default_factory=list)    # COCO root: top-level entries that are not input


@dataclasses.dataclass(frozen=True)
class _File:
  relative: str
  path: str
  size: int
  mtime: float
  inode: Optional[Tuple[int, int]]  # local files only: the same file under two paths has one
  via_link: bool = False


def list_photos(root: str, categories: Sequence[str] = (), max_images: int = 0) -> Listing:
  """The photos to ingest, sorted by image id; at most max_images (0 = all) after the category filter."""
  root, files, refusals = _scan(root)
  subsets = _subsets(files)
  if subsets:
    listing = _list_coco(root, files, {r.relative for r in refusals}, subsets, categories)
    inputs = (*subsets, ANNOTATIONS_DIR)
    ignored = sorted({f.relative.split("/", 1)[0] for f in files.values()} - set(inputs))
  else:
    if categories:
      raise SourceError(f"--categories needs COCO annotations, but {root} has no {'/'.join(COCO_SUBSETS)} folder")
    wanted = [(f, image_id_from_name(f.relative), UNKNOWN_LICENSE) for f in files.values()]
    photos, duplicates = _unique_files(wanted)
    listing = Listing(photos, {}, "folder", [], duplicates)
    ignored = []
  refused = listing.refused + [_refusal(r.relative, r.reason, r.detail) for r in refusals]
  if not listing.photos:
    what = f" containing any of the categories {list(categories)}" if categories else ""
    first = min(refused, key=lambda p: p.source, default=None)
    why = f"; {len(refused)} entries left out, e.g. {first.source!r}: {first.refused}, {first.detail}" if first else ""
    raise SourceError(f"no images{what} found under {root}{why}")
  photos = _with_unique_ids(listing.photos)
  photos = sorted(photos, key=lambda p: p.image_id)
  if max_images:
    photos = photos[:max_images]
  return dataclasses.replace(listing, photos=photos, refused=sorted(refused, key=lambda p: (p.refused, p.source)),
                             ignored=ignored)


def input_fingerprint(root: str) -> str:
  """Number, total size and a SHA-256 of (name, size, mtime) of the files `list_photos` draws on.

  COCO root: the subset folders and their annotation files (not e.g. the zips beside
  them); plain folder: every listed file. Listing only, nothing is read: a photo added,
  removed or rewritten, or the annotations changed, changes the fingerprint. SourceError
  when there is no file at all (an empty snapshot).
  """
  _, files, _ = _scan(root)
  if not files:
    raise SourceError(f"no files under {root}")
  subsets = _subsets(files)
  if subsets:
    annotations = {_annotations_file(s) for s in subsets}
    files = {r: f for r, f in files.items() if r.split("/", 1)[0] in subsets or r in annotations}
  digest = hashlib.sha256()
  for relative in sorted(files):
    digest.update(_encode(f"{relative}\t{files[relative].size}\t{files[relative].mtime!r}\n"))
  total = sum(f.size for f in files.values())
  return f"files:{len(files)},bytes:{total},sha256:{digest.hexdigest()}"


def read_bytes(path: str) -> bytes:
  """A whole file, local or gs://, exactly as stored (no decompression by file extension).

  Local: only a regular file, opened without blocking or following a final link
  (images.Skip otherwise, see local_tree.read_regular).
  """
  if not path.startswith("gs://"):
    return local_tree.read_regular(path)
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    return f.read()


def _scan(root: str) -> Tuple[str, Dict[str, _File], List[local_tree.Refusal]]:
  """(checked root, regular files by relative path, refusals) for a local or gs:// root."""
  root = roots.check(root)
  if root.startswith("gs://"):
    files, refusals = _list_gcs(root)
  else:
    walked, refusals = local_tree.walk(root)
    files = [_File(f.relative, f.real, f.size, f.mtime, f.inode, f.via_link) for f in walked]
  return root, {f.relative: f for f in files}, refusals


def _list_gcs(root: str) -> Tuple[List[_File], List[local_tree.Refusal]]:
  from google.api_core.retry import Retry

  bucket, prefix = roots.split_gcs(root)
  client, _ = roots.gcs_client()
  start = prefix + "/" if prefix else ""
  files, refusals, hidden = [], [], set()
  for blob in client.list_blobs(bucket, prefix=start or None, timeout=roots.GCS_TIMEOUT,
                                retry=Retry(deadline=GCS_LIST_DEADLINE)):
    relative = blob.name[len(start):]
    if not relative or relative.endswith("/"):  # the folder placeholders some tools create
      continue
    parts = relative.split("/")
    dot = next((i for i, part in enumerate(parts) if part.startswith(".")), None)
    if dot is not None:
      hidden.add("/".join(parts[:dot + 1]))
      continue
    updated = blob.updated.timestamp() if blob.updated else 0.0
    files.append(_File(relative, f"gs://{bucket}/{blob.name}", blob.size or 0, updated, None))
  refusals = [local_tree.Refusal(h, SkipReason.HIDDEN, "hidden (name starts with '.'), not read")
              for h in sorted(hidden)]
  return files, refusals


def _subsets(files: Dict[str, _File]) -> List[str]:
  present = {r.split("/", 1)[0] for r in files if "/" in r}
  return [s for s in COCO_SUBSETS if s in present]


def _annotations_file(subset: str) -> str:
  return posixpath.join(ANNOTATIONS_DIR, f"instances_{subset}.json")


def _list_coco(root: str, files: Dict[str, _File], walk_refused: Set[str], subsets: Sequence[str],
               categories: Sequence[str]) -> Listing:
  wanted: List[Tuple[_File, int, int]] = []  # (file, preferred image id, licence)
  refused: List[Photo] = []
  licenses: Dict[int, dict] = {}
  used = []
  annotated = set()  # relative paths the annotations name, whatever the category filter
  for subset in subsets:
    annotations_file = files.get(_annotations_file(subset))
    if annotations_file:
      annotations = _read_annotations(annotations_file.path)
      used.append(annotations_file.path)
      licenses.update({int(l["id"]): {"name": l.get("name", ""), "url": l.get("url", "")}
                       for l in annotations.get("licenses", [])})
      selected = _images_with_categories(annotations, categories, annotations_file.path) if categories else None
      for image in annotations["images"]:
        relative = roots.relative_inside(subset, image["file_name"])
        annotated.add(relative)
        if selected is not None and image["id"] not in selected:
          continue
        if not relative:
          refused.append(_refusal(posixpath.join(subset, image["file_name"]), SkipReason.OUTSIDE_ROOT,
                                  "the annotations name a path outside the data root; not read", image["id"]))
        elif relative in files:
          wanted.append((files[relative], image["id"], int(image.get("license", UNKNOWN_LICENSE))))
        elif relative not in walk_refused:  # (those are reported by the walk: a FIFO, a broken link...)
          refused.append(_refusal(relative, SkipReason.MISSING, "named by the annotations, not a file under the "
                                  "data root", image["id"]))
    elif categories:
      raise SourceError(f"--categories needs {_join(root, _annotations_file(subset))}, which does not exist")
    else:
      annotated.update(r for r in files if r.startswith(subset + "/"))
      wanted.extend((f, image_id_from_name(r), UNKNOWN_LICENSE) for r, f in files.items() if r.startswith(subset + "/"))
  photos, duplicates = _unique_files(wanted)
  kept = {f.inode or f.path for f, _, _ in wanted}
  for relative, f in sorted(files.items()):
    if relative.split("/", 1)[0] in subsets and relative not in annotated:
      if (f.inode or f.path) in kept:
        duplicates.append(_refusal(relative, SkipReason.DUPLICATE, "the same file as a listed photo"))
      else:
        refused.append(_refusal(relative, SkipReason.NOT_ANNOTATED, "in the folder, not in its annotations file"))
  return Listing(photos, licenses, "coco", used, refused + duplicates)


def _unique_files(wanted: Iterable[Tuple[_File, int, int]]) -> Tuple[List[Photo], List[Photo]]:
  """Photos (one per real file: its own path before a link's) and the duplicates, as refusals."""
  photos: List[Photo] = []
  duplicates: List[Photo] = []
  first: Dict[object, str] = {}
  for f, image_id, license_id in sorted(wanted, key=lambda w: (w[0].via_link, w[0].relative)):
    key = f.inode or f.path
    if key in first:
      duplicates.append(_refusal(f.relative, SkipReason.DUPLICATE, f"the same file as {first[key]}", image_id))
    else:
      first[key] = f.relative
      photos.append(Photo(image_id, f.path, f.relative, license_id))
  return photos, duplicates


def _refusal(relative: str, reason: SkipReason, detail: str, image_id: Optional[int] = None) -> Photo:
  return Photo(_hash_id(relative) if image_id is None else image_id, "", relative, UNKNOWN_LICENSE,
               reason.value, detail)


def _read_annotations(path: str) -> dict:
  try:
    annotations = json.loads(read_bytes(path))
    if not isinstance(annotations, dict) or not isinstance(annotations.get("images"), list):
      raise ValueError("no 'images' list")
    for image in annotations["images"]:
      image["id"] = int(image["id"])
      if not isinstance(image["file_name"], str):
        raise TypeError(f"file_name of image {image['id']} is not a string")
  except (ValueError, KeyError, TypeError, images.Skip) as e:
    raise SourceError(f"{path} is not a COCO instances file: {type(e).__name__}: {e}") from e
  return annotations


def _images_with_categories(annotations: dict, names: Sequence[str], path: str) -> set:
  by_name = {c["name"]: int(c["id"]) for c in annotations.get("categories", [])}
  unknown = sorted(set(names) - set(by_name))
  if unknown:
    raise SourceError(f"unknown COCO categories {unknown} (not in {path}); known: {sorted(by_name)}")
  ids = {by_name[n] for n in names}
  return {int(a["image_id"]) for a in annotations.get("annotations", []) if int(a["category_id"]) in ids}


def image_id_from_name(relative_path: str) -> int:
  """COCO-style numeric file names keep their number; any other name gets its path's stable hash."""
  stem = posixpath.splitext(posixpath.basename(relative_path))[0]
  if stem.isascii() and stem.isdigit() and len(stem) <= 18:
    return int(stem)
  return _hash_id(relative_path)


def _hash_id(relative_path: str, salt: int = 0) -> int:
  data = _encode(relative_path) + (b"\0%d" % salt if salt else b"")
  return int.from_bytes(hashlib.sha256(data).digest()[:8], "big") >> 1


def _with_unique_ids(photos: List[Photo]) -> List[Photo]:
  """Every photo keeps its id unless another claims it too; then each claimant takes its path's hash."""
  claims: Dict[int, int] = {}
  for p in photos:
    claims[p.image_id] = claims.get(p.image_id, 0) + 1
  taken = {i for i, n in claims.items() if n == 1}
  unique = []
  for p in sorted(photos, key=lambda p: p.source):
    if claims[p.image_id] == 1:
      unique.append(p)
      continue
    salt, image_id = 0, _hash_id(p.source)
    while image_id in taken:  # a 63-bit hash collision: practically never, still never a failed run
      salt += 1
      image_id = _hash_id(p.source, salt)
    taken.add(image_id)
    unique.append(dataclasses.replace(p, image_id=image_id))
  return unique


def _encode(text: str) -> bytes:
  # Local names that are not UTF-8 arrive as surrogate escapes (os.fsdecode); keep their bytes.
  return text.encode("utf-8", "surrogateescape")


def _join(root: str, *parts: str) -> str:
  # posixpath also suits gs:// paths; local paths on this project's platforms are POSIX.
  return posixpath.join(root, *parts)
