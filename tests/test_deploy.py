"""cloud.deploy: the EndpointPusher, configured by pipelines/cloud_config.py, rolls a blessed model out.

The real executor (components/endpoint_rollout: TFX's Vertex Pusher executor with the rollout)
runs with the exact exec properties of the compiled pipeline's EndpointPusher, and aiplatform's
REST transport, and the probe's requests (serving/endpoint.py), talk to a loopback server that
answers like the Vertex AI API (endpoints, models, deploy, undeploy, predict) and records every
request. Each claim of docs/vertex.md's section 7b is checked here. The model is copied to a
gs:// destination as in the cloud; here gs:// is a folder (a TFX filesystem plugin), as the
pipeline root's bucket is not the subject.
"""
import base64
import dataclasses
import http.server
import importlib.metadata
import io
import json
import pathlib
import re
import shutil
import socket
import threading
import time

from cloud_fixtures import CONFIG
from cloud_fixtures import JsonApi
import pytest

from pipelines import cloud_config
from pipelines import config as config_lib
from pipelines import pipeline as pipeline_lib

pytest_plugins = ("trainer_fixtures",)

PROJECT, REGION = "colorize-test", "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
ENDPOINT, PROBE = "endpoints/100", "endpoints/101"
PUSHED_URI = "gs://colorize-bucket/runs/pipeline/colorize-nightly/EndpointPusher/pushed_model/7"


def _timestamp(seconds):
  return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def _error(code, status, message):
  return {"error": {"code": code, "message": message, "status": status}}


