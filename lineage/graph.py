"""Where a model came from, read from ML Metadata (the library behind `colorize lineage`).

The store is opened read-only: a local runs' SQLite file or a shared MySQL store.
Lineage is one server-side query (`get_lineage_subgraph`, UPSTREAM from the artifact),
then rendered as a table, JSON, or a Graphviz graph.
"""
import datetime
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import report as report_lib
from lineage import summary
from pipelines import local_runner
from schemas import gates

# TFX's standard artifact type names (importing TFX for them would slow the command down).
PUSHED_MODEL = "PushedModel"
MODEL_BLESSING = "ModelBlessing"
RESOLVER_TYPE = "tfx.dsl.components.common.resolver.Resolver"  # the execution type of every Resolver node
# Artifact -> execution -> artifact is two hops; a pushed model's history (ingest, schema,
# train, evaluate against the last blessed model and its own history, push) needs ~12.
MAX_HOPS = 40
# What the numbers in the table, the picture and the dot graph are.
ID_LEGEND = ("#N: artifact id; [N]: execution id; the number at the end of an artifact's folder is the id of "
             "the execution that wrote it")


class LineageError(Exception):
  """The store cannot be read or holds no such artifact; the message says why."""


class UserError(LineageError):
  """What the user must change (the job named, a login): one line, exit 2."""


class NotInStoreError(LineageError):
  """The artifact or artifact type asked for is not in the store."""


class Store:
  """The store connection, opened lazily so `--help` never touches it."""

  def __init__(self, metadata_path: str, mysql: Optional[Dict[str, Any]]):
    self.metadata_path = metadata_path
    self.mysql = mysql
    self._store = None

  @property
  def where(self) -> str:
    if self.mysql:
      return f"mysql://{self.mysql['host']}:{self.mysql['port']}/{self.mysql['database']}"
    return self.metadata_path

  @property
  def may_be_running(self) -> bool:
    """Whether a run may be writing to the store now: a local run holds its lock; a shared
    MySQL store's writers cannot be seen from here.
    """
    return bool(self.mysql) or local_runner.store_in_use(self.metadata_path)

  @property
  def store(self) -> metadata_store.MetadataStore:
    if self._store is None:
      self._store = self._open()
    return self._store

  def _open(self) -> metadata_store.MetadataStore:
    if self.mysql:
      connection = metadata_store_pb2.ConnectionConfig()
      connection.mysql.host = self.mysql["host"]
      connection.mysql.port = self.mysql["port"]
      connection.mysql.database = self.mysql["database"]
      connection.mysql.user = self.mysql["user"]
      connection.mysql.password = self.mysql["password"]
      try:
        return metadata_store.MetadataStore(connection)
      except (mlmd_errors.StatusError, RuntimeError) as e:
        raise LineageError(f"cannot open the ML Metadata store at {self.where}: {_store_error(e)}") from e
    if not os.path.isfile(self.metadata_path):
      raise LineageError(
          f"no ML Metadata store at {self.metadata_path}: run `colorize run` first, "
          "or point to a store with --metadata-file, --config or --output-root")
    try:
      return summary.open_store(self.metadata_path)
    except (mlmd_errors.StatusError, RuntimeError) as e:
      raise LineageError(f"cannot open the ML Metadata store at {self.metadata_path}: {_store_error(e)} "
                         "(is it a store `colorize run` wrote?)") from e


def _store_error(e: Exception) -> str:
  """ML Metadata's reason without the SQL it appends (a CREATE TABLE statement for a file that is no store)."""
  text = " ".join(str(e).split()).removeprefix("Error when executing query: ")
  return text.split(" query: ")[0]


