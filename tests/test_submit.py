"""`colorize submit` / `colorize schedule`: the dry run prints exactly what the real call sends.

The real call is made by aiplatform itself, with anonymous credentials and its REST
transport pointed at a loopback HTTP server that records every request (the Vertex AI
API and the Cloud Storage calls aiplatform makes before submitting). No network.
"""
import http.server
import json
import re
import subprocess
import sys
import threading

from cloud_fixtures import CONFIG
from cloud_fixtures import KMS_KEY
from cloud_fixtures import NETWORK
from cloud_fixtures import REPO
from cloud_fixtures import SERVICE_ACCOUNT
from cloud_fixtures import JsonApi
from cloud_fixtures import offline_command
import pytest
import yaml

from cloud import vertex_jobs
from pipelines import config as config_lib

JOB_ID = "colorize-nightly-test-1"


class _Recorder(JsonApi, http.server.BaseHTTPRequestHandler):
  """Answers like the Vertex AI and Cloud Storage REST APIs for a project with no bucket yet."""

  def do_GET(self):
    request = self._record()
    if request["path"].endswith("/iam"):
      self._reply(200, {"bindings": [], "etag": "CAE="})
    else:  # the pipeline bucket does not exist yet
      self._reply(404, {"error": {"code": 404, "message": "Not Found"}})

  def do_POST(self):
    request = self._record()
    body = dict(request["body"] or {})
    if request["path"] == "/storage/v1/b":
      body["id"] = body.get("name")
    else:
      resource_id = request["query"].get("pipelineJobId", ["schedule-1"])[0]
      body["name"] = request["path"][len("/v1/"):] + "/" + resource_id
    self._reply(200, body)

  def do_PUT(self):
    self._reply(200, self._record()["body"])


@pytest.fixture
def loopback_api(monkeypatch):
  """A recording API server on a free loopback port; aiplatform's global config restored after."""
  from google.cloud.aiplatform import initializer
  handler = type("Recorder", (_Recorder,), {"requests": []})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  url = f"http://127.0.0.1:{server.server_address[1]}"
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
  yield url, handler.requests
  server.shutdown()
  server.server_close()
  initializer.global_config.__init__()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
  from pipelines import vertex_runner
  path = tmp_path_factory.mktemp("template") / "pipeline.json"
  vertex_runner.compile_pipeline(config_lib.from_dict(json.loads(json.dumps(CONFIG))), "vertex", str(path))
  return path


@pytest.fixture
def config_file(tmp_path):
  path = tmp_path / "config.yaml"
  path.write_text(yaml.safe_dump(CONFIG))
  return path


def _cfg():
  return config_lib.from_dict(json.loads(json.dumps(CONFIG)))


def _job(template, url):
  from google.auth import credentials
  return vertex_jobs.pipeline_job(_cfg(), str(template), job_id=JOB_ID, credentials=credentials.AnonymousCredentials(),
                                  api_endpoint=url, api_transport="rest")


def test_submit_dry_run_needs_no_network_or_login(template, tmp_path, config_file):
  args, env = offline_command(
      [sys.executable, "-c", "from cli.main import main; main()", "submit", "--config", str(config_file),
       "--template", str(template), "--job-id", JOB_ID, "--dry-run"])
  env["HOME"] = str(tmp_path)
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  request = json.loads(result.stdout)
  assert request["method"] == "google.cloud.aiplatform.v1.PipelineService.CreatePipelineJob"
  assert request["http"] == ("POST https://europe-west4-aiplatform.googleapis.com/v1/projects/colorize-test/"
                             f"locations/europe-west4/pipelineJobs?pipelineJobId={JOB_ID}")
  body = request["body"]
  assert body["displayName"] == "colorize-nightly"
  assert body["serviceAccount"] == SERVICE_ACCOUNT
  assert body["labels"] == {"team": "vision", "env": "test"}
  assert body["runtimeConfig"]["gcsOutputDirectory"] == "gs://colorize-bucket/runs/pipeline/colorize-nightly"
  # Production profile: the job is peered with the VPC and encrypted with the customer key.
  assert body["network"] == NETWORK
  assert body["encryptionSpec"] == {"kmsKeyName": KMS_KEY}
  # The compiled pipeline goes out as it is, except that aiplatform applies the caching
  # setting (cfg.enable_cache) to every task, the resolvers included.
  tasks = body["pipelineSpec"]["root"]["dag"]["tasks"]
  assert {t["cachingOptions"]["enableCache"] for t in tasks.values()} == {True}
  assert _without_caching(body["pipelineSpec"]) == _without_caching(json.loads(template.read_text())["pipelineSpec"])
  # What a blessed model is deployed to is part of the request (cloud.deploy).
  value = body["pipelineSpec"]["root"]["dag"]["tasks"]["EndpointPusher"]["inputs"]["parameters"]["custom_config"]
  value = value["runtimeValue"].get("constant") or next(iter(value["runtimeValue"]["constantValue"].values()))
  serving_args = json.loads(value)["ai_platform_serving_args"]
  assert serving_args["endpoint_name"] == "colorize-nightly" and serving_args["traffic_percentage"] == 100