def _colorized(instance, answer):
  """What the served model's default signature answers for one photo: a JPEG of its size, or a fault."""
  from PIL import Image
  photo = Image.open(io.BytesIO(base64.b64decode(instance["b64"]))).convert("RGB")
  if answer == "junk":
    return {"b64": base64.b64encode(b"GIF89a not a colorized photo").decode()}
  if answer == "wrong_size":
    photo = photo.resize((photo.width // 2, photo.height // 2))
  out = io.BytesIO()
  photo.save(out, format="JPEG")
  return {"b64": base64.b64encode(out.getvalue()).decode()}


class _VertexApi(JsonApi, http.server.BaseHTTPRequestHandler):
  """Endpoints, models and deployments of one project, kept in memory, as the Vertex AI v1 REST API
  documents them; long operations finish at once (or fail, with state["fail"][method] as their error).

  endpoints.deployModel and undeployModel keep the endpoint's trafficSplit as documented: deployModel
  overwrites it when given one ("0" is the new model) and leaves it otherwise; a model with traffic is
  undeployed only when the request's split takes it away or it is the last one. endpoints.predict
  routes by the split (to the largest share) and answers as the served model's default signature does,
  or as state["answers"][model] says ("junk", "wrong_size", "error").
  """
  state = None

  def _operation(self, type_name, response, method=None):
    self.state["operations"] += 1
    operation = {"name": f"{PARENT}/operations/{self.state['operations']}", "done": True}
    failure = self.state["fail"].get(method)
    if failure:
      return dict(operation, error={"code": 8, "message": failure})
    return dict(operation, response={"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{type_name}",
                                     **response})

  def do_GET(self):
    request = self._record()
    path, endpoints, models = request["path"][len("/v1/"):], self.state["endpoints"], self.state["models"]
    if path == f"{PARENT}/endpoints":
      wanted = request["query"].get("filter", [""])[0]
      literal = re.fullmatch(r'display_name="((?:[^"\\]|\\.)*)"', wanted)
      if wanted and not literal:  # as Vertex AI refuses a filter it cannot parse
        return self._reply(400, _error(400, "INVALID_ARGUMENT", f"Invalid filter: {wanted}"))
      name = literal and re.sub(r"\\(.)", r"\1", literal.group(1))
      found = [e for e in endpoints.values() if not wanted or e["displayName"] == name]
      return self._reply(200, {"endpoints": found} if found else {})
    if path in endpoints:
      return self._reply(200, endpoints[path])
    if path.split("@")[0] in models:
      return self._reply(200, models[path.split("@")[0]])
    return self._reply(404, _error(404, "NOT_FOUND", f"{path} not found"))

  def do_DELETE(self):
    request = self._record()
    path = request["path"][len("/v1/"):]
    endpoint = self.state["endpoints"].get(path)
    if endpoint is None:
      return self._reply(404, _error(404, "NOT_FOUND", f"{path} not found"))
    if endpoint["deployedModels"]:
      return self._reply(400, _error(400, "FAILED_PRECONDITION", f"endpoint {path} has deployed models"))
    self.state["operations"] += 1
    operation = {"name": f"{PARENT}/operations/{self.state['operations']}", "done": True}
    if self.state["fail"].get("delete"):
      return self._reply(200, dict(operation, error={"code": 8, "message": self.state["fail"]["delete"]}))
    del self.state["endpoints"][path]
    return self._reply(200, dict(operation, response={"@type": "type.googleapis.com/google.protobuf.Empty"}))

  def do_POST(self):
    request = self._record()
    path, body = request["path"][len("/v1/"):], request["body"]
    target, _, method = path.rpartition(":")
    endpoint = self.state["endpoints"].get(target)
    if path == f"{PARENT}/endpoints":
      self.state["created"] += 1
      name = f"{PARENT}/endpoints/{99 + self.state['created']}"
      self.state["endpoints"][name] = dict(body, name=name, trafficSplit={}, deployedModels=[],
                                           createTime=_timestamp(time.time()))
      return self._reply(200, self._operation("Endpoint", self.state["endpoints"][name]))
    if path == f"{PARENT}/models:upload":
      name = f"{PARENT}/models/{200 + sum(m.get('versionId') == '1' for m in self.state['models'].values())}"
      # As Vertex AI answers for a model on a prebuilt serving image: it needs its own machines.
      self.state["models"][name] = dict(body["model"], name=name, versionId="1",
                                        supportedDeploymentResourcesTypes=["DEDICATED_RESOURCES"])
      return self._reply(200, self._operation("UploadModelResponse", {"model": name, "modelVersionId": "1"}))
    if endpoint is None:
      return self._reply(404, _error(404, "NOT_FOUND", f"no route {path}"))
    split = {k: int(v) for k, v in (body or {}).get("trafficSplit", {}).items()}
    if split and sum(split.values()) != 100:
      return self._reply(400, _error(400, "INVALID_ARGUMENT", f"traffic split {split} does not add up to 100"))
    if method == "deployModel":
      self.state["deployed"] += 1
      deployed = dict(body["deployedModel"], id=str(299 + self.state["deployed"]),
                      createTime=f"2026-01-01T00:00:{self.state['deployed']:02d}Z")
      operation = self._operation("DeployModelResponse", {"deployedModel": deployed}, method)
      if "error" not in operation:
        endpoint["deployedModels"].append(deployed)
        if split:
          endpoint["trafficSplit"] = {(deployed["id"] if k == "0" else k): v for k, v in split.items()}
      return self._reply(200, operation)
    if method == "undeployModel":
      ids = [d["id"] for d in endpoint["deployedModels"]]
      if body["deployedModelId"] not in ids:
        return self._reply(404, _error(404, "NOT_FOUND", f"deployed model {body['deployedModelId']} not found"))
      after = split or endpoint["trafficSplit"]
      if after.get(body["deployedModelId"]) and len(ids) > 1:
        return self._reply(400, _error(400, "FAILED_PRECONDITION", f"deployed model {body['deployedModelId']} "
                                       "has traffic: the request's traffic split must take it away"))
      operation = self._operation("UndeployModelResponse", {}, method)
      if "error" not in operation:
        endpoint["deployedModels"] = [d for d in endpoint["deployedModels"] if d["id"] != body["deployedModelId"]]
        left = {k: v for k, v in after.items() if k != body["deployedModelId"]}
        endpoint["trafficSplit"] = left if endpoint["deployedModels"] else {}
      return self._reply(200, operation)
    if method == "predict":
      if not endpoint["trafficSplit"]:
        return self._reply(400, _error(400, "FAILED_PRECONDITION", f"endpoint {target} has no traffic split"))
      if self.state["barrier"] and endpoint["displayName"].endswith("-probe"):
        self.state["barrier"].wait(timeout=120)  # every push in the test is probing now
      served_id = max(endpoint["trafficSplit"], key=endpoint["trafficSplit"].get)
      served = next(d for d in endpoint["deployedModels"] if d["id"] == served_id)
      self.state["answered"].append((target, served["model"].split("@")[0]))
      answer = self.state["answers"].get(served["model"].split("@")[0], "colorize")
      if answer == "error":
        return self._reply(500, _error(500, "INTERNAL", "Internal error encountered."))
      return self._reply(200, {"predictions": [_colorized(i, answer) for i in body["instances"]],
                               "deployedModelId": served_id, "model": served["model"].split("@")[0]})
    return self._reply(404, _error(404, "NOT_FOUND", f"no route {path}"))


@pytest.fixture
def vertex_api():
  """(state, url): a fresh loopback Vertex AI API; aiplatform pointed at it, restored after."""
  from google.auth import credentials
  from google.cloud import aiplatform
  from google.cloud.aiplatform import initializer
  from google.cloud.aiplatform_v1.types import endpoint
  from google.cloud.aiplatform_v1.types import endpoint_service
  from google.cloud.aiplatform_v1.types import model_service
  from google.protobuf import symbol_database
  # The REST transport parses an operation's result (an Any) from JSON through protobuf's symbol
  # database, which otherwise makes a second Python class for the type; aiplatform then drops
  # every Endpoint of that class when listing. Over gRPC, the Pusher's transport in the cloud,
  # results are unpacked with aiplatform's own classes, as registering them here makes REST do.
  for message in (endpoint.Endpoint, model_service.UploadModelResponse, endpoint_service.DeployModelResponse,
                  endpoint_service.UndeployModelResponse):
    symbol_database.Default().RegisterMessage(message.pb())
  state = {"requests": [], "endpoints": {}, "models": {}, "operations": 0, "deployed": 0, "created": 0,
           "answers": {}, "fail": {}, "barrier": None, "answered": []}
  handler = type("Api", (_VertexApi,), {"state": state, "requests": state["requests"]})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  url = f"http://127.0.0.1:{server.server_address[1]}"
  # The Pusher calls aiplatform.init(project, location) itself; what is set here stays.
  aiplatform.init(api_endpoint=url, api_transport="rest", credentials=credentials.AnonymousCredentials())
  yield state
  server.shutdown()
  server.server_close()
  initializer.global_config.__init__()


@pytest.fixture
def gcs_folder(tmp_path, monkeypatch):
  """gs:// paths in TFX's file I/O map to a local folder for the test."""
  from tfx.dsl.io import filesystem_registry
  from tfx.dsl.io.plugins import local
  root = tmp_path / "gcs"

  def local_path(path):
    path = path.decode() if isinstance(path, bytes) else path
    return str(root / path[len("gs://"):]) if path.startswith("gs://") else path

  def mapped(method):
    return staticmethod(lambda *args, **kwargs: method(*map(local_path, args), **kwargs))

  methods = {name: mapped(getattr(local.LocalFilesystem, name))
             for name in ("open", "exists", "isdir", "listdir", "makedirs", "mkdir", "remove", "rmtree", "stat")}
  fake = type("FolderGcs", (local.LocalFilesystem,), {"SUPPORTED_SCHEMES": ["gs://"], **methods})
  registry = filesystem_registry.DEFAULT_FILESYSTEM_REGISTRY
  monkeypatch.setitem(registry._preferred_filesystem_by_scheme, "gs://", fake)
  return root


def _cfg(**deploy):
  values = json.loads(json.dumps(CONFIG))
  values["cloud"]["deploy"].update(deploy)
  return config_lib.from_dict(values)


@pytest.fixture(scope="module")
def graph_only_model(serving_model, tmp_path_factory):
  """The serving model without its 240 MB of variables: what the rollout tests push (the rollout never
  reads the model, the loopback API serves it), so each push copies 7 MB instead of 250."""
  folder = tmp_path_factory.mktemp("graph_only") / "model"
  folder.mkdir()
  shutil.copy(serving_model[1] / "saved_model.pb", folder)
  return None, folder


def _push(cfg, serving_model, tmp_path, blessed=True, pushed_uri=PUSHED_URI):
  """Runs the compiled pipeline's EndpointPusher executor on a Model and a ModelBlessing."""
  from tfx.types import standard_artifacts

  from pipelines import vertex_runner
  component = next(c for c in vertex_runner.build_pipeline(cfg).components if c.id == pipeline_lib.ENDPOINT_PUSHER)
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / "model")
  pathlib.Path(model.uri).mkdir(exist_ok=True)
  serving = pathlib.Path(model.uri) / "Format-Serving"
  if not serving.exists():
    serving.symlink_to(serving_model[1], target_is_directory=True)
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / "blessing")
  blessing.set_int_custom_property("blessed", int(blessed))
  pushed = standard_artifacts.PushedModel()
  pushed.uri = pushed_uri
  executor = component.executor_spec.executor_class()
  executor.Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
              dict(component.exec_properties))
  return pushed


