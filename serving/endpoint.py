"""Colorizes photos with a deployed model over REST: TF Serving, or a Vertex AI Endpoint.

Every request is what the SavedModel's default signature takes (trainer/export.py):
  POST <...>:predict  {"instances": [{"b64": <photo>}, ...]}
  ->  {"predictions": [{"b64": <colorized JPEG>}, ...]}
The target is either a REST :predict URL (TF Serving: http://HOST:8501/v1/models/NAME:predict)
or a Vertex AI Endpoint resource, projects/P/locations/L/endpoints/E, called at
https://L-aiplatform.googleapis.com/v1/...:predict with Google's default credentials.

Photos are packed into requests of at most REQUEST_LIMIT bytes (Vertex AI refuses larger
ones) and MAX_INSTANCES photos. HTTP 429 and 503 (overloaded, scaling up) are retried
with exponential backoff, or after the server's Retry-After (seconds or an HTTP date,
0 to 60 s; anything else is ignored); any other failure is an EndpointError, one line
that says what the server answered or why it could not be reached. The server decodes
all photos of a request together and fails the request whole when one is unreadable
(HTTP 400), so such a request is sent again one photo at a time: the others are
colorized and the bad one is reported as PhotoRejectedError.

Answers are untrusted input: each attempt has one deadline for the whole answer (a server
that never answers, or trickles bytes without end, is stopped), and an answer larger than
`answer_limit` is cut off. Each photo's answer must be valid base64 of a complete JPEG of
the photo's own size (what the signature promises); anything else is a PhotoRejectedError
for that photo, so no output file is written for it.
"""
import base64
import binascii
import dataclasses
import email.utils
import io
import json
import random
import re
import threading
import time
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar
import urllib.parse
import warnings

import requests

Key = TypeVar("Key")

VERTEX_RESOURCE = re.compile(r"^projects/([^/]+)/locations/([a-z0-9-]+)/endpoints/([^/]+)$")
# Vertex AI online prediction's request size limit: 1.5 MB.
REQUEST_LIMIT = 1_500_000
MAX_INSTANCES = 8
RETRY_STATUSES = (429, 503)
MAX_RETRY_AFTER = 60.0  # seconds
ANSWER_LIMIT = 512_000_000  # bytes of one answer: a request's photos colorized, as base64 JPEGs
_CHUNK = 1 << 16
_JPEG_MAGIC = b"\xff\xd8\xff"
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
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
  deadline_seconds: float = 600.0  # for one attempt's whole answer
  answer_limit: int = ANSWER_LIMIT