def pipeline_runs(store: metadata_store.MetadataStore, may_be_running: bool = False) -> List[Dict[str, Any]]:
  """The pipeline runs in the store, oldest first, each with its status and its executions' states counted.

  may_be_running: a run may be writing to the store now (Store.may_be_running); if not,
  the unfinished steps of every run were interrupted.
  """
  rows = []
  runs = sorted(store.get_contexts_by_type(summary.PIPELINE_RUN_CONTEXT),
                key=lambda c: (c.create_time_since_epoch, c.id))
  resolver_type = next((t.id for t in store.get_execution_types() if t.name == RESOLVER_TYPE), None)
  for i, run in enumerate(runs):
    executions = store.get_executions_by_context(run.id)
    states = sorted(metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions)
    # TFX records a resolver that found nothing (the first run's last verdict, last blessed model) as FAILED.
    judged = {metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions
              if not (e.type_id == resolver_type and e.last_known_state == metadata_store_pb2.Execution.FAILED)}
    rows.append({
        "run": run.name,
        "pipeline": ",".join(p.name for p in store.get_parent_contexts_by_context(run.id)),
        "created": format_time(run.create_time_since_epoch),
        "status": _run_status(judged, may_be_running and i == len(runs) - 1),
        "steps": {s: states.count(s) for s in sorted(set(states))},
    })
  return rows


def _run_status(states, may_be_running: bool) -> str:
  """complete, failed, running, or interrupted: a step was CANCELED (closed by a later run,
  pipelines/local_runner.py) or is still RUNNING with no run alive to finish it.
  """
  if "CANCELED" in states:
    return "interrupted"
  if states & {"NEW", "RUNNING"}:
    return "running" if may_be_running else "interrupted"
  return "failed" if "FAILED" in states else "complete"


def artifact_counts(store: metadata_store.MetadataStore) -> Dict[str, int]:
  return {t.name: len(store.get_artifacts_by_type(t.name)) for t in store.get_artifact_types()}


def artifacts_of_type(store: metadata_store.MetadataStore, type_name: str, where: str) -> List[Dict[str, Any]]:
  known = [t.name for t in store.get_artifact_types()]
  if type_name not in known:
    raise NotInStoreError(f"no artifact type {type_name!r} in {where}; known: {', '.join(sorted(known)) or 'none'}")
  return [artifact_dict(a, type_name) for a in sorted(store.get_artifacts_by_type(type_name), key=lambda a: a.id)]


def start_artifact(store, artifact_id: Optional[int], where: str) -> metadata_store_pb2.Artifact:
  """The artifact `artifact_id`, or else the latest pushed model."""
  if artifact_id is not None:
    found = store.get_artifacts_by_id([artifact_id])
    if not found:
      raise NotInStoreError(f"no artifact #{artifact_id} in {where}")
    return found[0]
  pushed = [a for a in _stored_artifacts(store, PUSHED_MODEL) if _prop(a, "pushed") == 1]
  if not pushed:
    raise LineageError(
        f"no pushed model in {where} (no run blessed a model yet); "
        "pass an artifact id, e.g. of a Model from `colorize lineage artifacts Model`")
  return max(pushed, key=lambda a: (a.create_time_since_epoch, a.id))


def _stored_artifacts(store, type_name: str) -> List[metadata_store_pb2.Artifact]:
  try:
    return store.get_artifacts_by_type(type_name)
  except mlmd_errors.NotFoundError:
    return []


