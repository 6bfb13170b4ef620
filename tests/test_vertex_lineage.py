"""`colorize lineage --vertex-job`: a Vertex AI pipeline job's lineage, read from Vertex ML Metadata.

The loopback API (vertex_metadata.py) holds what Vertex AI Pipelines records for a real local
run's lineage (tests/data/demo_lineage.json, lineage.graph.upstream_graph of that run's MLMD
store), its ingestion moved to an earlier job that the later one reuses from the cache; the
command must draw from it exactly what the local store gives, with the same renderers.
"""
import copy
import io
import json
import pathlib
import re
import socket
import subprocess
import sys

from click.testing import CliRunner
from cloud_fixtures import REPO
from cloud_fixtures import offline_command
from PIL import Image
import pytest
import vertex_metadata
from vertex_metadata import PARENT

from cli import main as cli
from components import report as report_lib
from lineage import graph as graph_lib
from lineage import picture
from lineage import vertex

EARLIER_RUN = "2026-12-01T09:00:00.000001"
EARLIER_JOB = vertex_metadata.job_id(EARLIER_RUN)
REUSED = ("CocoIngest", "ImportSchemaGen", "Embed")


def _two_runs(graph):
  """The demo run's lineage with its first steps run by an earlier job and cache hits in the later one,
  as a local store records a rerun whose ingestion is cached: a CACHED execution with the same outputs."""
  graph = copy.deepcopy(graph)
  cached = []
  for e in graph["executions"]:
    if e["component"] in REUSED:
      cached.append(dict(copy.deepcopy(e), id=100 + e["id"], state="CACHED"))
      e["run"] = EARLIER_RUN
  graph["executions"] = sorted(graph["executions"] + cached, key=lambda e: e["id"])
  return graph


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
  """(expected graph, server, key file): the later job's lineage, the API holding both jobs and a running one."""
  graph = _two_runs(json.loads((pathlib.Path(__file__).parent / "data" / "demo_lineage.json").read_text()))
  graph["reports"] = {k: dict(r, type=report_lib.ARTIFACT_TYPE) for k, r in graph["reports"].items()}
  jobs, events = vertex_metadata.translate(graph)
  running = copy.deepcopy(next(iter(jobs.values())))
  running.update(name=f"{PARENT}/pipelineJobs/colorize-running", displayName="colorize-running",
                 createTime="2026-12-03T08:00:00Z", state="PIPELINE_STATE_RUNNING")
  running["jobDetail"]["taskDetails"] = []
  jobs[running["name"]] = running
  # What Vertex holds beside the lineage, connected to it but not upstream of the pushed model: the
  # Trainer's other output, and a later job's evaluation taking the model as its baseline.
  later = jobs[_job(vertex_metadata.job_id(graph["executions"][-1]["run"]))]
  trainer = next(t for t in later["jobDetail"]["taskDetails"] if t["taskName"] == "Trainer")
  model_run = vertex_metadata.artifact(60, "tfx.ModelRun", "gs://colorize-bucket/runs/Trainer/model_run/5",
                                       trainer["createTime"], {})
  trainer["outputs"]["model_run"] = {"artifacts": [model_run]}
  events.append({"artifact": model_run["name"], "execution": trainer["execution"]["name"],
                 "eventTime": trainer["createTime"], "type": "OUTPUT"})
  [model] = trainer["outputs"]["model"]["artifacts"]
  # With cloud.deploy a second pusher runs; this one pushed nothing, later: the model pushed is the start.
  vertex_metadata.add(later, events, 80, "EndpointPusher", {
      "displayName": "EndpointPusher", "schemaTitle": "system.ContainerExecution", "state": "COMPLETE",
      "createTime": "2026-12-02T23:59:59Z", "metadata": {}}, {"model": [model]}, {"pushed_model": [
          vertex_metadata.artifact(81, "tfx.PushedModel", "gs://colorize-bucket/runs/EndpointPusher/pushed_model/80",
                                   "2026-12-02T23:59:59Z", {"pushed": 0})]})
  vertex_metadata.add(running, events, 70, "Evaluator", {
      "displayName": "Evaluator", "schemaTitle": "system.ContainerExecution", "state": "RUNNING",
      "createTime": running["createTime"], "metadata": {"input:example_splits": "null"}},
      {"baseline_model": [model]}, {"blessing": [vertex_metadata.artifact(
          71, "tfx.ModelBlessing", "gs://colorize-bucket/runs/Evaluator/blessing/70", running["createTime"], {},
          state="PENDING")]})
  server = vertex_metadata.Server(jobs, events, page_size=1)
  expected = copy.deepcopy(graph)
  expected["reports"] = {int(k): r for k, r in graph["reports"].items()}  # as upstream_graph gives them
  for e in expected["executions"]:
    e["type"] = "system.ContainerExecution"  # what Vertex records of an execution (local: TFX's class)
    e["run"] = vertex_metadata.job_id(e["run"])  # a run is a job on Vertex
  key = server.credentials_file(tmp_path_factory.mktemp("key"))
  yield expected, server, key
  server.close()


