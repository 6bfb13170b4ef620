"""TF Serving's REST :predict mapping (row format) in front of a loaded SavedModel, and a loopback server.

Follows tensorflow_serving/util/json_tensor.cc: the request's "instances" are batched along
a new first dimension; with a single-input signature each instance is the bare value,
otherwise an object keyed by input name; a {"b64": ...} object is base64-decoded into a
string tensor. In the response, string outputs whose name ends in "_bytes" are written as
{"b64": ...}; a single-output signature gives bare values per row, several give objects.
Errors are {"error": message} with HTTP 400, as TF Serving answers an InvalidArgument.
Vertex AI's prebuilt TensorFlow containers serve the same body (and add fields beside
"predictions"), so the loopback server stands for either.
"""
import base64
import http.server
import json
import threading
from typing import Any, Dict, List, Tuple

import tensorflow as tf

BYTES_SUFFIX = "_bytes"


class RestError(Exception):
  """What TF Serving answers with HTTP 400 and {"error": message}."""


def predict(loaded, body: Dict[str, Any]) -> Dict[str, Any]:
  """Runs a :predict request body through `loaded` (tf.saved_model.load) as TF Serving would."""
  signature_name = body.get("signature_name", tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)
  if signature_name not in loaded.signatures:
    raise RestError(f"Serving signature name: \"{signature_name}\" not found in signature def")
  signature = loaded.signatures[signature_name]
  specs = signature.structured_input_signature[1]
  instances = body.get("instances")
  if not isinstance(instances, list) or not instances:
    raise RestError("Missing 'inputs' or 'instances' key" if instances is None else "No values in 'instances' array")
  columns: Dict[str, List[Any]] = {name: [] for name in specs}
  for i, instance in enumerate(instances):
    named = isinstance(instance, dict) and not _is_b64(instance)
    if not named and len(specs) > 1:
      raise RestError("instances is a plain list, but expecting list of objects as multiple input tensors required")
    values = instance if named else {next(iter(specs)): instance}
    if set(values) != set(specs):
      raise RestError(f"Failed to process element: {i} of 'instances' list. keys must be equal to: {sorted(specs)}")
    for name, value in values.items():
      columns[name].append(_decode(value, specs[name].dtype))
  try:
    inputs = {name: tf.constant(values, dtype=specs[name].dtype) for name, values in columns.items()}
    outputs = signature(**inputs)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    raise RestError(getattr(e, "message", str(e))) from e
  rows = [{} for _ in instances]
  for name, tensor in outputs.items():
    for row, value in zip(rows, tensor.numpy(), strict=True):
      row[name] = _encode(value, name, tensor.dtype)
  return {"predictions": [row if len(outputs) > 1 else next(iter(row.values())) for row in rows]}


def _is_b64(value) -> bool:
  return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode(value, dtype):
  if isinstance(value, dict):
    if dtype != tf.string or not _is_b64(value):
      raise RestError(f"JSON Value: {json.dumps(value)[:80]} not formatted correctly for base64 data")
    try:
      return base64.b64decode(value["b64"], validate=True)
    except ValueError as e:
      raise RestError("Unable to base64 decode") from e
  if isinstance(value, list):
    return [_decode(v, dtype) for v in value]
  return value


def _encode(value, name: str, dtype):
  if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:
    return [_encode(v, name, dtype) for v in value]
  if dtype == tf.string:
    return {"b64": base64.b64encode(value).decode()} if name.endswith(BYTES_SUFFIX) else value.decode()
  return value.item() if hasattr(value, "item") else value


class Server:
  """A loopback HTTP server answering POST <any path>:predict with `predict`, one request at a
  time (like one model replica). `faults` is a list of HTTP statuses to answer first, one per
  request, before serving normally (429/503 to test retries)."""

  def __init__(self, loaded, faults: Tuple[int, ...] = ()):
    self.loaded = loaded
    self.faults = list(faults)
    self.requests: List[Dict[str, Any]] = []
    self.lock = threading.Lock()
    outer = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with outer.lock:
          outer.requests.append({"path": self.path, "size": len(raw),
                                 "authorization": self.headers.get("Authorization")})
          if outer.faults:
            status = outer.faults.pop(0)
            return self._reply(status, {"error": {"code": status, "message": "try again later"}},
                               {"Retry-After": "0"})
          if not self.path.endswith(":predict"):
            return self._reply(404, {"error": f"no route for {self.path}"})
          try:
            return self._reply(200, predict(outer.loaded, json.loads(raw)))
          except (RestError, json.JSONDecodeError) as e:
            return self._reply(400, {"error": str(e)})

      def _reply(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
          self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

      def log_message(self, *args):
        pass

    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._server.shutdown()
    self._server.server_close()