def _posts(state):
  return [(r["path"][len(f"/v1/{PARENT}/"):], r["body"]) for r in state["requests"] if r["method"] == "POST"]


def _serving(state, endpoint=ENDPOINT):
  """{deployed model id: (its Model, its share of the traffic)} of an endpoint now."""
  found = state["endpoints"][f"{PARENT}/{endpoint}"]
  return {d["id"]: (d["model"].split("/")[-1], found["trafficSplit"].get(d["id"], 0)) for d in found["deployedModels"]}


def _one_line_failure(cfg, serving_model, tmp_path):
  from components.endpoint_rollout import rollout
  with pytest.raises(rollout.RolloutError) as failure:
    _push(cfg, serving_model, tmp_path)
  message = str(failure.value)
  assert "\n" not in message and len(message) < 1500, message
  return message


def test_first_push_probes_the_model_alone_then_deploys_it(vertex_api, gcs_folder, serving_model, tmp_path):
  state = vertex_api
  pushed = _push(_cfg(), serving_model, tmp_path)
  posts = _posts(state)
  assert [path for path, _ in posts] == [
      "endpoints", "models:upload", "endpoints", f"{PROBE}:deployModel", f"{PROBE}:predict",
      f"{PROBE}:undeployModel", f"{ENDPOINT}:deployModel"]
  (_, create), (_, upload), (_, create_probe), (_, probe_deploy), (_, predict), _, (_, deploy) = posts
  # The endpoint is looked up by its display name first, created because it is missing, and looked up
  # again (another push may have created one at the same time). Probe endpoints left by killed pushes
  # are looked for; this push creates its own, and deletes it after.
  lookups = [r for r in state["requests"] if r["method"] == "GET" and r["path"] == f"/v1/{PARENT}/endpoints"]
  assert [r["query"]["filter"] for r in lookups] == [['display_name="colorize-nightly"']] * 2 + [
      ['display_name="colorize-nightly-probe"']]
  assert (create["displayName"], create_probe["displayName"]) == ("colorize-nightly", "colorize-nightly-probe")
  assert [r["path"] for r in state["requests"] if r["method"] == "DELETE"] == [f"/v1/{PARENT}/{PROBE}"]
  assert {"team": "vision", "env": "test"}.items() <= create["labels"].items()
  # The model uploaded is the pushed copy in the pipeline root, served by TF 2.16's GPU image, and
  # labelled as this pipeline's.
  model = upload["model"]
  assert model["artifactUri"] == PUSHED_URI
  assert model["containerSpec"]["imageUri"] == "europe-docker.pkg.dev/vertex-ai/prediction/tf2-gpu.2-16:latest"
  assert model["labels"] == {"colorize-pipeline": "colorize-nightly"}
  assert (gcs_folder / PUSHED_URI[len("gs://"):] / "saved_model.pb").is_file()
  # On the probe endpoint it is alone, with all of its traffic, on the machines it will serve on.
  assert probe_deploy["trafficSplit"] == {"0": 100}
  assert probe_deploy["deployedModel"]["dedicatedResources"] == deploy["deployedModel"]["dedicatedResources"]
  # It is asked what `colorize photos --endpoint` asks: the serving gate's JPEG and PNG with alpha.
  from components import serving_gate
  sent = [base64.b64decode(i["b64"]) for i in predict["instances"]]
  assert sent == [(pathlib.Path(serving_gate.PHOTOS_DIR) / p).read_bytes()
                  for p in (serving_gate.JPEG_PHOTO, serving_gate.ALPHA_PHOTO)]
  deployed = deploy["deployedModel"]
  assert deployed["model"] == f"{PARENT}/models/200@1"
  from google.cloud.aiplatform_v1.types import accelerator_type
  machine = deployed["dedicatedResources"]["machineSpec"]
  # Enums go over REST as numbers.
  assert accelerator_type.AcceleratorType(machine.pop("acceleratorType")).name == "NVIDIA_TESLA_T4"
  assert machine == {"machineType": "n1-standard-8", "acceleratorCount": 1}
  resources = deployed["dedicatedResources"]
  assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 3)
  assert deployed["serviceAccount"] == "pipelines@colorize-test.iam.gserviceaccount.com"
  assert deploy["trafficSplit"] == {"0": 100}
  assert _serving(state) == {"301": ("200@1", 100)}
  assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}"]
  assert pushed.get_int_custom_property("pushed") == 1
  assert pushed.get_string_custom_property("pushed_destination") == f"{PARENT}/models/200"