@pytest.fixture
def api(lineage, monkeypatch):
  expected, server, key = lineage
  monkeypatch.setattr(vertex, "API", server.url)
  monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
  del server.requests[:]
  return expected, server


def _job(job_id):
  return f"{PARENT}/pipelineJobs/{job_id}"


def _lineage(*args, code=0):
  result = CliRunner().invoke(cli.main, ["lineage", *args])
  assert result.exit_code == code, result.output
  return result.output


def test_all_four_formats_equal_what_the_local_store_gives(api, tmp_path):
  expected, server = api
  job = _job(expected["executions"][-1]["run"])
  start = expected["start"]
  assert _lineage("--vertex-job", job).rstrip("\n") == graph_lib.render_table(expected, start)
  assert json.loads(_lineage("--vertex-job", job, "model", "--format", "json")) == json.loads(json.dumps(expected))
  assert _lineage("--vertex-job", job, "--format", "dot").rstrip("\n") == graph_lib.render_dot(expected, start)
  _lineage("--vertex-job", job, "--format", "png", "--output", str(tmp_path / "l.png"))
  drawn = io.BytesIO()
  picture.draw(expected, start).save(drawn, format="PNG")
  assert Image.open(tmp_path / "l.png").tobytes() == Image.open(drawn).tobytes()
  table = _lineage("--vertex-job", job)
  assert f"test MSE {expected['reports'][7]['properties']['mse']:.5f}" in table  # the report beside the blessing
  assert f"in run {EARLIER_JOB} on Examples" not in table  # trained in the later job
  assert f"ingested by CocoIngest [1] from {expected['executions'][0]['parameters']['input_base']}" in table
  # The earlier job was found on the second page of the pipeline's jobs (a page holds one).
  listed = [r for r in server.requests if r["path"] == f"/v1/{PARENT}/pipelineJobs"]
  assert [r["query"].get("pageToken") for r in listed[:2]] == [None, ["1"]]
  assert listed[0]["query"]["filter"] == ['pipeline_name="colorize"']


def test_an_artifact_id_starts_the_lineage_there(api):
  expected, _ = api
  model = next(a for a in expected["artifacts"] if a["type"] == "Model")
  graph = json.loads(_lineage("--vertex-job", _job(expected["executions"][-1]["run"]), "model", str(model["id"]),
                              "--format", "json"))
  assert graph["start"] == model["id"]
  assert {e["component"] for e in graph["executions"]} == {"Trainer", "Embed", "ImportSchemaGen", "CocoIngest"}
  out = _lineage("--vertex-job", _job(EARLIER_JOB), "model", "999", code=2)
  assert out == (f"Error: Vertex AI has no {vertex_metadata.STORE}/artifacts/999 (404); "
                 "check the id, project and region\n")


def test_runs_lists_the_pipelines_jobs_oldest_first(api):
  expected, _ = api
  rows = json.loads(_lineage("--vertex-job", _job(EARLIER_JOB), "runs", "--format", "json"))
  assert [(r["run"], r["status"]) for r in rows] == [
      (EARLIER_JOB, "complete"), (expected["executions"][-1]["run"], "complete"), ("colorize-running", "running")]
  assert rows[0]["steps"] == {"COMPLETE": 4}  # the three reused steps and the pipeline's own DAG execution
  assert rows[1]["steps"] == {"CACHED": 3, "COMPLETE": 6} and rows[2]["steps"] == {"RUNNING": 1}


def test_a_running_job_a_missing_one_and_a_forbidden_one_are_one_line_each(api):
  _, server = api
  out = _lineage("--vertex-job", f"{PARENT}/pipelineJobs/colorize-running", code=1)
  assert out == ("Error: job colorize-running is still running (PIPELINE_STATE_RUNNING); its lineage is complete "
                 "once it ends (`colorize lineage --vertex-job ... runs` shows its state)\n")
  out = _lineage("--vertex-job", f"{PARENT}/pipelineJobs/no-such-job", code=2)
  assert out == f"Error: Vertex AI has no {PARENT}/pipelineJobs/no-such-job (404); check the id, project and region\n"
  server.state["forbidden"].add(f"{PARENT}/pipelineJobs/colorize-running")
  try:
    out = _lineage("--vertex-job", f"{PARENT}/pipelineJobs/colorize-running", code=1)
  finally:
    server.state["forbidden"].clear()
  assert out.count("\n") == 1 and "(403 PERMISSION_DENIED: Permission 'aiplatform.pipelineJobs.get' denied" in out
  assert "roles/aiplatform.viewer" in out
  out = _lineage("--vertex-job", _job(EARLIER_JOB), code=1)
  assert out == (f"Error: job {EARLIER_JOB} (PIPELINE_STATE_SUCCEEDED) made no PushedModel: its Pusher failed, was "
                 "skipped or did not run; pass an artifact id (the number that ends an artifact's resource name), "
                 "e.g. of its Model\n")
  out = _lineage("--vertex-job", "Not A Job", code=2)
  assert out.count("\n") == 1 and "neither projects/P/locations/L/pipelineJobs/ID nor a job id" in out