def upstream_graph(store: metadata_store.MetadataStore, artifact_id: int) -> Dict[str, Any]:
  """Everything upstream of one artifact, as plain data: artifacts, executions with their
  inputs and outputs by key, and the pipeline runs the executions belong to.
  """
  options = metadata_store_pb2.LineageSubgraphQueryOptions(
      starting_artifacts=metadata_store_pb2.LineageSubgraphQueryOptions.StartingNodes(
          filter_query=f"id = {artifact_id}"),
      max_num_hops=MAX_HOPS,
      direction=metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM)
  sub = store.get_lineage_subgraph(options)
  artifact_types = summary.artifact_type_names(store)
  execution_types = {t.id: t.name for t in store.get_execution_types()}
  contexts = {c.id: c for c in sub.contexts}
  context_of = {}  # execution id -> {context type: context name}
  for association in sub.associations:
    c = contexts.get(association.context_id)
    if c is not None:
      context_of.setdefault(association.execution_id, {})[c.type] = c.name

  executions = {}
  for e in sorted(sub.executions, key=lambda e: e.id):
    type_name = execution_types.get(e.type_id, "?")
    node = context_of.get(e.id, {}).get(summary.NODE_CONTEXT)
    executions[e.id] = {
        "id": e.id,
        "type": type_name,
        # Node contexts are named "<pipeline>.<component id>".
        "component": node.split(".", 1)[-1] if node else type_name.rsplit(".", 1)[-1],
        "state": metadata_store_pb2.Execution.State.Name(e.last_known_state),
        "run": context_of.get(e.id, {}).get(summary.PIPELINE_RUN_CONTEXT),
        "created": format_time(e.create_time_since_epoch),
        "parameters": {k: summary.value_of(v) for k, v in sorted({**e.properties, **e.custom_properties}.items())
                       if not k.startswith("__")},
        "inputs": {},
        "outputs": {},
    }
  for event in sub.events:
    if event.execution_id not in executions:
      continue
    direction = "inputs" if event.type in (
        metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT) else "outputs"
    key = event.path.steps[0].key if event.path.steps else "?"
    executions[event.execution_id][direction].setdefault(key, []).append(event.artifact_id)
  blessings = [a.id for a in sub.artifacts if artifact_types.get(a.type_id) == MODEL_BLESSING]
  return {
      "start": artifact_id,
      "artifacts": [artifact_dict(a, artifact_types.get(a.type_id, "?"))
                    for a in sorted(sub.artifacts, key=lambda a: a.id)],
      "executions": list(executions.values()),
      "reports": _reports_of(store, blessings, artifact_types),
  }


def _reports_of(store, blessing_ids: List[int], artifact_types: Dict[int, str]) -> Dict[int, Dict[str, Any]]:
  """Blessing id -> the evaluation report written beside it (downstream of the blessing, so
  not in the upstream subgraph): the MSE and baselines behind the verdict.
  """
  if not blessing_ids:
    return {}
  blessing_of = {ev.execution_id: ev.artifact_id for ev in store.get_events_by_artifact_ids(blessing_ids)
                 if ev.type == metadata_store_pb2.Event.INPUT}
  made = [ev for ev in store.get_events_by_execution_ids(list(blessing_of))
          if ev.type == metadata_store_pb2.Event.OUTPUT]
  reports = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in made])
             if artifact_types.get(a.type_id) == report_lib.ARTIFACT_TYPE}
  return {blessing_of[ev.execution_id]: artifact_dict(reports[ev.artifact_id], report_lib.ARTIFACT_TYPE)
          for ev in made if ev.artifact_id in reports}


def render_table(graph: Dict[str, Any], start_id: int) -> str:
  """The lineage as text: the start artifact, a short story, then every execution oldest first."""
  artifacts = {a["id"]: a for a in graph["artifacts"]}
  start = artifacts[start_id]
  lines = [f"{start['type']} #{start_id}  {start['uri']}  {short_properties(start['properties'])}", ""]
  lines += ["  " + l for l in _story(graph, start_id)]
  lines += ["", f"Executions, oldest first ({ID_LEGEND}):"]
  key_width = max((len(k) for e in graph["executions"] for d in ("inputs", "outputs") for k in e[d]), default=0)
  for e in graph["executions"]:
    lines.append(f"  [{e['id']}] {e['component']} ({e['state'].lower()}, {e['created']}, run {e['run']})")
    params = {k: " ".join(str(v).split()) for k, v in e["parameters"].items()}
    params = {k: v for k, v in params.items() if len(v) <= 100}
    if params:
      lines.append(f"      parameters: {short_properties(params, limit=400)}")
    for direction in ("inputs", "outputs"):
      for key, ids in sorted(e[direction].items()):
        for i in ids:
          a = artifacts.get(i)
          described = f"{a['type']} #{i}  {a['uri']}  {short_properties(a['properties'])}" if a else f"#{i}"
          lines.append(f"      {'in ' if direction == 'inputs' else 'out'} {key:<{key_width}} {described}".rstrip())
  return "\n".join(lines)