def test_next_pushes_split_traffic_and_keep_only_the_newest_models(vertex_api, gcs_folder, graph_only_model, tmp_path):
  state = vertex_api
  _push(_cfg(), graph_only_model, tmp_path)
  state["requests"].clear()
  _push(_cfg(traffic_percentage=20), graph_only_model, tmp_path)
  # 20% to the new model, the rest stays with the model deployed before; keep_models: 2 keeps both.
  assert [path for path, _ in _posts(state)][-1] == f"{ENDPOINT}:deployModel"
  assert _posts(state)[-1][1]["trafficSplit"] == {"0": 20, "301": 80}
  assert _serving(state) == {"301": ("200@1", 80), "303": ("201@1", 20)}
  # A model someone else deployed (no label of this pipeline) takes some of the traffic.
  endpoint = state["endpoints"][f"{PARENT}/{ENDPOINT}"]
  state["models"][f"{PARENT}/models/999"] = {"name": f"{PARENT}/models/999", "displayName": "theirs"}
  endpoint["deployedModels"].insert(0, {"id": "299", "model": f"{PARENT}/models/999@1",
                                        "createTime": "2025-01-01T00:00:00Z"})
  endpoint["trafficSplit"] = {"301": 60, "303": 20, "299": 20}
  state["requests"].clear()
  _push(_cfg(traffic_percentage=20), graph_only_model, tmp_path)
  posts = _posts(state)
  # The third: 20% to it, the rest shared by the one it keeps and the other's model as they shared it;
  # then the oldest of this pipeline's models, out of the split already, is undeployed. Theirs stays.
  assert [path for path, _ in posts][-2:] == [f"{ENDPOINT}:deployModel", f"{ENDPOINT}:undeployModel"]
  assert posts[-2][1]["trafficSplit"] == {"0": 20, "303": 40, "299": 40}
  assert posts[-1][1]["deployedModelId"] == "301"
  assert _serving(state) == {"299": ("999@1", 40), "303": ("201@1", 40), "305": ("202@1", 20)}
  # keep_models: 1 keeps the new model only; the other's model keeps the rest of the split.
  _push(_cfg(keep_models=1, traffic_percentage=60), graph_only_model, tmp_path)
  assert _serving(state) == {"299": ("999@1", 40), "307": ("203@1", 60)}
  assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}"]


