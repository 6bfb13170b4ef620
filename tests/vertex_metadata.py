"""A loopback Vertex AI API holding pipeline jobs and the Vertex ML Metadata their runs left.

`translate` turns a local run's lineage (lineage.graph.upstream_graph of a real MLMD store)
into what Vertex AI Pipelines records for the same run: one PipelineJob a run, a task a TFX
component, each task's execution (schemaTitle system.ContainerExecution, its parameters in the
metadata as "input:NAME"), its input and output artifacts by key (TFX's standard types as
"tfx.NAME", the project's own by their type name; properties in the metadata Struct), and
INPUT/OUTPUT events without keys. The server answers the REST v1 calls that read them, in
camelCase JSON: pipelineJobs.get, pipelineJobs.list (filter, orderBy, pageSize,
nextPageToken) and artifacts:queryArtifactLineageSubgraph (every node within maxHops, both
ways). A token endpoint stands in for Google's OAuth server: requests must carry its token.
"""
import datetime
import http.server
import json
import threading
import urllib.parse

from cloud_fixtures import JsonApi

PROJECT, REGION, PIPELINE = "colorize-test", "europe-west4", "colorize"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
STORE = f"{PARENT}/metadataStores/default"
TOKEN = "ya29.loopback-token"
_NANOS = 123456789  # Vertex writes nanoseconds: a reader must take any number of fraction digits


def job_id(run: str) -> str:
  """A local run id (an ISO time) as a Vertex job id: <pipeline>-<digits>."""
  return f"{PIPELINE}-{''.join(c for c in run if c.isdigit())}"


def _stamp(local: str) -> str:
  """lineage.graph.format_time's local time as the RFC 3339 UTC time Vertex gives."""
  moment = datetime.datetime.strptime(local, "%Y-%m-%d %H:%M:%S").astimezone(datetime.timezone.utc)
  return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{_NANOS:09d}Z"


def _standard_titles():
  from tfx.orchestration.kubeflow.v2 import compiler_utils
  return {title[len("tfx."):] for title in compiler_utils.TITLE_TO_CLASS_PATH}


def translate(graph, state="PIPELINE_STATE_SUCCEEDED", report_task="EvaluationReport"):
  """{job name: PipelineJob} and the events, for a local lineage graph."""
  standard = _standard_titles()
  artifacts = {a["id"]: artifact(a["id"], f"tfx.{a['type']}" if a["type"] in standard else a["type"], a["uri"],
                                 _stamp(a["created"]), dict(a["properties"], name=f"{a['id']}",
                                                            producer_component="?", tfx_version="1.16.0"),
                                 a["state"])
               for a in [*graph["artifacts"], *graph["reports"].values()]}
  jobs, events = {}, []

  def job_of(run, created):
    name = f"{PARENT}/pipelineJobs/{job_id(run)}"
    if name not in jobs:
      jobs[name] = {
          "name": name, "displayName": job_id(run), "createTime": _stamp(created), "state": state,
          "pipelineSpec": {"pipelineInfo": {"name": PIPELINE}, "schemaVersion": "2.1.0"},
          "runtimeConfig": {"gcsOutputDirectory": "gs://colorize-bucket/runs/pipeline/colorize"},
          "jobDetail": {
              "pipelineContext": {"name": f"{STORE}/contexts/{PIPELINE}", "schemaTitle": "system.Pipeline"},
              "pipelineRunContext": {"name": f"{STORE}/contexts/{job_id(run)}", "schemaTitle": "system.PipelineRun"},
              "taskDetails": [{"taskId": "1", "taskName": PIPELINE, "state": "SUCCEEDED",
                               "createTime": _stamp(created),
                               "execution": {"name": f"{STORE}/executions/9{len(jobs)}000",
                                             "schemaTitle": "system.DagExecution", "state": "COMPLETE",
                                             "createTime": _stamp(created), "metadata": {}}}]}}
    return jobs[name]

  def add_task(run, created, number, component, execution, inputs, outputs):
    add(job_of(run, created), events, number, component, execution,
        {k: [artifacts[i] for i in ids] for k, ids in inputs.items()},
        {k: [artifacts[i] for i in ids] for k, ids in outputs.items()})

  for e in graph["executions"]:
    add_task(e["run"], e["created"], e["id"], e["component"],
             {"displayName": e["component"], "schemaTitle": "system.ContainerExecution", "state": e["state"],
              "createTime": _stamp(e["created"]), "updateTime": _stamp(e["created"]),
              "metadata": {f"input:{k}": v for k, v in e["parameters"].items()}},
             e["inputs"], e["outputs"])
  evaluators = {i: e for e in graph["executions"] for ids in e["outputs"].values() for i in ids}
  for blessing, report in graph["reports"].items():
    maker = evaluators[int(blessing)]
    add_task(maker["run"], report["created"], int(blessing) * 100, report_task,
             {"displayName": report_task, "schemaTitle": "system.ContainerExecution", "state": "COMPLETE",
              "createTime": _stamp(report["created"]), "metadata": {}},
             {"blessing": [int(blessing)]}, {"report": [report["id"]]})
  return jobs, events


def artifact(number, schema_title, uri, created, metadata, state="LIVE"):
  """An artifact resource as Vertex ML Metadata gives it."""
  return {"name": f"{STORE}/artifacts/{number}", "displayName": str(number), "uri": uri, "schemaTitle": schema_title,
          "schemaVersion": "0.0.1", "state": state, "createTime": created, "updateTime": created,
          "metadata": metadata, "etag": "1"}