def _story(graph: Dict[str, Any], start_id: int) -> List[str]:
  """Which Trainer run, on which Examples from which input, blessed by which evaluation."""
  artifacts = {a["id"]: a for a in graph["artifacts"]}
  producers = {}
  for e in graph["executions"]:
    for ids in e["outputs"].values():
      for i in ids:
        # The first (oldest) execution that output an artifact made it; later ones were cache hits.
        producers.setdefault(i, e)
  lines = []
  pusher, start = producers.get(start_id), artifacts[start_id]
  if pusher and start["type"] == PUSHED_MODEL:
    where = (f"pushed to {start['properties'].get('pushed_destination')}" if start["properties"].get("pushed") == 1
             else "nothing pushed")
    lines.append(f"{where} by {pusher['component']} [{pusher['id']}] in run {pusher['run']}")
  by_type = {}
  for a in graph["artifacts"]:
    by_type.setdefault(a["type"], []).append(a)
  for m in by_type.get("Model", []):
    trainer = producers.get(m["id"])
    if not trainer:
      continue
    examples = ", ".join(f"#{i}" for i in trainer["inputs"].get("examples", []) if i in artifacts)
    lines.append(f"Model #{m['id']} trained by {trainer['component']} [{trainer['id']}] in run {trainer['run']} "
                 f"on Examples {examples or '?'}")
    train = _train_config(trainer["parameters"])
    if train:
      lines.append(f"  with {short_properties(train, limit=400)}")
  for x in by_type.get("Examples", []):
    maker = producers.get(x["id"])
    if not maker:
      continue
    if "input_base" in maker["parameters"]:
      span = "".join(f", {k} {x['properties'][k]}" for k in ("span", "version") if k in x["properties"])
      lines.append(f"Examples #{x['id']} ingested by {maker['component']} [{maker['id']}] from "
                   f"{maker['parameters']['input_base']}" + (f" ({span[2:]})" if span else ""))
    else:  # made from other artifacts (Embed: Examples with their embeddings)
      made_from = ", ".join(f"{artifacts[i]['type']} #{i}" for ids in maker["inputs"].values() for i in ids
                            if i in artifacts)
      lines.append(f"Examples #{x['id']} made by {maker['component']} [{maker['id']}] from {made_from or '?'}")
  for b in by_type.get("ModelBlessing", []):
    evaluator = producers.get(b["id"])
    if not evaluator:
      continue
    verdict = "blessed" if b["properties"].get("blessed") == 1 else "NOT blessed"
    model_ids = evaluator["inputs"].get("model", [])
    # The Evaluator records its baseline on the blessing: the subgraph's events may hold one
    # event per artifact and execution, so a model that was also the baseline hid it.
    baseline = ([b["properties"]["baseline_model_id"]] if b["properties"].get("baseline_model_id")
                else evaluator["inputs"].get("baseline_model", []))
    lines.append(
        f"Model {', '.join(f'#{i}' for i in model_ids)} {verdict} by {evaluator['component']} [{evaluator['id']}] "
        f"(ModelBlessing #{b['id']}; compared with "
        f"{', '.join(f'Model #{i}' for i in baseline) or 'no earlier blessed model'})")
    report = graph["reports"].get(b["id"])
    if report:
      p = report["properties"]
      lines.append(f"  test MSE {p['mse']:.5f} on {p['test_images']} images "
                   f"(no-colour baseline {p['no_colour_mse']:.5f}, "
                   f"mean-ab baseline {p['mean_ab_mse']:.5f}); report #{report['id']} {report['uri']}")
      if p.get("blessing_failures"):
        lines.append(f"  not blessed because: {p['blessing_failures']}")
  for a in graph["artifacts"]:
    if gates.PASSED in a["properties"]:
      gate, passed = producers.get(a["id"]), a["properties"][gates.PASSED] == 1
      lines.append(f"{gate['component'] if gate else a['type']} {'passed' if passed else 'STOPPED'} "
                   f"({a['type'].rsplit('.', 1)[-1]} #{a['id']}): {a['properties'].get(gates.VERDICT, '')}")
  return lines