def test_an_endpoint_name_with_quotes_and_backslashes_is_found_again(vertex_api, gcs_folder, graph_only_model,
                                                                      tmp_path):
  state = vertex_api
  name = 'Tom\'s "best" \\ colorizer'
  for _ in range(2):
    _push(_cfg(endpoint_name=name), graph_only_model, tmp_path)
  # One endpoint of that name, the second push found it; each push's probe endpoint was found by the
  # orphan lookup's filter (the loopback API refuses one it cannot parse) and deleted.
  assert [e["displayName"] for e in state["endpoints"].values()] == [name]
  assert len(_serving(state)) == 2
  assert [r["method"] for r in state["requests"]].count("DELETE") == 2


def test_a_new_model_that_answers_wrong_never_gets_traffic(vertex_api, gcs_folder, graph_only_model, tmp_path):
  state = vertex_api
  _push(_cfg(), graph_only_model, tmp_path)
  # One push each (one session of the loopback API, models 201-203), cheaper than a fresh endpoint each.
  wrong = {"junk": "000000000072.jpg: the endpoint answered something else than a JPEG",
           "wrong_size": "000000000072.jpg: the endpoint answered a 213x320 image for a 427x640 photo",
           "error": "answered HTTP 500: Internal error encountered"}
  for number, (answer, why) in enumerate(wrong.items(), start=201):
    state["answers"][f"{PARENT}/models/{number}"] = answer
    state["requests"].clear()
    message = _one_line_failure(_cfg(traffic_percentage=50), graph_only_model, tmp_path)
    probe = f"endpoints/{number - 99}"  # each push's own: the first push's endpoints were 100 and 101
    assert message.startswith(f"the new model {PARENT}/models/{number} did not answer correctly on probe endpoint "
                              f"{PARENT}/{probe}")
    assert "so that was deleted and endpoint 'colorize-nightly''s traffic is unchanged" in message
    assert why in message, answer
    # The old model keeps serving all requests; the new one is deployed nowhere.
    assert _serving(state) == {"301": ("200@1", 100)}
    assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}"]
    assert [path for path, _ in _posts(state)] == [
        "models:upload", "endpoints", f"{probe}:deployModel", f"{probe}:predict", f"{probe}:undeployModel"]


