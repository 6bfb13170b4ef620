"""Copies a local folder (a COCO root) to gs://bucket/prefix: parallel, resumable, with progress.

The folder is read with imaging/tree.py and never left: links inside it are followed (a
file under the link's name), links leading out of it, broken links, loops and special
files are not uploaded and are listed with the reason.

Resuming is by content: an object already in the bucket with the same size and CRC32C
as the local file is skipped, so an interrupted upload restarts where it stopped and a
changed file is sent again. Every upload is verified by GCS against its CRC32C.
"""
import base64
import concurrent.futures
import dataclasses
import os
import re
import threading
from typing import Callable, Dict, List, Optional, Tuple

import google_crc32c

from imaging import tree

_CHUNK = 1 << 20


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class UploadError(RuntimeError):
  """The upload cannot start (bad source, bad destination, missing bucket)."""


@dataclasses.dataclass
class UploadResult:
  uploaded: List[str] = dataclasses.field(default_factory=list)
  skipped: List[str] = dataclasses.field(default_factory=list)   # already there, same size and CRC32C
  failed: Dict[str, str] = dataclasses.field(default_factory=dict)  # relative path -> error
  passed_over: Dict[str, str] = dataclasses.field(default_factory=dict)  # local path -> why it is not uploaded
  bytes_uploaded: int = 0


def split_gcs_uri(uri: str) -> Tuple[str, str]:
  """gs://bucket/some/prefix -> ("bucket", "some/prefix/")."""
  if not uri.startswith("gs://") or len(uri) <= len("gs://"):
    raise UploadError(f"destination must be gs://BUCKET[/PREFIX], got {uri!r}")
  bucket, _, prefix = uri[len("gs://"):].partition("/")
  if not _BUCKET_NAME.fullmatch(bucket):
    raise UploadError(f"destination {uri!r}: {bucket!r} is not a bucket name (3-63 of a-z 0-9 - _ .)")
  prefix = prefix[:-1] if prefix.endswith("/") else prefix
  # Object names are literal: "a/../b" and "a//b" would be stored as such, not where a path would go.
  if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
    raise UploadError(f"destination {uri!r}: the prefix must not hold empty, '.' or '..' segments")
  if any(ord(c) < 32 or c == "\x7f" for c in prefix):
    raise UploadError(f"destination {uri!r}: the prefix must not hold control characters")
  return bucket, (prefix + "/") if prefix else ""


def crc32c_of(path: str) -> str:
  """Base64 CRC32C of a file, as GCS reports it (Blob.crc32c)."""
  checksum = google_crc32c.Checksum()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      checksum.update(chunk)
  return base64.b64encode(checksum.digest()).decode()


def local_files(local_dir: str) -> tree.Listing:
  """Every file under local_dir by imaging/tree.py's rule, and what is passed over."""
  if not os.path.isdir(local_dir):
    raise UploadError(f"not a folder: {local_dir}")
  return tree.walk(local_dir)


def _size(path: str) -> int:
  try:
    return os.path.getsize(path)
  except OSError:
    return 0  # gone since the listing: its upload fails and is reported


def upload(local_dir: str, destination: str, workers: int = 8,
           client_factory: Optional[Callable[[], object]] = None, progress: bool = True) -> UploadResult:
  """Uploads local_dir to destination (gs://bucket/prefix), skipping what is already there."""
  from google.api_core import exceptions
  from tqdm import tqdm

  if workers < 1:
    raise UploadError(f"workers must be >= 1, got {workers}")
  bucket_name, prefix = split_gcs_uri(destination)
  listing = local_files(local_dir)
  client_factory = client_factory or _default_client
  client = client_factory()
  try:
    existing = {b.name: (b.size, b.crc32c) for b in client.list_blobs(bucket_name, prefix=prefix)}
  except exceptions.NotFound as e:
    raise UploadError(f"bucket gs://{bucket_name} does not exist (create it first: "
                      f"gcloud storage buckets create gs://{bucket_name} --location=REGION)") from e
  except exceptions.Forbidden as e:
    raise UploadError(f"no permission to list gs://{bucket_name}: {e.message}") from e

  result = UploadResult(passed_over=dict(listing.passed_over))
  total = sum(_size(entry.path) for entry in listing.files)
  bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"upload to gs://{bucket_name}/{prefix}",
             disable=None if progress else True)
  lock = threading.Lock()
  # One client per thread: the HTTP session underneath is not shared across threads.
  local = threading.local()

  def one(entry: tree.Entry) -> None:
    path, relative = entry.path, entry.relative
    size = _size(path)
    name = prefix + relative
    try:
      crc = crc32c_of(path)
      if existing.get(name) == (size, crc):
        with lock:
          result.skipped.append(relative)
      else:
        if not hasattr(local, "bucket"):
          local.bucket = client_factory().bucket(bucket_name)
        local.bucket.blob(name).upload_from_filename(path, checksum="crc32c")
        with lock:
          result.uploaded.append(relative)
          result.bytes_uploaded += size
    except Exception as e:
      # Reported per file; the next run retries exactly these.
      with lock:
        result.failed[relative] = f"{type(e).__name__}: {e}"
    with lock:
      bar.update(size)

  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    list(pool.map(one, listing.files))
  bar.close()
  result.uploaded.sort()
  result.skipped.sort()
  return result


def _default_client():
  from google.cloud import storage
  return storage.Client()
