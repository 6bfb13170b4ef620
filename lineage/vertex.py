"""Where a model came from, read from Vertex ML Metadata: the lineage of a Vertex AI pipeline job.

Plain REST calls to Vertex AI (v1) with the user's application-default credentials: no client
library to import, each documented answer read as it is documented. The graph is the one
lineage.graph builds from a local store, so the same renderers draw it:
- the job (pipelineJobs.get) lists its tasks: each task's execution (its metadata holds the
  task's parameters as "input:NAME"), and its input and output artifacts by key;
- the start artifact's lineage (artifacts/ID:queryArtifactLineageSubgraph) holds every
  execution and artifact connected to it, both ways; the walk keeps what is upstream. Vertex's
  events carry no key, so the keys come from the tasks of the jobs that ran each execution:
  this job's, then the same pipeline's other jobs, newest first, until every execution is placed.
"""
import contextlib
import datetime
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from lineage import graph as graph_lib

API = "https://{region}-aiplatform.googleapis.com"
JOB_NAME = re.compile(r"projects/([^/]+)/locations/([^/]+)/pipelineJobs/([^/]+)")
JOB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
# The states of a job that is not over (PipelineState): its lineage is not complete yet.
UNFINISHED = ("PIPELINE_STATE_QUEUED", "PIPELINE_STATE_PENDING", "PIPELINE_STATE_RUNNING",
              "PIPELINE_STATE_CANCELLING", "PIPELINE_STATE_PAUSED")
_STATUS = {"PIPELINE_STATE_SUCCEEDED": "complete", "PIPELINE_STATE_FAILED": "failed",
           "PIPELINE_STATE_CANCELLED": "interrupted"}
_TIMEOUT_S = 60
LOGIN = ("no Google Cloud credentials: run `gcloud auth application-default login` "
         "(or set GOOGLE_APPLICATION_CREDENTIALS)")


def job_name(job: str, cloud) -> str:
  """The job's resource name from a resource name, or from a job id and the config's cloud section."""
  if JOB_NAME.fullmatch(job):
    return job
  if not JOB_ID.fullmatch(job):
    raise graph_lib.UserError(f"--vertex-job {job!r} is neither projects/P/locations/L/pipelineJobs/ID nor a job id")
  if cloud is None or not cloud.project:
    raise graph_lib.UserError(f"--vertex-job {job}: a bare job id needs the config's cloud.project and cloud.region "
                    "(--config); or give projects/P/locations/L/pipelineJobs/ID")
  return f"projects/{cloud.project}/locations/{cloud.region}/pipelineJobs/{job}"


class Client:
  """Authorized GETs to Vertex AI for one job's project and region."""

  def __init__(self, job: str, api: Optional[str] = None):
    self.job = job
    project, region, self.job_id = JOB_NAME.fullmatch(job).groups()
    self.parent = f"projects/{project}/locations/{region}"
    self.store = f"{self.parent}/metadataStores/default"
    self.api = (api or API.format(region=region)).rstrip("/")
    self._session = None

  def get(self, path: str, **query) -> Dict[str, Any]:
    import google.auth.exceptions
    import requests
    url = f"{self.api}/v1/{path}"
    try:
      answer = self.session().get(url, params={k: v for k, v in query.items() if v is not None}, timeout=_TIMEOUT_S)
    except google.auth.exceptions.RefreshError as e:
      raise graph_lib.UserError(f"{LOGIN}; the credentials found could not be used: {e}") from e
    except google.auth.exceptions.TransportError as e:
      raise graph_lib.LineageError(f"cannot reach Google's sign-in service to use the credentials: {e}") from e
    except requests.RequestException as e:
      raise graph_lib.LineageError(f"cannot reach Vertex AI at {self.api}: {type(e).__name__}") from e
    if answer.status_code == 404:
      raise graph_lib.UserError(f"Vertex AI has no {path.split(':')[0]} (404); check the id, project and region")
    if answer.status_code in (401, 403):
      raise graph_lib.LineageError(
          f"Vertex AI refused to show {path} ({answer.status_code} {_message(answer)}); "
          "reading lineage needs roles/aiplatform.viewer on the project")
    if answer.status_code != 200:
      raise graph_lib.LineageError(f"Vertex AI answered {answer.status_code} for {path}: {_message(answer)}")
    try:
      return answer.json()
    except ValueError as e:
      raise graph_lib.LineageError(f"Vertex AI answered {path} with no JSON") from e

  def pages(self, path: str, field: str, **query) -> Iterator[Dict[str, Any]]:
    """The items of a list call, page after page (nextPageToken)."""
    token, seen = None, set()
    while True:
      answer = self.get(path, pageToken=token, **query)
      yield from answer.get(field, [])
      token = answer.get("nextPageToken")
      if not token:
        return
      if token in seen:
        raise graph_lib.LineageError(f"Vertex AI gave the same page of {path} twice (nextPageToken {token!r})")
      seen.add(token)

  def session(self):
    if self._session is None:
      import google.auth
      from google.auth.transport import requests as auth_requests
      try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
      except (google.auth.exceptions.DefaultCredentialsError, OSError, ValueError) as e:  # a key path that is no key
        raise graph_lib.UserError(f"{LOGIN} ({' '.join(str(e).split())[:300]})") from e
      self._session = auth_requests.AuthorizedSession(credentials)
    return self._session