def test_a_failed_probe_deploy_is_one_line_and_its_probe_endpoint_deleted(vertex_api, gcs_folder, graph_only_model,
                                                                         tmp_path):
  state = vertex_api
  _push(_cfg(), graph_only_model, tmp_path)
  state["fail"]["deployModel"] = "The following quota metrics exceed quota limits: custom_model_serving_nvidia_t4_gpus"
  message = _one_line_failure(_cfg(), graph_only_model, tmp_path)
  assert message.startswith(f"Vertex AI: deploying {PARENT}/models/201 to probe endpoint {PARENT}/endpoints/102 failed")
  assert "quota limits" in message and message.endswith("endpoint 'colorize-nightly''s traffic is unchanged")
  assert _serving(state) == {"301": ("200@1", 100)}
  assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}"]  # its probe endpoint deleted all the same
  # When that deletion fails too, the failure reported is still the one that stopped the push.
  state["fail"]["delete"] = "The service is currently unavailable."
  message = _one_line_failure(_cfg(), graph_only_model, tmp_path)
  assert message.startswith(f"Vertex AI: deploying {PARENT}/models/202 to probe endpoint {PARENT}/endpoints/103 failed")
  del state["fail"]["deployModel"], state["fail"]["delete"]
  assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}", f"{PARENT}/endpoints/103"]


def test_probe_endpoints_left_by_killed_pushes_are_deleted_and_live_ones_left(vertex_api, gcs_folder,
                                                                               graph_only_model, tmp_path):
  state = vertex_api
  _push(_cfg(), graph_only_model, tmp_path)
  from components.endpoint_rollout import rollout
  # Two probe endpoints with a model on each: one of a push killed 7 hours ago (its machines still
  # running), one created a minute ago by a push that is probing now.
  for number, age in ((150, rollout.PROBE_ORPHAN_SECONDS + 3600), (151, 60)):
    state["endpoints"][f"{PARENT}/endpoints/{number}"] = {
        "name": f"{PARENT}/endpoints/{number}", "displayName": "colorize-nightly-probe",
        "createTime": _timestamp(time.time() - age), "trafficSplit": {f"2{number}": 100},
        "deployedModels": [{"id": f"2{number}", "model": f"{PARENT}/models/200@1"}]}
  _push(_cfg(), graph_only_model, tmp_path)
  assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}", f"{PARENT}/endpoints/151"]
  assert _serving(state, "endpoints/151") == {"2151": ("200@1", 100)}
  assert f"{PARENT}/endpoints/150:undeployModel" in [r["path"][len("/v1/"):] for r in state["requests"]]


