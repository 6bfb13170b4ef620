"""Colorizes photos with a deployed model over REST: TF Serving, or a Vertex AI Endpoint.

Every request is what the SavedModel's default signature takes (trainer/export.py):
  POST <...>:predict  {"instances": [{"b64": <photo>}, ...]}
  ->  {"predictions": [{"b64": <colorized JPEG>}, ...]}
The target is either a REST :predict URL (TF Serving: http://HOST:8501/v1/models/NAME:predict)
or a Vertex AI Endpoint resource, projects/P/locations/L/endpoints/E, called at
https://L-aiplatform.googleapis.com/v1/...:predict with Google's default credentials.

Photos are packed into requests of at most REQUEST_LIMIT bytes (Vertex AI refuses larger
ones) and MAX_INSTANCES photos. HTTP 429 and 503 (overloaded, scaling up) are retried
with exponential backoff; any other failure is an EndpointError that says what the
server answered. The server decodes all photos of a request together and fails the
request whole when one is unreadable (HTTP 400), so such a request is sent again one
photo at a time: the others are colorized and the bad one is reported as PhotoRejectedError.
"""
import base64
import dataclasses
import json
import random
import re
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar
import urllib.parse

import requests

Key = TypeVar("Key")

VERTEX_RESOURCE = re.compile(r"^projects/([^/]+)/locations/([a-z0-9-]+)/endpoints/([^/]+)$")
# Vertex AI online prediction's request size limit: 1.5 MB.
REQUEST_LIMIT = 1_500_000
MAX_INSTANCES = 8
RETRY_STATUSES = (429, 503)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_ENVELOPE = len(json.dumps({"instances": []}, separators=(",", ":")))


class EndpointError(Exception):
  """The endpoint cannot be used (unreachable, no credentials, refused, overloaded for good)."""


class PhotoRejectedError(Exception):
  """The endpoint refused one photo (or it cannot be sent); the message says why."""


@dataclasses.dataclass
class Endpoint:
  url: str
  session: requests.Session
  request_limit: int = REQUEST_LIMIT
  max_instances: int = MAX_INSTANCES
  max_attempts: int = 6
  backoff_seconds: float = 1.0
  timeout_seconds: float = 600.0


def connect(target: str, credentials=None, api_root: Optional[str] = None) -> Endpoint:
  """An Endpoint for a :predict URL or a Vertex AI endpoint resource name.

  credentials: for a Vertex endpoint; default: Google's application default credentials.
  api_root: where the Vertex AI API is (default https://LOCATION-aiplatform.googleapis.com).
  """
  if target.startswith(("http://", "https://")):
    url = urllib.parse.urlsplit(target)
    if not url.netloc or not url.path.endswith(":predict"):
      raise EndpointError(f"--endpoint {target!r}: a REST URL must end in :predict, "
                          "e.g. http://localhost:8501/v1/models/colorize:predict")
    return Endpoint(url=target, session=requests.Session())
  match = VERTEX_RESOURCE.match(target)
  if not match:
    raise EndpointError(f"--endpoint {target!r} is neither a REST :predict URL "
                        "(http://HOST:8501/v1/models/NAME:predict) nor a Vertex AI endpoint "
                        "(projects/PROJECT/locations/REGION/endpoints/ID)")
  import google.auth
  from google.auth.transport import requests as auth_requests
  if credentials is None:
    try:
      credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError as e:
      raise EndpointError(f"no Google Cloud credentials for {target}: run `gcloud auth application-default login` "
                          f"(or set GOOGLE_APPLICATION_CREDENTIALS). ({e})") from e
  root = api_root or f"https://{match.group(2)}-aiplatform.googleapis.com"
  return Endpoint(url=f"{root.rstrip('/')}/v1/{target}:predict", session=auth_requests.AuthorizedSession(credentials))