def _train_config(parameters: Dict[str, Any]) -> Dict[str, Any]:
  """The Trainer's hyper-parameters (custom_config["train"], trainer/settings.py's TrainConfig)."""
  try:
    return json.loads(parameters.get("custom_config") or "{}").get("train") or {}
  except (ValueError, AttributeError):
    return {}


def lineage_nodes(graph: Dict[str, Any]) -> Tuple[Dict[Tuple[str, int], Tuple[str, List[str]]],
                                                  List[Tuple[Tuple[str, int], Tuple[str, int], str]]]:
  """The one graph `--format dot` and `--format png` draw: nodes ("a", artifact id) and
  ("e", execution id) with their label lines, and edges (source, target, event key).
  """
  nodes = {("a", a["id"]): ("a", [f"{a['type']} #{a['id']}", _tail(a["uri"], 2)]) for a in graph["artifacts"]}
  edges = []
  for e in graph["executions"]:
    nodes[("e", e["id"])] = ("e", [f"{e['component']} [{e['id']}]", e["state"].lower()])
  for e in graph["executions"]:
    edges += [(("a", i), ("e", e["id"]), key) for key, ids in sorted(e["inputs"].items()) for i in ids
              if ("a", i) in nodes]
    edges += [(("e", e["id"]), ("a", i), key) for key, ids in sorted(e["outputs"].items()) for i in ids
              if ("a", i) in nodes]
  return nodes, edges


def render_dot(graph: Dict[str, Any], start_id: int) -> str:
  """Graphviz: artifacts as ellipses, executions as boxes, events as edges labelled by key."""
  out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];',
         '  edge [fontname="Helvetica", fontsize=9];', f'  label="{_dot_escape(ID_LEGEND)}";']
  nodes, edges = lineage_nodes(graph)
  for (kind, i), (_, lines) in nodes.items():
    style = ', style=filled, fillcolor="#ffe08a"' if (kind, i) == ("a", start_id) else ""
    shape = "ellipse" if kind == "a" else "box"
    out.append(f'  {kind}{i} [shape={shape}, label="{_dot_escape(chr(10).join(lines))}"{style}];')
  out += [f'  {s[0]}{s[1]} -> {t[0]}{t[1]} [label="{_dot_escape(key)}"];' for s, t, key in edges]
  out.append("}")
  return "\n".join(out)


def artifact_dict(a: metadata_store_pb2.Artifact, type_name: str) -> Dict[str, Any]:
  return {
      "id": a.id,
      "type": type_name,
      "uri": a.uri,
      "state": metadata_store_pb2.Artifact.State.Name(a.state),
      "created": format_time(a.create_time_since_epoch),
      "properties": shown_properties({k: summary.value_of(v)
                                      for k, v in {**a.properties, **a.custom_properties}.items()}),
  }


def shown_properties(props: Dict[str, Any]) -> Dict[str, Any]:
  """An artifact's properties as shown, sorted: without TFX's bookkeeping (its name, producer, version)."""
  return {k: v for k, v in sorted(props.items())
          if not k.startswith("__") and k not in ("name", "producer_component", "tfx_version")}


def _prop(a: metadata_store_pb2.Artifact, key: str):
  if key in a.custom_properties:
    return summary.value_of(a.custom_properties[key])
  if key in a.properties:
    return summary.value_of(a.properties[key])
  return None


def format_time(ms: int) -> str:
  return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def short_properties(props: Dict[str, Any], limit: int = 160) -> str:
  """key=value pairs on one line (a value's own line breaks and runs of spaces become one space)."""
  text = " ".join(f"{k}={' '.join(str(v).split())}" for k, v in props.items())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _tail(uri: str, parts: int = 3) -> str:
  return "/".join(uri.rstrip("/").split("/")[-parts:])


def _dot_escape(text: str) -> str:
  return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