def _message(answer) -> str:
  try:
    error = answer.json()["error"]
    return f"{error.get('status', '')}: {error.get('message', '')}".strip(": ")
  except (ValueError, KeyError, TypeError, AttributeError):
    return answer.reason or ""


def model_lineage(client: Client, artifact_id: Optional[int]) -> Tuple[Any, Dict[str, Any]]:
  """(start id, graph): the lineage of `artifact_id`, or else of the model the job pushed."""
  with _documented_shapes():
    return _model_lineage(client, artifact_id)


def _model_lineage(client: Client, artifact_id: Optional[int]) -> Tuple[Any, Dict[str, Any]]:
  job = client.get(client.job)
  state = job.get("state", "")
  if state in UNFINISHED:
    raise graph_lib.LineageError(
        f"job {client.job_id} is still running ({state}); its lineage is complete once it ends "
        "(`colorize lineage --vertex-job ... runs` shows its state)")
  tasks = {}
  _place(tasks, job)
  if artifact_id is not None:
    start = f"{client.store}/artifacts/{artifact_id}"
  else:
    pushed = [a for t in job.get("jobDetail", {}).get("taskDetails", []) for ids in t.get("outputs", {}).values()
              for a in ids.get("artifacts", []) if _type(a) == graph_lib.PUSHED_MODEL]
    if not pushed:
      raise graph_lib.LineageError(
          f"job {client.job_id} ({state}) made no {graph_lib.PUSHED_MODEL}: its Pusher failed, was skipped or "
          "did not run; pass an artifact id (the number that ends an artifact's resource name), e.g. of its Model")
    # As for a local store: the latest that was pushed (with cloud.deploy two pushers ran).
    start = max(pushed, key=lambda a: (a.get("metadata", {}).get("pushed") == 1, a.get("createTime", ""),
                                       _sort_key(_id(a["name"]))))["name"]
  sub = client.get(start + ":queryArtifactLineageSubgraph", maxHops=graph_lib.MAX_HOPS)
  artifacts = {a["name"]: a for a in sub.get("artifacts", [])}
  if start not in artifacts:
    raise graph_lib.UserError(f"Vertex ML Metadata has no artifact {start}")
  executions = {e["name"]: e for e in sub.get("executions", [])}
  kept_artifacts, kept_executions = _upstream(start, sub.get("events", []))
  missing = kept_executions - set(tasks)
  if missing:  # executions of earlier jobs (cached results, the baseline a resolver found)
    pipeline = job.get("pipelineSpec", {}).get("pipelineInfo", {}).get("name")
    for other in _jobs(client, pipeline, "create_time desc") if pipeline else ():
      if other["name"] != job["name"] and _place(tasks, other if "jobDetail" in other else client.get(other["name"]),
                                                 missing):
        missing = kept_executions - set(tasks)
        if not missing:
          break
  return _id(start), _graph(start, [artifacts[n] for n in kept_artifacts if n in artifacts],
                            [executions[n] for n in kept_executions if n in executions],
                            sub.get("events", []), tasks, kept_artifacts)


def _upstream(start: str, events: List[Dict[str, Any]]) -> Tuple[set, set]:
  """The artifacts and executions upstream of `start`: what made it, what that read, and so on."""
  made_by, read_by = {}, {}
  for ev in events:
    if ev.get("type") == "OUTPUT":
      made_by.setdefault(ev["artifact"], []).append(ev["execution"])
    elif ev.get("type") == "INPUT":
      read_by.setdefault(ev["execution"], []).append(ev["artifact"])
  artifacts, executions, todo = {start}, set(), [start]
  while todo:
    for e in made_by.get(todo.pop(), []):
      if e not in executions:
        executions.add(e)
        for a in read_by.get(e, []):
          if a not in artifacts:
            artifacts.add(a)
            todo.append(a)
  return artifacts, executions


def _place(tasks: Dict[str, Any], job: Dict[str, Any], wanted=None) -> bool:
  """Adds the job's tasks by their execution's name; whether it held one of `wanted`."""
  found = False
  run = JOB_NAME.fullmatch(job["name"]).group(3)
  for task in job.get("jobDetail", {}).get("taskDetails", []):
    name = task.get("execution", {}).get("name")
    if name and name not in tasks:
      tasks[name] = dict(task, run=run)
      found = found or wanted is None or name in wanted
  return found


