"""Copies a local folder (a COCO root) to gs://bucket/prefix: parallel, resumable, with progress.

Resuming is by content: an object already in the bucket with the same size and CRC32C
as the local file is skipped, so an interrupted upload restarts where it stopped and a
changed file is sent again. Every upload is verified by GCS against its CRC32C.
"""
import base64
import concurrent.futures
import dataclasses
import os
import threading
from typing import Callable, Dict, List, Optional, Tuple

import google_crc32c

_CHUNK = 1 << 20


class UploadError(RuntimeError):
  """The upload cannot start (bad source, bad destination, missing bucket)."""


@dataclasses.dataclass
class UploadResult:
  uploaded: List[str] = dataclasses.field(default_factory=list)
  skipped: List[str] = dataclasses.field(default_factory=list)   # already there, same size and CRC32C
  failed: Dict[str, str] = dataclasses.field(default_factory=dict)  # relative path -> error
  bytes_uploaded: int = 0


def split_gcs_uri(uri: str) -> Tuple[str, str]:
  """gs://bucket/some/prefix -> ("bucket", "some/prefix/")."""
  if not uri.startswith("gs://") or len(uri) <= len("gs://"):
    raise UploadError(f"destination must be gs://BUCKET[/PREFIX], got {uri!r}")
  bucket, _, prefix = uri[len("gs://"):].partition("/")
  prefix = prefix.strip("/")
  return bucket, (prefix + "/") if prefix else ""


def crc32c_of(path: str) -> str:
  """Base64 CRC32C of a file, as GCS reports it (Blob.crc32c)."""
  checksum = google_crc32c.Checksum()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      checksum.update(chunk)
  return base64.b64encode(checksum.digest()).decode()


def local_files(local_dir: str) -> List[str]:
  """Relative paths ('/'-separated) of every file under local_dir, sorted."""
  if not os.path.isdir(local_dir):
    raise UploadError(f"not a folder: {local_dir}")
  files = []
  for root, dirs, names in os.walk(local_dir):
    dirs.sort()
    for name in sorted(names):
      files.append(os.path.relpath(os.path.join(root, name), local_dir).replace(os.sep, "/"))
  return files


def upload(local_dir: str, destination: str, workers: int = 8,
           client_factory: Optional[Callable[[], object]] = None, progress: bool = True) -> UploadResult:
  """Uploads local_dir to destination (gs://bucket/prefix), skipping what is already there."""
  from google.api_core import exceptions
  from tqdm import tqdm

  if workers < 1:
    raise UploadError(f"workers must be >= 1, got {workers}")
  bucket_name, prefix = split_gcs_uri(destination)
  files = local_files(local_dir)
  client_factory = client_factory or _default_client
  client = client_factory()
  try:
    existing = {b.name: (b.size, b.crc32c) for b in client.list_blobs(bucket_name, prefix=prefix)}
  except exceptions.NotFound as e:
    raise UploadError(f"bucket gs://{bucket_name} does not exist (create it first: "
                      f"gcloud storage buckets create gs://{bucket_name} --location=REGION)") from e
  except exceptions.Forbidden as e:
    raise UploadError(f"no permission to list gs://{bucket_name}: {e.message}") from e

  result = UploadResult()
  total = sum(os.path.getsize(os.path.join(local_dir, f)) for f in files)
  bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"upload to gs://{bucket_name}/{prefix}",
             disable=None if progress else True)
  lock = threading.Lock()
  # One client per thread: the HTTP session underneath is not shared across threads.
  local = threading.local()

  def one(relative: str) -> None:
    path = os.path.join(local_dir, relative)
    size = os.path.getsize(path)
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
    list(pool.map(one, files))
  bar.close()
  result.uploaded.sort()
  result.skipped.sort()
  return result


def _default_client():
  from google.cloud import storage
  return storage.Client()