def test_two_pushes_at_once_each_probe_their_own_model(vertex_api, gcs_folder, graph_only_model, tmp_path):
  # A schedule's run and a manual one, pushing to the same endpoint: both probe at the same moment.
  state = vertex_api
  state["barrier"] = threading.Barrier(2)
  pushed, failed = [], []

  def push(i):
    try:
      pushed.append(_push(_cfg(), graph_only_model, tmp_path / f"run{i}", pushed_uri=f"{PUSHED_URI}{i}"))
    except Exception as e:  # reported by the assertion below
      failed.append(e)

  for i in range(2):
    (tmp_path / f"run{i}").mkdir()
  threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(timeout=300)
  assert not failed and len(pushed) == 2, failed
  # Each probe endpoint was answered by the one model its push uploaded, and both are gone now.
  probes = {path: body["deployedModel"]["model"].split("@")[0] for path, body in _posts(state)
            if path.endswith(":deployModel") and not path.startswith(ENDPOINT)}
  assert len(probes) == 2
  assert sorted(state["answered"]) == sorted((f"{PARENT}/{path.split(':')[0]}", model)
                                             for path, model in probes.items())
  assert sorted(state["endpoints"]) == [f"{PARENT}/{ENDPOINT}"]
  assert sorted(p.get_string_custom_property("pushed_destination") for p in pushed) == sorted(probes.values())


def test_an_unreachable_api_is_one_line(vertex_api, gcs_folder, graph_only_model, tmp_path):
  from google.cloud import aiplatform
  with socket.socket() as closed:
    closed.bind(("127.0.0.1", 0))
    aiplatform.init(api_endpoint=f"http://127.0.0.1:{closed.getsockname()[1]}")
    message = _one_line_failure(_cfg(), graph_only_model, tmp_path)
  assert message.startswith("Vertex AI: finding or creating endpoint 'colorize-nightly' failed (ConnectionError: "), \
      message


def test_keep_models_counts_the_new_one():
  from cli import options
  assert _cfg().cloud.deploy.keep_models == 2
  assert "--deploy-keep-models" in {key.flag for key in options.keys()}
  with pytest.raises(config_lib.ConfigError, match=r"^cloud.deploy.keep_models must be >= 1 \(the new model "
                                                   r"counts\), got 0$"):
    _cfg(keep_models=0)


def test_an_unblessed_model_is_not_deployed(vertex_api, gcs_folder, serving_model, tmp_path):
  pushed = _push(_cfg(), serving_model, tmp_path, blessed=False)
  assert vertex_api["requests"] == []
  assert pushed.get_int_custom_property("pushed") == 0


def test_the_rest_of_the_split_goes_to_the_kept_and_the_others_models_as_they_shared_it():
  from components.endpoint_rollout import rollout
  # 80 shared 2:1 is 53.3 and 26.7: whole percentages, the point lost to rounding to the larger remainder.
  assert rollout.traffic_split(20, {"1": 50, "2": 25, "9": 25}, ["1", "2"], []) == {"0": 20, "1": 53, "2": 27}
  # A model dropped from the kept ones (here "1") gets nothing; others' models ("9") keep their part.
  assert rollout.traffic_split(10, {"1": 50, "2": 25, "9": 25}, ["2"], ["9"]) == {"0": 10, "2": 45, "9": 45}
  # No kept model has traffic now (the last push took 100%): the newest kept one gets the rest.
  assert rollout.traffic_split(20, {"3": 100}, ["1", "2"], []) == {"0": 20, "2": 80}
  # Nothing else to serve (the first push, keep_models: 1): the new model gets all.
  assert rollout.traffic_split(20, {"1": 100}, [], []) == {"0": 100}
  assert rollout.traffic_split(0, {}, [], ["9"]) == {"0": 100}
  assert rollout.traffic_split(100, {"1": 100}, ["1"], []) == {"0": 100}


def test_cpu_serving_image_and_region_registry():
  cfg = _cfg(accelerator_type="", machine_type="n1-standard-4")
  assert cloud_config.serving_image(cfg.cloud) == "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest"
  us = dataclasses.replace(cfg.cloud, region="us-central1")
  assert cloud_config.serving_image(us) == "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-16:latest"
  own = dataclasses.replace(cfg.cloud, deploy=dataclasses.replace(cfg.cloud.deploy, serving_image="x.dev/p/tfs:1"))
  assert cloud_config.serving_image(own) == "x.dev/p/tfs:1"
  # The prebuilt image serves the TensorFlow the model is exported with.
  major, minor = importlib.metadata.version("tensorflow").split(".")[:2]
  assert cloud_config.SERVING_TF_VERSION == f"{major}-{minor}"


def test_off_by_default():
  values = json.loads(json.dumps(CONFIG))
  del values["cloud"]["deploy"]
  cfg = config_lib.from_dict(values)
  assert cloud_config.vertex_serving_args(cfg) is None
