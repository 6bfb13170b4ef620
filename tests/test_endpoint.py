"""`colorize photos --endpoint`: real historical photos sent to the real SavedModel behind TF Serving's
REST mapping on a loopback server (tests/tf_serving_rest.py), as TF Serving or Vertex AI serve it."""
import io
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
  assert "skipped 1 unreadable" in result.output
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
  assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9" in result.output
  assert "0 of 1 photo(s) were colorized" in result.output


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