def connect(target: str, credentials=None, api_root: Optional[str] = None) -> Endpoint:
  """An Endpoint for a :predict URL or a Vertex AI endpoint resource name.

  credentials: for a Vertex endpoint; default: Google's application default credentials.
  api_root: where the Vertex AI API is (default https://LOCATION-aiplatform.googleapis.com).
  """
  if target.startswith(("http://", "https://")):
    try:
      url = urllib.parse.urlsplit(target)
      url.port  # noqa: B018 (raises ValueError when out of range or not a number)
    except ValueError as e:
      raise EndpointError(f"--endpoint {target!r} is not a valid URL ({e})") from e
    if not url.hostname or not url.path.endswith(":predict") or re.search(r"\s", target):
      raise EndpointError(f"--endpoint {target!r}: a REST URL needs a host and must end in :predict, "
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
    except (google.auth.exceptions.DefaultCredentialsError, OSError, ValueError) as e:  # a key path that is no key
      raise EndpointError(f"no Google Cloud credentials for {target}: run `gcloud auth application-default login` "
                          f"(or set GOOGLE_APPLICATION_CREDENTIALS). ({e})") from e
  root = api_root or f"https://{match.group(2)}-aiplatform.googleapis.com"
  return Endpoint(url=f"{root.rstrip('/')}/v1/{target}:predict", session=auth_requests.AuthorizedSession(credentials))


def colorize(endpoint: Endpoint, photos: Iterable[Tuple[Key, bytes]]
             ) -> Iterator[Tuple[Key, bytes | PhotoRejectedError]]:
  """(key, encoded photo) -> (key, colorized JPEG or PhotoRejectedError), streaming, in input order.

  A JPEG yielded is complete and of the photo's own size.
  """
  pending: List[Tuple[Key, Dict[str, str], Optional[Tuple[int, int]]]] = []
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
    pending.append((key, instance, _image_size(data)))
    size += needed
  yield from _send(endpoint, pending)


def _send(endpoint: Endpoint, batch: List[Tuple[Key, Dict[str, str], Optional[Tuple[int, int]]]]):
  if not batch:
    return
  status, body = _post(endpoint, {"instances": [instance for _, instance, _ in batch]})
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
  for (key, _, photo_size), prediction in zip(batch, predictions, strict=True):
    if not (isinstance(prediction, dict) and isinstance(prediction.get("b64"), str)):
      raise EndpointError(f"{endpoint.url} answered a prediction without {{\"b64\": ...}} (is the deployed model "
                          f"this project's, with its REST signature as default?): {json.dumps(prediction)[:300]}")
    try:
      jpeg = base64.b64decode(prediction["b64"], validate=True)
    except (binascii.Error, ValueError):
      yield key, PhotoRejectedError("the endpoint answered malformed base64")
      continue
    problem = _answer_problem(jpeg, photo_size)
    yield key, PhotoRejectedError(f"the endpoint answered {problem}") if problem else jpeg


def _image_size(data: bytes) -> Optional[Tuple[int, int]]:
  """(width, height) from an encoded photo's header (what the colorized answer must have); None if unreadable."""
  from PIL import Image
  from PIL import UnidentifiedImageError
  try:
    with warnings.catch_warnings():
      # Callers checked the photo (serving/photos.upright); PIL's bomb warning would repeat it.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      return Image.open(io.BytesIO(data)).size
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
    return None  # sent all the same: the server says what is wrong with it


def _answer_problem(jpeg: bytes, photo_size: Optional[Tuple[int, int]]) -> str:
  """What is wrong with a colorized answer for a photo of photo_size, or '' when it is a complete JPEG of that size."""
  from PIL import Image
  from PIL import UnidentifiedImageError
  if photo_size is None:
    return "a colorized photo for a photo whose size cannot be read here, so it cannot be checked"
  if not jpeg.startswith(_JPEG_MAGIC):
    return f"something else than a JPEG ({jpeg[:16]!r}...)"
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(jpeg))
    if image.size != photo_size:  # from the header, before anything is decoded
      return f"a {image.size[0]}x{image.size[1]} image for a {photo_size[0]}x{photo_size[1]} photo"
    image.load()
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
    return f"a JPEG that does not decode ({e})"
  if image.mode != "RGB":
    return f"a {image.mode} JPEG, not RGB"
  return ""


def _post(endpoint: Endpoint, body: Dict[str, Any]) -> Tuple[int, Any]:
  """-> (200 or 400, parsed body); retries 429/503; anything else is an EndpointError."""
  data = json.dumps(body, separators=(",", ":")).encode("ascii")
  for attempt in range(1, endpoint.max_attempts + 1):
    status, headers, text = _exchange(endpoint, data)
    try:
      parsed = json.loads(text)
    except ValueError:
      parsed = text[:300].decode("utf-8", "replace")
    if status in (200, 400):
      return status, parsed
    if status not in RETRY_STATUSES:
      hint = {401: " (credentials refused)", 403: " (no permission to predict on this endpoint)",
              404: " (no such endpoint or model)"}.get(status, "")
      raise EndpointError(f"{endpoint.url} answered HTTP {status}{hint}: {_message(parsed)}")
    if attempt == endpoint.max_attempts:
      raise EndpointError(f"{endpoint.url} is still overloaded (HTTP {status}) after "
                          f"{attempt} attempts: {_message(parsed)}")
    time.sleep(_delay(headers.get("Retry-After"), attempt, endpoint.backoff_seconds))
  raise AssertionError("unreachable")