def _graph(start, artifacts, executions, events, tasks, kept) -> Dict[str, Any]:
  shown = {}
  for e in sorted(executions, key=lambda e: _sort_key(_id(e["name"]))):
    task = tasks.get(e["name"], {})
    ends = {}
    for direction in ("inputs", "outputs"):
      ends[direction] = {}
      for key, listed in sorted(task.get(direction, {}).items()):
        ids = [_id(a["name"]) for a in listed.get("artifacts", []) if a["name"] in kept]
        if ids:
          ends[direction][key] = ids
    if not task:  # not run by a pipeline job: its events are all there is
      for ev in events:
        if ev.get("execution") == e["name"] and ev.get("artifact") in kept:
          direction = "inputs" if ev.get("type") == "INPUT" else "outputs"
          ends[direction].setdefault("?", []).append(_id(ev["artifact"]))
    shown[e["name"]] = {
        "id": _id(e["name"]),
        "type": e.get("schemaTitle", "?"),
        "component": task.get("taskName") or e.get("displayName") or "?",
        "state": e.get("state", "STATE_UNSPECIFIED"),
        "run": task.get("run"),
        "created": _time(e.get("createTime")),
        "parameters": {k[len("input:"):]: v for k, v in sorted(e.get("metadata", {}).items())
                       if k.startswith("input:") and not k.startswith("input:__")},
        **ends,
    }
  return {
      "start": _id(start),
      "artifacts": [artifact_dict(a) for a in sorted(artifacts, key=lambda a: _sort_key(_id(a["name"])))],
      "executions": list(shown.values()),
      "reports": _reports(artifacts, tasks),
  }


def _reports(artifacts, tasks) -> Dict[Any, Dict[str, Any]]:
  """Blessing id -> the evaluation report a task made from it (downstream of the blessing, as in graph.py)."""
  from components import report as report_lib
  blessings = {a["name"] for a in artifacts if _type(a) == graph_lib.MODEL_BLESSING}
  reports = {}
  for task in tasks.values():
    read = [a["name"] for listed in task.get("inputs", {}).values() for a in listed.get("artifacts", [])
            if a["name"] in blessings]
    made = [a for listed in task.get("outputs", {}).values() for a in listed.get("artifacts", [])
            if _type(a) == report_lib.ARTIFACT_TYPE]
    for blessing in read:
      for report in made:
        reports[_id(blessing)] = artifact_dict(report)
  return reports


def artifact_dict(a: Dict[str, Any]) -> Dict[str, Any]:
  return {
      "id": _id(a["name"]),
      "type": _type(a),
      "uri": a.get("uri", ""),
      "state": a.get("state", "STATE_UNSPECIFIED"),
      "created": _time(a.get("createTime")),
      "properties": graph_lib.shown_properties(a.get("metadata", {})),
  }


def runs(client: Client) -> List[Dict[str, Any]]:
  """The jobs of the job's pipeline, oldest first, as lineage.graph.pipeline_runs gives local runs."""
  with _documented_shapes():
    return _runs(client)


def _runs(client: Client) -> List[Dict[str, Any]]:
  job = client.get(client.job)
  pipeline = job.get("pipelineSpec", {}).get("pipelineInfo", {}).get("name")
  rows = []
  for j in reversed(list(_jobs(client, pipeline, "create_time desc")) if pipeline else [job]):
    states = sorted(t.get("execution", {}).get("state", "STATE_UNSPECIFIED")
                    for t in j.get("jobDetail", {}).get("taskDetails", []) if "execution" in t)
    state = j.get("state", "")
    rows.append({
        "run": JOB_NAME.fullmatch(j["name"]).group(3),
        "pipeline": pipeline or "?",
        "created": _time(j.get("createTime")),
        "status": "running" if state in UNFINISHED else _STATUS.get(state, state.lower()),
        "steps": {s: states.count(s) for s in sorted(set(states))},
    })
  return rows


@contextlib.contextmanager
def _documented_shapes():
  """An answer that is not shaped as the API reference documents it is one line, not a traceback."""
  try:
    yield
  except (KeyError, TypeError, AttributeError) as e:
    raise graph_lib.LineageError(f"Vertex AI answered in a shape this command does not know "
                                 f"({type(e).__name__}: {e})") from e


def _jobs(client: Client, pipeline: str, order: str) -> Iterator[Dict[str, Any]]:
  return client.pages(f"{client.parent}/pipelineJobs", "pipelineJobs", filter=f'pipeline_name="{pipeline}"',
                      orderBy=order)


def _type(a: Dict[str, Any]) -> str:
  """TFX's type name: its standard types are recorded as "tfx.NAME", its own types by their name."""
  title = a.get("schemaTitle", "?")
  return title[len("tfx."):] if title.startswith("tfx.") else title


def _id(name: str):
  """The number that ends a resource name, as an int like a local store's ids (else the text)."""
  tail = name.rsplit("/", 1)[-1]
  return int(tail) if tail.isdigit() else tail


def _sort_key(i) -> Tuple[int, Any]:
  return (0, i, "") if isinstance(i, int) else (1, 0, i)


def _time(stamp: Optional[str]) -> str:
  """An RFC 3339 time (UTC, any number of fraction digits) as lineage.graph.format_time writes a local one."""
  if not stamp:
    return "?"
  m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp)
  if not m:
    return stamp
  moment = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
  ms = int(moment.timestamp() * 1000) + int((m.group(2) or "0")[:3].ljust(3, "0"))
  return graph_lib.format_time(ms)