def colorize(endpoint: Endpoint, photos: Iterable[Tuple[Key, bytes]]
             ) -> Iterator[Tuple[Key, bytes | PhotoRejectedError]]:
  """(key, encoded photo) -> (key, colorized JPEG or PhotoRejectedError), streaming, in input order."""
  pending: List[Tuple[Key, Dict[str, str]]] = []
  size = _ENVELOPE
  for key, data in photos:
    instance = {"b64": base64.b64encode(data).decode("ascii")}
    needed = len(json.dumps(instance, separators=(",", ":"))) + 1  # and a comma
    if _ENVELOPE + needed > endpoint.request_limit:
      yield from _send(endpoint, pending)
      pending, size = [], _ENVELOPE
      yield key, PhotoRejectedError(f"{len(data) / 1e6:.2f} MB is too large for one request to the endpoint "
                               f"(at most {endpoint.request_limit / 1e6:.2f} MB after base64); "
                               "colorize it with a local --model")
      continue
    if pending and (size + needed > endpoint.request_limit or len(pending) >= endpoint.max_instances):
      yield from _send(endpoint, pending)
      pending, size = [], _ENVELOPE
    pending.append((key, instance))
    size += needed
  yield from _send(endpoint, pending)


def _send(endpoint: Endpoint, batch: List[Tuple[Key, Dict[str, str]]]):
  if not batch:
    return
  status, body = _post(endpoint, {"instances": [instance for _, instance in batch]})
  if status == 400:
    if len(batch) > 1:
      for item in batch:
        yield from _send(endpoint, [item])
    else:
      yield batch[0][0], PhotoRejectedError(f"the endpoint refused it: {_message(body)}")
    return
  predictions = body.get("predictions") if isinstance(body, dict) else None
  if not isinstance(predictions, list) or len(predictions) != len(batch):
    raise EndpointError(f"{endpoint.url} answered {len(batch)} photos with something else than "
                        f"{len(batch)} predictions: {json.dumps(body)[:300]}")
  for (key, _), prediction in zip(batch, predictions, strict=True):
    if not (isinstance(prediction, dict) and isinstance(prediction.get("b64"), str)):
      raise EndpointError(f"{endpoint.url} answered a prediction without {{\"b64\": ...}} (is the deployed model "
                          f"this project's, with its REST signature as default?): {json.dumps(prediction)[:300]}")
    yield key, base64.b64decode(prediction["b64"])


def _post(endpoint: Endpoint, body: Dict[str, Any]) -> Tuple[int, Any]:
  """-> (200 or 400, parsed body); retries 429/503; anything else is an EndpointError."""
  data = json.dumps(body, separators=(",", ":")).encode("ascii")
  for attempt in range(1, endpoint.max_attempts + 1):
    try:
      response = endpoint.session.post(endpoint.url, data=data, timeout=endpoint.timeout_seconds,
                                       headers={"Content-Type": "application/json"})
    except requests.RequestException as e:
      raise EndpointError(f"cannot reach {endpoint.url}: {e}") from e
    try:
      parsed = response.json()
    except ValueError:
      parsed = response.text[:300]
    if response.status_code in (200, 400):
      return response.status_code, parsed
    if response.status_code not in RETRY_STATUSES:
      hint = {401: " (credentials refused)", 403: " (no permission to predict on this endpoint)",
              404: " (no such endpoint or model)"}.get(response.status_code, "")
      raise EndpointError(f"{endpoint.url} answered HTTP {response.status_code}{hint}: {_message(parsed)}")
    if attempt == endpoint.max_attempts:
      raise EndpointError(f"{endpoint.url} is still overloaded (HTTP {response.status_code}) after "
                          f"{attempt} attempts: {_message(parsed)}")
    time.sleep(_delay(response, attempt, endpoint.backoff_seconds))
  raise AssertionError("unreachable")


def _delay(response: requests.Response, attempt: int, backoff: float) -> float:
  """Retry-After when the server says it (in seconds), else exponential backoff with jitter."""
  try:
    return min(float(response.headers["Retry-After"]), 60.0)
  except (KeyError, ValueError):
    return min(backoff * 2 ** (attempt - 1), 60.0) * random.uniform(0.5, 1.0)


def _message(body: Any) -> str:
  """The error text of a TF Serving ({"error": "..."}) or Google API ({"error": {"message": ...}}) reply."""
  error = body.get("error") if isinstance(body, dict) else None
  if isinstance(error, dict):
    error = error.get("message")
  return str(error if error is not None else body)[:500]