def _exchange(endpoint: Endpoint, data: bytes) -> Tuple[int, Any, bytes]:
  """One POST -> (status, headers, body), whole within the deadline.

  A socket timeout bounds each read, not the answer: a server that trickles a byte now
  and then would hold a read for ever. So the exchange runs in a daemon thread, given up
  at the deadline (the command then ends, and the thread with it).
  """
  outcome: Dict[str, Any] = {}
  done = threading.Event()

  def exchange():
    try:
      outcome["answer"] = _receive(endpoint, data)
    except Exception as e:  # handed to the caller's thread
      outcome["error"] = e
    finally:
      done.set()

  threading.Thread(target=exchange, name="endpoint-request", daemon=True).start()
  if not done.wait(endpoint.deadline_seconds):
    raise EndpointError(f"{endpoint.url} did not finish its answer within {endpoint.deadline_seconds:g} s")
  if "error" in outcome:
    raise outcome["error"]
  return outcome["answer"]


def _receive(endpoint: Endpoint, data: bytes) -> Tuple[int, Any, bytes]:
  try:
    response = endpoint.session.post(endpoint.url, data=data, timeout=endpoint.deadline_seconds, stream=True,
                                     headers={"Content-Type": "application/json"})
    with response:
      length = response.headers.get("Content-Length", "")
      if length.isdigit() and int(length) > endpoint.answer_limit:
        raise EndpointError(f"{endpoint.url} announced an answer of {int(length):,} bytes, over the "
                            f"{endpoint.answer_limit:,} accepted")
      body = bytearray()
      for chunk in response.iter_content(_CHUNK):
        body += chunk
        if len(body) > endpoint.answer_limit:
          raise EndpointError(f"{endpoint.url} sent more than {endpoint.answer_limit:,} bytes in one answer; "
                              "stopped reading")
      return response.status_code, response.headers, bytes(body)
  except requests.RequestException as e:
    raise EndpointError(f"cannot reach {endpoint.url}: {_network_reason(e, endpoint.deadline_seconds)}") from e


def _network_reason(e: requests.RequestException, deadline: float) -> str:
  """One readable line for a requests/urllib3 failure (whose text is a nest of reprs)."""
  if isinstance(e, requests.exceptions.ConnectTimeout):
    return f"no connection within {deadline:g} s"
  if isinstance(e, (requests.exceptions.ReadTimeout, requests.exceptions.Timeout)):
    return f"no answer within {deadline:g} s"
  if isinstance(e, requests.exceptions.SSLError):
    return "the TLS handshake failed (certificate or protocol)"
  text = str(e)
  if "NameResolutionError" in text or "Name or service not known" in text or "nodename nor servname" in text:
    return "the host name does not resolve"
  found = _ERRNO_TEXT.search(text)
  if found:
    return found.group(1).strip().lower()
  if isinstance(e, requests.exceptions.ChunkedEncodingError):
    return "the connection broke off in the middle of the answer"
  if isinstance(e, requests.exceptions.ConnectionError):
    return "the connection failed or was closed without an answer"
  return type(e).__name__


def _delay(retry_after: Optional[str], attempt: int, backoff: float) -> float:
  """Retry-After when the server says it (seconds or an HTTP date, up to a minute), else exponential
  backoff with jitter. Negative, fractional-looking, NaN or infinite values are not seconds.
  """
  value = (retry_after or "").strip()
  if value.isascii() and value.isdigit():
    return min(float(value), MAX_RETRY_AFTER)
  if value:
    try:
      when = email.utils.parsedate_to_datetime(value)
      return min(max(when.timestamp() - time.time(), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError, OverflowError):
      pass
  return min(backoff * 2 ** (attempt - 1), MAX_RETRY_AFTER) * random.uniform(0.5, 1.0)


def _message(body: Any) -> str:
  """The error text of a TF Serving ({"error": "..."}) or Google API ({"error": {"message": ...}}) reply."""
  error = body.get("error") if isinstance(body, dict) else None
  if isinstance(error, dict):
    error = error.get("message")
  return str(error if error is not None else body)[:500]