def test_submit_sets_runtime_parameters_as_their_declared_types(template, tmp_path, config_file):
  args, env = offline_command(
      [sys.executable, "-c", "from cli.main import main; main()", "submit", "--config", str(config_file),
       "--template", str(template), "--param", "epochs=3", "--param", "learning_rate=0.0005",
       "--param", "data_root=gs://colorize-bucket/coco-2026", "--dry-run"])
  env["HOME"] = str(tmp_path)
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  parameters = json.loads(result.stdout)["body"]["runtimeConfig"]["parameters"]
  assert parameters["epochs"] == {"intValue": "3"}
  assert parameters["learning_rate"] == {"doubleValue": 0.0005}
  assert parameters["data_root"] == {"stringValue": "gs://colorize-bucket/coco-2026"}
  assert parameters["batch_size"] == {"intValue": "16"}  # the compiled default


def _without_caching(spec):
  spec = json.loads(json.dumps(spec))
  for task in spec["root"]["dag"]["tasks"].values():
    task.pop("cachingOptions", None)
  return spec


def test_submit_sends_what_the_dry_run_printed(template, loopback_api):
  url, requests = loopback_api
  dry = vertex_jobs.submit(_job(template, url), _cfg(), dry_run=True)
  assert requests == []
  result = vertex_jobs.submit(_job(template, url), _cfg())
  assert result["name"] == f"projects/colorize-test/locations/europe-west4/pipelineJobs/{JOB_ID}"
  create = [r for r in requests if r["path"].endswith("/pipelineJobs")]
  assert len(create) == 1
  assert create[0]["path"] == "/v1/projects/colorize-test/locations/europe-west4/pipelineJobs"
  assert create[0]["query"]["pipelineJobId"] == [JOB_ID]
  assert create[0]["body"] == dry["body"]
  # Before submitting, aiplatform creates the missing pipeline-root bucket in the region and
  # lets the pipeline's service account read and write it.
  bucket = [r for r in requests if r["method"] == "POST" and r["path"] == "/storage/v1/b"]
  assert bucket and bucket[0]["body"]["name"] == "colorize-bucket"
  assert bucket[0]["body"]["location"] == "europe-west4"
  policy = [r for r in requests if r["method"] == "PUT" and r["path"].endswith("/iam")][0]["body"]
  roles = {b["role"]: b["members"] for b in policy["bindings"]}
  assert roles["roles/storage.objectCreator"] == [f"serviceAccount:{SERVICE_ACCOUNT}"]


def test_schedule_sends_what_the_dry_run_printed(template, loopback_api, config_file):
  from click.testing import CliRunner

  from cli import main as cli
  url, requests = loopback_api
  printed = CliRunner().invoke(cli.main, ["schedule", "--config", str(config_file), "--template", str(template),
                                          "--cron", "0 3 * * 1", "--max-concurrent-runs", "2", "--dry-run"])
  assert printed.exit_code == 0, printed.output
  dry = json.loads(printed.output[printed.output.index("{"):])
  assert dry["http"] == ("POST https://europe-west4-aiplatform.googleapis.com/v1/projects/colorize-test/"
                         "locations/europe-west4/schedules")
  assert dry["body"]["cron"] == "0 3 * * 1"
  assert dry["body"]["displayName"] == "colorize-nightly-schedule"
  assert dry["body"]["createPipelineJobRequest"]["pipelineJob"]["serviceAccount"] == SERVICE_ACCOUNT
  assert requests == []

  result = vertex_jobs.schedule(_job(template, url), _cfg(), "0 3 * * 1", "colorize-nightly-schedule",
                                max_concurrent_runs=2)
  assert result["name"].startswith("projects/colorize-test/locations/europe-west4/schedules/")
  create = [r for r in requests if r["path"].endswith("/schedules")]
  assert len(create) == 1 and create[0]["path"] == "/v1/projects/colorize-test/locations/europe-west4/schedules"
  assert create[0]["body"] == dry["body"]
  assert create[0]["body"]["maxConcurrentRunCount"] == "2"
  assert _without_caching(create[0]["body"]["createPipelineJobRequest"]["pipelineJob"]["pipelineSpec"]) == \
      _without_caching(json.loads(template.read_text())["pipelineSpec"])