def test_a_job_id_takes_project_and_region_from_the_config(api, tmp_path):
  expected, _ = api
  config = tmp_path / "cloud.json"
  config.write_text(json.dumps({"pipeline_name": "colorize", "cloud": {
      "project": vertex_metadata.PROJECT, "region": vertex_metadata.REGION}}))
  job_id = expected["executions"][-1]["run"]
  assert json.loads(_lineage("--config", str(config), "--vertex-job", job_id, "--format", "json")) == json.loads(
      json.dumps(expected))
  out = _lineage("--vertex-job", job_id, code=2)
  assert out.count("\n") == 1 and "a bare job id needs the config's cloud.project" in out
  for command in ("run", "artifacts"):
    out = _lineage("--config", str(config), "--vertex-job", job_id, command, code=2)
    assert f"`lineage {command}` reads a local store; with --vertex-job use `model` or `runs`" in out


def test_an_unreachable_api_is_one_line(api, monkeypatch):
  with socket.socket() as s:  # a loopback port nobody listens on
    s.bind(("127.0.0.1", 0))
    monkeypatch.setattr(vertex, "API", f"http://127.0.0.1:{s.getsockname()[1]}")
  out = _lineage("--vertex-job", f"{PARENT}/pipelineJobs/colorize-running", code=1)
  assert out.startswith("Error: cannot reach Vertex AI at http://127.0.0.1:") and out.count("\n") == 1


def test_no_credentials_says_how_to_log_in(tmp_path):
  args, env = offline_command([sys.executable, "-c", "from cli.main import main; main()", "lineage",
                               "--vertex-job", f"{PARENT}/pipelineJobs/colorize-1"])
  env.update(CLOUDSDK_CONFIG=str(tmp_path), NO_GCE_CHECK="true", HOME=str(tmp_path))
  result = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 2, result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"Error: {vertex.LOGIN} (") and "credentials were not found" in last, last  # and why


def test_the_docs_commands_read_a_jobs_lineage(api, tmp_path, monkeypatch):
  """docs/vertex.md, "Lineage of a Vertex run": its commands, run against the loopback API."""
  expected, _ = api
  job_id = expected["executions"][-1]["run"]
  (tmp_path / "cloud.yaml").write_text(f"pipeline_name: colorize\ncloud:\n  project: {vertex_metadata.PROJECT}\n"
                                       f"  region: {vertex_metadata.REGION}\n")
  monkeypatch.chdir(tmp_path)
  text = (REPO / "docs" / "vertex.md").read_text()
  section = text.split("### Lineage of a Vertex run", 1)[1].split("\n#", 1)[0]
  commands = re.findall(r"^colorize (lineage .*?)(?:\s+#.*)?$", section.split("```sh", 1)[1].split("```")[0],
                        re.MULTILINE)
  assert len(commands) == 4, section
  outputs = [_lineage(*command.replace("$PROJECT", vertex_metadata.PROJECT).replace("$REGION", vertex_metadata.REGION)
                      .replace("JOB_ID", job_id).split()[1:]) for command in commands]
  assert outputs[0].rstrip("\n") == graph_lib.render_table(expected, expected["start"])
  assert outputs[1] == "Wrote lineage.png\n" and Image.open(tmp_path / "lineage.png").format == "PNG"
  assert json.loads(outputs[2]) == json.loads(json.dumps(expected))
  assert [line.split()[3] for line in outputs[3].splitlines()] == [EARLIER_JOB, job_id, "colorize-running"]


def test_answers_not_shaped_as_documented_are_one_line(api):
  _, server = api
  odd = f"{PARENT}/pipelineJobs/colorize-odd"
  server.state["jobs"][odd] = {"name": odd, "state": "PIPELINE_STATE_SUCCEEDED", "createTime": "2026-12-04T08:00:00Z",
                               "jobDetail": {"taskDetails": [{"taskName": "Pusher", "outputs": {
                                   "pushed_model": {"artifacts": [{"schemaTitle": "tfx.PushedModel"}]}}}]}}
  try:
    out = _lineage("--vertex-job", odd, code=1)
    assert out == "Error: Vertex AI answered in a shape this command does not know (KeyError: 'name')\n"
    out = _lineage("--vertex-job", odd, "--metadata-file", "x.db", code=2)
    assert "--vertex-job reads Vertex ML Metadata: leave out --metadata-file and --mysql-host" in out
  finally:
    del server.state["jobs"][odd]