def add(job, events, number, component, execution, inputs, outputs):
  """A task of `job` with execution `number` (its other fields given), and the events it leaves."""
  name = f"{STORE}/executions/{number}"
  execution = dict(execution, name=name)
  job["jobDetail"]["taskDetails"].append({
      "taskId": str(1000 + number), "parentTaskId": "1", "taskName": component,
      "state": "SKIPPED" if execution["state"] == "CACHED" else "SUCCEEDED",
      "createTime": execution["createTime"], "execution": execution,
      "inputs": {k: {"artifacts": listed} for k, listed in inputs.items()},
      "outputs": {k: {"artifacts": listed} for k, listed in outputs.items()}})
  for direction, ends in (("INPUT", inputs), ("OUTPUT", outputs)):
    events.extend({"artifact": a["name"], "execution": name, "eventTime": execution["createTime"], "type": direction}
                  for listed in ends.values() for a in listed)


class _MetadataApi(JsonApi, http.server.BaseHTTPRequestHandler):
  state = None

  def do_POST(self):  # Google's OAuth token endpoint, for the key file the tests write
    length = int(self.headers.get("Content-Length") or 0)
    form = urllib.parse.parse_qs(self.rfile.read(length).decode())
    self.requests.append({"method": "POST", "path": self.path, "form": form})
    if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or not form.get("assertion"):
      return self._reply(400, {"error": "invalid_grant"})
    self._reply(200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})

  def do_GET(self):
    request = self._record()
    path, query, jobs = request["path"][len("/v1/"):], request["query"], self.state["jobs"]
    if request["authorization"] != f"Bearer {TOKEN}":
      return self._error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    if path in self.state["forbidden"]:
      return self._error(403, "PERMISSION_DENIED", f"Permission 'aiplatform.pipelineJobs.get' denied on '{path}'")
    if path == f"{PARENT}/pipelineJobs":
      return self._list(query)
    if path in jobs:
      return self._reply(200, jobs[path])
    if path.endswith(":queryArtifactLineageSubgraph") and path.split(":")[0] in self._artifacts():
      return self._reply(200, self._subgraph(path.split(":")[0], int(query.get("maxHops", ["-1"])[0])))
    return self._error(404, "NOT_FOUND", f'The resource "{path.split(":")[0]}" does not exist.')

  def _error(self, code, status, message):
    self._reply(code, {"error": {"code": code, "message": message, "status": status}})

  def _list(self, query):
    wanted = query.get("filter", [""])[0]
    if wanted and not wanted.startswith("pipeline_name="):
      return self._error(400, "INVALID_ARGUMENT", f"Unsupported filter: {wanted}")
    found = [j for j in self.state["jobs"].values() if not wanted or wanted == f'pipeline_name="{PIPELINE}"']
    order = query.get("orderBy", ["create_time"])[0]
    found.sort(key=lambda j: (j["createTime"], j["name"]), reverse=order.endswith(" desc"))
    start = int(query.get("pageToken", ["0"])[0])
    size = min(int(query.get("pageSize", [self.state["page_size"]])[0]), self.state["page_size"])
    page = {"pipelineJobs": found[start:start + size]}
    if start + size < len(found):
      page["nextPageToken"] = str(start + size)
    return self._reply(200, page)

  def _artifacts(self):
    return {a["name"]: a for j in self.state["jobs"].values() for t in j["jobDetail"]["taskDetails"]
            for d in ("inputs", "outputs") for listed in t.get(d, {}).values() for a in listed["artifacts"]}

  def _subgraph(self, start, max_hops):
    """Every artifact and execution within max_hops events of `start`, either way (no limit if < 0)."""
    executions = {t["execution"]["name"]: t["execution"] for j in self.state["jobs"].values()
                  for t in j["jobDetail"]["taskDetails"]}
    nodes, frontier, hops = {start}, {start}, 0
    while frontier and (max_hops < 0 or hops < max_hops):
      frontier = {ev[other] for ev in self.state["events"] for side, other in (("artifact", "execution"),
                                                                                ("execution", "artifact"))
                  if ev[side] in frontier} - nodes
      nodes |= frontier
      hops += 1
    artifacts = self._artifacts()
    return {"artifacts": [artifacts[n] for n in sorted(nodes) if n in artifacts],
            "executions": [executions[n] for n in sorted(nodes) if n in executions],
            "events": [ev for ev in self.state["events"] if ev["artifact"] in nodes and ev["execution"] in nodes]}


class Server:
  """The loopback API: `url`, `state` (jobs, events, forbidden paths, page size) and `requests`."""

  def __init__(self, jobs, events, page_size=1):
    self.state = {"jobs": jobs, "events": events, "forbidden": set(), "page_size": page_size}
    self.requests = []
    handler = type("Api", (_MetadataApi,), {"state": self.state, "requests": self.requests})
    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=self._server.serve_forever, daemon=True).start()
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

  def credentials_file(self, folder) -> str:
    """A service account key file, as `gcloud iam service-accounts keys create` writes one, whose
    token comes from this server (its token_uri)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = folder / "key.json"
    path.write_text(json.dumps({"type": "service_account", "project_id": PROJECT, "private_key_id": "1",
                                "private_key": pem, "client_email": f"reader@{PROJECT}.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": f"{self.url}/token"}))
    return str(path)

  def close(self):
    self._server.shutdown()
    self._server.server_close()
