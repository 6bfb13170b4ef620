"""cloud.deploy: TFX's Vertex Pusher, configured by pipelines/cloud_config.py, deploys a blessed model.

The real Pusher executor (tfx.extensions.google_cloud_ai_platform) runs with the exact
exec properties of the compiled pipeline's EndpointPusher, and aiplatform's REST transport
talks to a loopback server that answers like the Vertex AI API (endpoints, models, deploy)
and records every request. The model is copied to a gs:// destination as in the cloud; here
gs:// is a folder (a TFX filesystem plugin), as the pipeline root's bucket is not the subject.
"""
import dataclasses
import http.server
import importlib.metadata
import json
import pathlib
import threading

from cloud_fixtures import CONFIG
from cloud_fixtures import JsonApi
import pytest

from pipelines import cloud_config
from pipelines import config as config_lib
from pipelines import pipeline as pipeline_lib

pytest_plugins = ("trainer_fixtures",)

PROJECT, REGION = "colorize-test", "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
PUSHED_URI = "gs://colorize-bucket/runs/pipeline/colorize-nightly/EndpointPusher/pushed_model/7"


class _VertexApi(JsonApi, http.server.BaseHTTPRequestHandler):
  """Endpoints, models and deployments of one project, kept in memory; long operations finish at once."""
  state = None

  def _operation(self, type_name, response):
    self.state["operations"] += 1
    return {"name": f"{PARENT}/operations/{self.state['operations']}", "done": True,
            "response": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{type_name}", **response}}

  def do_GET(self):
    request = self._record()
    path, endpoints, models = request["path"][len("/v1/"):], self.state["endpoints"], self.state["models"]
    if path == f"{PARENT}/endpoints":
      wanted = request["query"].get("filter", [""])[0]
      found = [e for e in endpoints.values() if wanted in ("", f'display_name="{e["displayName"]}"')]
      return self._reply(200, {"endpoints": found} if found else {})
    if path in endpoints:
      return self._reply(200, endpoints[path])
    if path.split("@")[0] in models:
      return self._reply(200, models[path.split("@")[0]])
    return self._reply(404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}})

  def do_POST(self):
    request = self._record()
    path, body = request["path"][len("/v1/"):], request["body"]
    if path == f"{PARENT}/endpoints":
      name = f"{PARENT}/endpoints/{100 + len(self.state['endpoints'])}"
      self.state["endpoints"][name] = dict(body, name=name)
      return self._reply(200, self._operation("Endpoint", self.state["endpoints"][name]))
    if path == f"{PARENT}/models:upload":
      name = f"{PARENT}/models/{200 + len(self.state['models'])}"
      # As Vertex AI answers for a model on a prebuilt serving image: it needs its own machines.
      self.state["models"][name] = dict(body["model"], name=name, versionId="1",
                                        supportedDeploymentResourcesTypes=["DEDICATED_RESOURCES"])
      return self._reply(200, self._operation("UploadModelResponse", {"model": name, "modelVersionId": "1"}))
    if path.endswith(":deployModel") and path[:-len(":deployModel")] in self.state["endpoints"]:
      endpoint = self.state["endpoints"][path[:-len(":deployModel")]]
      deployed = dict(body["deployedModel"], id=str(300 + len(endpoint.get("deployedModels", []))))
      endpoint.setdefault("deployedModels", []).append(deployed)
      split = {k: v for k, v in body.get("trafficSplit", {}).items() if k != "0"}
      split[deployed["id"]] = body.get("trafficSplit", {}).get("0", 0)
      endpoint["trafficSplit"] = split
      return self._reply(200, self._operation("DeployModelResponse", {"deployedModel": deployed}))
    return self._reply(404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}})


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
  for message in (endpoint.Endpoint, model_service.UploadModelResponse, endpoint_service.DeployModelResponse):
    symbol_database.Default().RegisterMessage(message.pb())
  state = {"requests": [], "endpoints": {}, "models": {}, "operations": 0}
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


def _push(cfg, serving_model, tmp_path, blessed=True):
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
  pushed.uri = PUSHED_URI
  executor = component.executor_spec.executor_class()
  executor.Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
              dict(component.exec_properties))
  return pushed


def _calls(state):
  return [(r["method"], r["path"].split("/")[-1]) for r in state["requests"]]


def test_first_push_creates_the_endpoint_uploads_and_deploys(vertex_api, gcs_folder, serving_model, tmp_path):
  state = vertex_api
  pushed = _push(_cfg(), serving_model, tmp_path)
  posts = [r for r in state["requests"] if r["method"] == "POST"]
  assert [r["path"] for r in posts] == [f"/v1/{PARENT}/endpoints", f"/v1/{PARENT}/models:upload",
                                        f"/v1/{PARENT}/endpoints/100:deployModel"]
  create, upload, deploy = (r["body"] for r in posts)
  # The endpoint is looked up by its display name first, and created because it is missing.
  lookups = [r for r in state["requests"] if r["method"] == "GET" and r["path"] == f"/v1/{PARENT}/endpoints"]
  assert lookups[0]["query"]["filter"] == ['display_name="colorize-nightly"']
  assert create["displayName"] == "colorize-nightly"
  assert {"team": "vision", "env": "test"}.items() <= create["labels"].items()
  # The model uploaded is the pushed copy in the pipeline root, served by TF 2.16's GPU image.
  model = upload["model"]
  assert model["artifactUri"] == PUSHED_URI
  assert model["containerSpec"]["imageUri"] == "europe-docker.pkg.dev/vertex-ai/prediction/tf2-gpu.2-16:latest"
  assert (gcs_folder / PUSHED_URI[len("gs://"):] / "saved_model.pb").is_file()
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
  assert pushed.get_int_custom_property("pushed") == 1
  assert pushed.get_string_custom_property("pushed_destination") == f"{PARENT}/models/200"


def test_next_push_reuses_the_endpoint_and_splits_traffic(vertex_api, gcs_folder, serving_model, tmp_path):
  state = vertex_api
  _push(_cfg(), serving_model, tmp_path)
  state["requests"].clear()
  _push(_cfg(traffic_percentage=20), serving_model, tmp_path)
  posts = [r for r in state["requests"] if r["method"] == "POST"]
  assert [r["path"] for r in posts] == [f"/v1/{PARENT}/models:upload", f"/v1/{PARENT}/endpoints/100:deployModel"]
  # 20% to the new model, the rest stays with the model deployed before.
  assert posts[1]["body"]["trafficSplit"] == {"0": 20, "300": 80}
  assert posts[1]["body"]["deployedModel"]["model"] == f"{PARENT}/models/201@1"


def test_an_unblessed_model_is_not_deployed(vertex_api, gcs_folder, serving_model, tmp_path):
  pushed = _push(_cfg(), serving_model, tmp_path, blessed=False)
  assert vertex_api["requests"] == []
  assert pushed.get_int_custom_property("pushed") == 0


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
