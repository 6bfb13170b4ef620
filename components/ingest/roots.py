"""The data root checked once, up front, in seconds: missing, not a folder, no access, no credentials, no network.

Light to import (no Beam, no TensorFlow), so `colorize run` / `colorize ingest` call it
before anything heavy, and the ingestion's listing calls it again in the driver and the
executor. Every failure is one SourceError line naming the path and what is missing.

gs:// roots are probed with the google-cloud-storage client (which honours
STORAGE_EMULATOR_HOST), with short timeouts and no retries: without this, a missing
login or an unreachable endpoint made Beam retry for minutes and then blame a timeout.
Without Application Default Credentials the probe tries anonymous access (public
buckets), and says that credentials are missing when that is refused.
"""
import os
import posixpath
from typing import Tuple

from imaging import tree

GCS_TIMEOUT = (5.0, 15.0)  # connect, read (seconds), per request


class SourceError(ValueError):
  """The input cannot be listed (missing, empty, no access, bad annotations or filter); the message names the
  path, on one line whatever the names in it hold.
  """

  def __str__(self) -> str:
    return tree.printable(super().__str__())


def strip(root: str) -> str:
  return root.rstrip("/") if root not in ("/", "gs://") else root


def resolve_local(root: str) -> str:
  """The root with every link resolved, after checking it is a readable folder."""
  try:
    real = os.path.realpath(root, strict=True)
  except OSError as e:
    raise SourceError(f"data root does not exist: {root} ({e.strerror})") from e
  if not os.path.isdir(real):
    raise SourceError(f"data root is not a folder: {root}")
  if not os.access(real, os.R_OK | os.X_OK):
    raise SourceError(f"data root cannot be read (permission denied): {root}")
  return real


def split_gcs(uri: str) -> Tuple[str, str]:
  """gs://bucket/some/prefix -> (bucket, "some/prefix")."""
  bucket, _, prefix = uri[len("gs://"):].partition("/")
  if not bucket:
    raise SourceError(f"a gs:// data root needs a bucket name: {uri}")
  return bucket, prefix.strip("/")


def gcs_client():
  """(client, note): authenticated with Application Default Credentials, or anonymous with a note why."""
  import google.auth
  from google.auth import exceptions as auth_exceptions
  from google.cloud import storage

  if os.environ.get("STORAGE_EMULATOR_HOST"):
    return storage.Client.create_anonymous_client(), ""
  try:
    credentials, project = google.auth.default()
  except auth_exceptions.DefaultCredentialsError:
    return storage.Client.create_anonymous_client(), (
        "no Google Cloud credentials found (run `gcloud auth application-default login` or set "
        "GOOGLE_APPLICATION_CREDENTIALS)")
  return storage.Client(project=project, credentials=credentials), ""


def check_gcs(root: str) -> None:
  """One listing request under the root; a SourceError that names what is missing when it fails."""
  from google.api_core import exceptions as api_exceptions
  from google.auth import exceptions as auth_exceptions
  import requests

  bucket, prefix = split_gcs(root)
  client, no_credentials = gcs_client()
  endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or "https://storage.googleapis.com"
  try:
    blobs = client.list_blobs(bucket, prefix=prefix + "/" if prefix else None, max_results=1,
                              timeout=GCS_TIMEOUT, retry=None)
    found = next(iter(blobs), None)
  except api_exceptions.NotFound as e:
    raise SourceError(f"bucket gs://{bucket} does not exist (data root {root})") from e
  except (api_exceptions.Unauthorized, api_exceptions.Forbidden) as e:
    what = no_credentials or "the credentials in use have no permission to list it"
    raise SourceError(f"cannot list {root}: {what} ({e.code} from Cloud Storage)") from e
  except (requests.exceptions.RequestException, auth_exceptions.TransportError, OSError) as e:
    network = f"Cloud Storage at {endpoint} cannot be reached (network: {type(e).__name__})"
    if no_credentials:
      raise SourceError(f"cannot list {root}: {no_credentials}, and {network} anonymously") from e
    raise SourceError(f"cannot list {root}: {network}") from e
  if found is None:
    raise SourceError(f"data root does not exist: {root} (no objects under it)")


def check(root: str) -> str:
  """The root, stripped and (local) resolved through links; SourceError when it cannot be used."""
  root = strip(root)
  if root.startswith("gs://"):
    check_gcs(root)
    return root
  if "://" in root:
    raise SourceError(f"data root must be a local folder or gs://BUCKET/PATH, got {root}")
  return resolve_local(root)


def relative_inside(*parts: str) -> str:
  """posixpath.join(*parts) (a path below the root) normalised; '' when it is absolute or climbs out of the root."""
  joined = posixpath.join(*parts)
  if posixpath.isabs(joined) or "\0" in joined:
    return ""
  normal = posixpath.normpath(joined)
  if normal in (".", "..") or normal.startswith("../"):
    return ""
  return normal
