"""`colorize photos --endpoint`: real historical photos sent to the real SavedModel behind TF Serving's
REST mapping on a loopback server (tests/tf_serving_rest.py), as TF Serving or Vertex AI serve it."""
import base64
import io
import json
import shutil
import subprocess
import sys

from click.testing import CliRunner
from cloud_fixtures import REPO
from cloud_fixtures import offline_command
import numpy as np
from PIL import Image
import pytest
from skimage import color as skcolor
import tensorflow as tf
import tf_serving_rest

from cli import main as cli
from schemas import signatures
from serving import endpoint as endpoint_lib

pytest_plugins = ("trainer_fixtures",)

RESOURCE = "projects/colorize-test/locations/europe-west4/endpoints/1234567890"


def _l_star(image):
  return skcolor.rgb2lab(np.asarray(image.convert("RGB")))[..., 0]


@pytest.fixture(scope="module")
def loaded(serving_model):
  return tf.saved_model.load(str(serving_model[1]))


def _fast(endpoint, **changes):
  """No waiting between retries in tests."""
  endpoint.backoff_seconds = 0.0
  for key, value in changes.items():
    setattr(endpoint, key, value)
  return endpoint


def test_photos_command_colorizes_real_photos_through_an_endpoint(loaded, historical, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  names = ["Detroit_circa_1915.jpg", "Audrey_Hepburn.jpg", "Helen_Keller_meeting_Charlie_Chaplin_in_1919.jpg",
           "Ansel_Adams_Moore_Photography.jpeg"]
  for name in names:
    shutil.copy(historical / name, inputs / name)
  Image.open(historical / "Louis_Armstrong_practicing_in_his_dressing_room_ca_1946.jpg").convert("L").save(
      inputs / "louis_gray.png")
  data = (historical / "Detroit_circa_1915.jpg").read_bytes()
  (inputs / "truncated.jpg").write_bytes(data[:len(data) // 3])
  out = tmp_path / "out"
  with tf_serving_rest.Server(loaded) as server:
    result = CliRunner().invoke(cli.main, ["photos", str(inputs), "-o", str(out), "--endpoint",
                                           f"{server.url}/v1/models/colorize:predict"])
  # The truncated photo is skipped before anything is sent; the others are colorized.
  assert result.exit_code == 1, result.output
  assert "truncated.jpg" in result.output and "Colorized 5 photo(s)" in result.output
  assert "skipped 1 (listed above)" in result.output
  assert not (out / "truncated.jpg").exists()
  single = loaded.signatures[signatures.IMAGE_SIGNATURE]
  for name in names:
    colorized = (out / name).read_bytes()
    # What the local SavedModel makes of the same photo, byte for byte.
    assert colorized == single(image_bytes=tf.constant((inputs / name).read_bytes()))[signatures.JPEG_OUTPUT].numpy()
  png = Image.open(out / "louis_gray.png")
  source = Image.open(inputs / "louis_gray.png")
  assert png.format == "PNG" and png.size == source.size
  assert np.abs(_l_star(png) - _l_star(source)).mean() < 1.0  # through the endpoint's quality-95 JPEG
  # Packed: 5 photos of ~100-150 kB in one request, within the limit.
  assert len(server.requests) == 1 and server.requests[0]["size"] <= endpoint_lib.REQUEST_LIMIT


def test_requests_stay_under_the_size_limit_and_too_large_photos_are_reported(loaded, historical):
  photos = sorted(historical.iterdir())
  limit = 400_000  # the largest photo (443 kB, 591 kB in base64) cannot go; the rest go in several requests
  with tf_serving_rest.Server(loaded) as server:
    endpoint = _fast(endpoint_lib.connect(f"{server.url}/v1/models/colorize:predict"), request_limit=limit,
                     max_instances=3)
    results = list(endpoint_lib.colorize(endpoint, ((p.name, p.read_bytes()) for p in photos)))
  assert [key for key, _ in results] == [p.name for p in photos]  # every photo answered, in order
  rejected = {key: str(r) for key, r in results if isinstance(r, endpoint_lib.PhotoRejectedError)}
  assert list(rejected) == [p.name for p in photos if p.stat().st_size * 4 / 3 > limit]
  assert "too large for one request" in next(iter(rejected.values()))
  assert all(request["size"] <= limit for request in server.requests)
  assert len(server.requests) >= (len(photos) - len(rejected)) / 3
  for (key, jpeg), photo in zip(results, photos, strict=True):
    if key not in rejected:
      assert Image.open(io.BytesIO(jpeg)).size == Image.open(photo).size, key


def test_an_undecodable_photo_fails_alone_not_its_batch(loaded, historical):
  good = (historical / "Detroit_circa_1915.jpg").read_bytes()
  with tf_serving_rest.Server(loaded) as server:
    endpoint = _fast(endpoint_lib.connect(f"{server.url}/v1/models/colorize:predict"))
    results = dict(endpoint_lib.colorize(endpoint, [("a", good), ("broken", b"\xff\xd8\xff not a jpeg"), ("c", good)]))
  assert isinstance(results["broken"], endpoint_lib.PhotoRejectedError)
  assert "the endpoint refused it" in str(results["broken"])
  assert results["a"] == results["c"] and results["a"][:3] == b"\xff\xd8\xff"
  # The batch of 3, refused whole (HTTP 400), then each photo alone.
  assert len(server.requests) == 4


def test_overload_is_retried_and_then_a_clear_error(loaded, historical):
  photo = (historical / "Helen_Keller_meeting_Charlie_Chaplin_in_1919.jpg").read_bytes()
  with tf_serving_rest.Server(loaded, faults=(503, 429)) as server:
    endpoint = _fast(endpoint_lib.connect(f"{server.url}/v1/models/colorize:predict"))
    [(_, jpeg)] = endpoint_lib.colorize(endpoint, [("a", photo)])
  assert jpeg[:3] == b"\xff\xd8\xff" and len(server.requests) == 3
  with tf_serving_rest.Server(loaded, faults=(503,) * 3) as server:
    endpoint = _fast(endpoint_lib.connect(f"{server.url}/v1/models/colorize:predict"), max_attempts=3)
    with pytest.raises(endpoint_lib.EndpointError, match=r"still overloaded \(HTTP 503\) after 3 attempts"):
      list(endpoint_lib.colorize(endpoint, [("a", photo)]))
  with tf_serving_rest.Server(loaded) as server:
    endpoint = _fast(endpoint_lib.connect(f"{server.url}/v1/models/colorize:predict"))
    endpoint.url = f"{server.url}/v1/models/colorize"  # a path the server does not serve
    with pytest.raises(endpoint_lib.EndpointError, match="HTTP 404"):
      list(endpoint_lib.colorize(endpoint, [("a", photo)]))


def test_vertex_endpoint_resource_is_called_with_credentials(loaded, historical):
  from google.oauth2 import credentials as oauth2
  default = endpoint_lib.connect(RESOURCE, credentials=oauth2.Credentials(token="t"))
  assert default.url == f"https://europe-west4-aiplatform.googleapis.com/v1/{RESOURCE}:predict"
  photo = (historical / "Detroit_circa_1915.jpg").read_bytes()
  with tf_serving_rest.Server(loaded) as server:
    endpoint = _fast(endpoint_lib.connect(RESOURCE, credentials=oauth2.Credentials(token="test-token"),
                                          api_root=server.url))
    [(_, jpeg)] = endpoint_lib.colorize(endpoint, [("a", photo)])
  assert Image.open(io.BytesIO(jpeg)).size == Image.open(io.BytesIO(photo)).size
  assert server.requests == [{"path": f"/v1/{RESOURCE}:predict", "size": server.requests[0]["size"],
                              "authorization": "Bearer test-token"}]


@pytest.mark.parametrize("target, message", [
    ("http://localhost:8501/v1/models/colorize", "must end in :predict"),
    ("http://[::1/v1/models/colorize:predict", "is not a valid URL"),
    ("http://localhost:99999/v1/models/colorize:predict", "is not a valid URL"),
    ("http:///v1/models/colorize:predict", "needs a host"),
    ("http://local host/v1/models/colorize:predict", "needs a host"),
    ("ftp://host/x:predict", "neither a REST :predict URL"),
    ("projects/p/endpoints/1", "neither a REST :predict URL"),
])
def test_bad_targets_are_usage_errors(historical, tmp_path, target, message):
  result = CliRunner().invoke(cli.main, ["photos", str(historical / "Detroit_circa_1915.jpg"), "-o", str(tmp_path),
                                         "--endpoint", target])
  assert result.exit_code == 2 and message in result.output, result.output


def test_model_or_endpoint_exactly_one(historical, tmp_path):
  photo = str(historical / "Detroit_circa_1915.jpg")
  for extra in ([], ["--model", str(tmp_path), "--endpoint", "http://h/v1/models/m:predict"]):
    result = CliRunner().invoke(cli.main, ["photos", photo, "-o", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2 and "either --model DIR or --endpoint" in result.output


def test_unreachable_endpoint_is_a_clear_error(historical, tmp_path):
  result = CliRunner().invoke(cli.main, ["photos", str(historical / "Detroit_circa_1915.jpg"), "-o", str(tmp_path),
                                         "--endpoint", "http://127.0.0.1:9/v1/models/colorize:predict"])
  # One readable line, not urllib3's nest of reprs.
  assert result.exit_code == 1 and (
      "\nError: cannot reach http://127.0.0.1:9/v1/models/colorize:predict: connection refused\n" in result.output)
  assert "0 of 1 photo(s) were colorized" in result.output and "HTTPConnection" not in result.output


def test_vertex_endpoint_without_login_says_how_to_log_in(historical, tmp_path):
  args, env = offline_command([sys.executable, "-c", "from cli.main import main; main()", "photos",
                               str(historical / "Detroit_circa_1915.jpg"), "-o", str(tmp_path / "o"),
                               "--endpoint", RESOURCE])
  env["HOME"] = str(tmp_path)
  env["GCE_METADATA_HOST"] = env["GCE_METADATA_IP"] = "127.0.0.1:9"
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2, result.stderr
  assert "no Google Cloud credentials" in result.stderr and "gcloud auth application-default login" in result.stderr
  assert "Traceback" not in result.stderr


class _Hostile:
  """A loopback server whose answers are written by the test: answer(handler, instances) sends the reply."""

  def __init__(self, answer):
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
          answer(self, [base64.b64decode(i["b64"]) for i in body["instances"]])
        except OSError:  # the client gave up on it
          pass

      def log_message(self, *args):
        pass

    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self._server.daemon_threads = True
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/models/colorize:predict"
    threading.Thread(target=self._server.serve_forever, daemon=True).start()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._server.shutdown()
    self._server.server_close()


def _reply(handler, body: bytes, status=200, headers=()):
  handler.send_response(status)
  for key, value in (("Content-Length", str(len(body))), *headers):
    handler.send_header(key, value)
  handler.end_headers()
  handler.wfile.write(body)


def _jpeg(image, **kwargs):
  out = io.BytesIO()
  image.save(out, format=kwargs.pop("format", "JPEG"), **kwargs)
  return out.getvalue()


def test_every_answer_is_checked_before_anything_is_written(historical, tmp_path):
  """Answers that are not a complete JPEG of the photo's size: a skip each, no file, and the count is true."""
  names = sorted(p.name for p in historical.iterdir())[:7]
  for name in names:
    shutil.copy(historical / name, tmp_path / name)
  photos = {Image.open(tmp_path / name).size: name for name in names}
  assert len(photos) == len(names)  # told apart by their size
  wrong = {  # name -> what the server answers for it
      names[1]: lambda img: {"b64": base64.b64encode(_jpeg(img.resize((img.width // 2, img.height // 2)))).decode()},
      names[2]: lambda img: {"b64": base64.b64encode(_jpeg(img)[:5000]).decode()},
      names[3]: lambda img: {"b64": base64.b64encode(_jpeg(img, format="PNG")).decode()},
      names[4]: lambda img: {"b64": "not base64 at all!"},
      names[5]: lambda img: {"b64": base64.b64encode(_jpeg(img.convert("L"))).decode()},
      names[6]: lambda img: {"b64": base64.b64encode(_claiming(_jpeg(img), 60000, 60000)).decode()},
  }
  reasons = {names[1]: "image for a", names[2]: "does not decode", names[3]: "something else than a JPEG",
             names[4]: "malformed base64", names[5]: "a L JPEG, not RGB", names[6]: "exceeds limit"}  # from the header

  def answer(handler, instances):
    predictions = []
    for data in instances:
      image = Image.open(io.BytesIO(data)).convert("RGB")
      make = wrong.get(photos[image.size], lambda img: {"b64": base64.b64encode(_jpeg(img)).decode()})
      predictions.append(make(image))
    _reply(handler, json.dumps({"predictions": predictions}).encode())

  out = tmp_path / "out"
  with _Hostile(answer) as server:
    result = CliRunner().invoke(cli.main, ["photos", *(str(tmp_path / n) for n in names), "-o", str(out),
                                           "--endpoint", server.url])
  assert result.exit_code == 1, result.output
  assert "Colorized 1 photo(s)" in result.output and "skipped 6" in result.output
  assert sorted(p.name for p in out.iterdir()) == [names[0]]
  for name, reason in reasons.items():
    assert any(name in line and reason in line for line in result.output.splitlines()), (name, result.output)


def _claiming(jpeg: bytes, width: int, height: int) -> bytes:
  """A JPEG whose header (SOF0) claims another size."""
  at = jpeg.index(b"\xff\xc0") + 5
  return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4:]


@pytest.mark.parametrize("behaviour, message", [
    ("never", "did not finish its answer within 1 s"),
    ("trickle", "did not finish its answer within 1 s"),
    ("endless", "sent more than 100,000 bytes in one answer"),
    ("announced", "announced an answer of 10,000,000,000 bytes"),
    ("hang_up", "cannot reach .*: the connection failed or was closed without an answer"),
])
def test_servers_that_answer_slowly_never_or_without_end_are_one_line(historical, behaviour, message):
  import time
  photo = (historical / "Detroit_circa_1915.jpg").read_bytes()

  def answer(handler, instances):
    if behaviour == "hang_up":
      handler.close_connection = True
      return
    handler.send_response(200)
    if behaviour == "announced":
      handler.send_header("Content-Length", "10000000000")
    handler.end_headers()
    for _ in range(100 if behaviour == "never" else 10_000):
      if behaviour == "never":
        time.sleep(0.1)
        continue
      handler.wfile.write(b" " * (1 if behaviour == "trickle" else 10_000))
      handler.wfile.flush()
      time.sleep(0.05 if behaviour == "trickle" else 0)

  with _Hostile(answer) as server:
    endpoint = _fast(endpoint_lib.connect(server.url), deadline_seconds=1.0, answer_limit=100_000)
    started = time.monotonic()
    with pytest.raises(endpoint_lib.EndpointError, match=message):
      list(endpoint_lib.colorize(endpoint, [("a", photo)]))
  assert time.monotonic() - started < 5


@pytest.mark.parametrize("retry_after", ["nan", "-5", "inf", "1e9", "soon", "Wed, 21 Oct 2015 07:28:00 GMT",
                                         "\u00b3"])  # a superscript 3: str.isdigit, not a number of seconds
def test_odd_retry_after_values_never_break_the_retry(historical, retry_after):
  photo = (historical / "Detroit_circa_1915.jpg").read_bytes()
  answers = []

  def answer(handler, instances):
    answers.append(retry_after)
    if len(answers) == 1:
      return _reply(handler, b'{"error": "busy"}', 503, [("Retry-After", retry_after)])
    _reply(handler, json.dumps({"predictions": [{"b64": base64.b64encode(_jpeg(
        Image.open(io.BytesIO(instances[0])).convert("RGB"))).decode()}]}).encode())

  with _Hostile(answer) as server:
    [(_, jpeg)] = endpoint_lib.colorize(_fast(endpoint_lib.connect(server.url)), [("a", photo)])
  assert jpeg[:3] == b"\xff\xd8\xff" and len(answers) == 2