@pytest.mark.parametrize("args, message", [
    (["submit", "--param", "epoch=3", "--dry-run"], "the pipeline has no runtime parameter ['epoch']"),
    (["submit", "--param", "epochs=three", "--dry-run"], "runtime parameter epochs must be an integer"),
    (["submit", "--param", "epochs", "--dry-run"], "must be NAME=VALUE"),
    (["submit", "--param", "epochs=99999999999999999999999", "--dry-run"], "epochs must be an integer"),  # > 64 bits
    # What the config refuses, a runtime parameter may not set either.
    (["submit", "--param", "epochs=-1", "--dry-run"], "--param epochs: train.epochs must be"),
    (["submit", "--param", "learning_rate=-5", "--dry-run"], "--param learning_rate: train.learning_rate"),
    (["submit", "--param", "weights=bogus", "--dry-run"], "--param weights: train.weights"),
    (["submit", "--param", "data_root=/home/me/coco", "--dry-run"], "ingest.data_root must be a gs:// COCO root"),
    (["schedule", "--cron", "0 3 * *", "--dry-run"], "--cron must have 5 fields"),
    (["schedule", "--cron", "0 3 * * 1", "--max-concurrent-runs", "0", "--dry-run"], "must be >= 1"),
])
def test_bad_requests_are_clear_errors(template, config_file, args, message):
  from click.testing import CliRunner

  from cli import main as cli
  result = CliRunner().invoke(cli.main, [*args, "--config", str(config_file), "--template", str(template)])
  assert result.exit_code == 2, result.output
  assert message in result.output


def test_submit_without_login_says_how_to_log_in(template, tmp_path, config_file):
  args, env = offline_command(
      [sys.executable, "-c", "from cli.main import main; main()", "submit", "--config", str(config_file),
       "--template", str(template)])
  env["HOME"] = str(tmp_path)
  # No metadata server either: a laptop, not a GCE VM.
  env["GCE_METADATA_HOST"] = env["GCE_METADATA_IP"] = "127.0.0.1:9"
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  assert "no Google Cloud credentials" in result.stderr and "gcloud auth application-default login" in result.stderr
  assert "Traceback" not in result.stderr


class _Schedules(JsonApi, http.server.BaseHTTPRequestHandler):
  """Answers like Vertex AI's ScheduleService (REST v1) for a project holding two schedules."""
  schedules = None

  def do_GET(self):
    path = self._record()["path"][len("/v1/"):]
    if path.endswith("/schedules"):
      self._reply(200, {"schedules": list(self.schedules.values())})
    elif path in self.schedules:
      self._reply(200, self.schedules[path])
    else:
      self._reply(404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}})

  def do_POST(self):
    path, _, verb = self._record()["path"][len("/v1/"):].partition(":")
    self.schedules[path]["state"] = {"pause": "PAUSED", "resume": "ACTIVE"}[verb]
    self._reply(200, {})

  def do_DELETE(self):
    path = self._record()["path"][len("/v1/"):]
    del self.schedules[path]
    self._reply(200, {"name": f"{path}/operations/1", "done": True,
                      "response": {"@type": "type.googleapis.com/google.protobuf.Empty"}})


def test_schedules_are_listed_paused_resumed_and_deleted():
  from google.auth import credentials
  from google.cloud.aiplatform import initializer
  parent = "projects/colorize-test/locations/europe-west4/schedules"
  schedules = {f"{parent}/{i}": {"name": f"{parent}/{i}", "displayName": f"colorize-nightly-{i}", "cron": "0 3 * * 1",
                                 "state": "ACTIVE", "nextRunTime": "2026-12-07T03:00:00Z", "startedRunCount": "4"}
               for i in (11, 12)}
  handler = type("Schedules", (_Schedules,), {"requests": [], "schedules": schedules})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  client = {"credentials": credentials.AnonymousCredentials(), "api_endpoint": f"http://127.0.0.1:{server.server_port}",
            "api_transport": "rest"}
  try:
    listed = vertex_jobs.list_schedules(_cfg(), **client)
    # Listing builds nothing: the project and region are all it needs (no image, no gs:// output root).
    bare = config_lib.from_dict({"cloud": {"project": "colorize-test", "region": "europe-west4"}})
    assert vertex_jobs.list_schedules(bare, **client) == listed
    assert [(s["name"], s["state"], s["cron"], s["started_runs"]) for s in listed] == [
        (f"{parent}/11", "ACTIVE", "0 3 * * 1", 4), (f"{parent}/12", "ACTIVE", "0 3 * * 1", 4)]
    assert vertex_jobs.change_schedule(_cfg(), "11", "pause", **client)["state"] == "PAUSED"
    assert vertex_jobs.change_schedule(_cfg(), f"{parent}/11", "resume", **client)["state"] == "ACTIVE"
    assert vertex_jobs.change_schedule(_cfg(), "12", "delete", **client)["state"] == "DELETED"
    assert list(schedules) == [f"{parent}/11"]
    # Another region's schedule, or a name of another shape: one line, nothing sent.
    for name, message in ((f"{parent}/11".replace("europe-west4", "us-central1"), "give --region us-central1"),
                          ("projects/x/locations/europe-west4/schedules/../../z", "neither a schedule id")):
      with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
        vertex_jobs.change_schedule(_cfg(), name, "delete", **client)
    verbs = [(r["method"], r["path"]) for r in handler.requests if r["method"] != "GET"]
    assert verbs == [("POST", f"/v1/{parent}/11:pause"), ("POST", f"/v1/{parent}/11:resume"),
                     ("DELETE", f"/v1/{parent}/12")]
  finally:
    server.shutdown()
    server.server_close()
    initializer.global_config.__init__()
