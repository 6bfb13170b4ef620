"""`colorize lineage`: where a model came from, read from ML Metadata.

The store is opened read-only: the local runs' SQLite file by default (found from the
project folder through pipelines/config.py, or --config / --metadata-file), or a shared
MySQL store. Lineage is one server-side query (`get_lineage_subgraph`, UPSTREAM from the
artifact), then rendered as a table, JSON, or a Graphviz graph.
"""
import json
import os
import shutil
import subprocess
from typing import Any, Dict, List, Optional

import click
from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import report as report_lib
from pipelines import config as config_lib
from pipelines import summary

# TFX's standard artifact type names (importing TFX for them would slow the command down).
PUSHED_MODEL = "PushedModel"
MODEL_BLESSING = "ModelBlessing"
# Artifact -> execution -> artifact is two hops; a pushed model's history (ingest, schema,
# train, evaluate against the last blessed model and its own history, push) needs ~12.
MAX_HOPS = 40
FORMATS = ("table", "json", "dot", "png")


class _Context:
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
        raise click.ClickException(f"cannot open the ML Metadata store at {self.where}: {e}") from e
    if not os.path.isfile(self.metadata_path):
      raise click.ClickException(
          f"no ML Metadata store at {self.metadata_path}: run `colorize run` first, "
          "or point to a store with --metadata-file, --config or --output-root")
    try:
      return summary.open_store(self.metadata_path)
    except (mlmd_errors.StatusError, RuntimeError) as e:
      raise click.ClickException(f"cannot open the ML Metadata store at {self.metadata_path}: {e}") from e


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The run's config file: its output_root and pipeline_name locate the store.")
@click.option("--output-root", help=f"The run's output root (default {config_lib.DEFAULT_OUTPUT_ROOT}).")
@click.option("--pipeline-name", help=f"The run's pipeline name (default {config_lib.DEFAULT_PIPELINE_NAME}).")
@click.option("--metadata-file", type=click.Path(dir_okay=False), help="The SQLite ML Metadata file to read.")
@click.option("--mysql-host", help="Read a shared MySQL ML Metadata store on this host instead.")
@click.option("--mysql-port", type=int, default=3306, show_default=True)
@click.option("--mysql-database", default="mlmd", show_default=True)
@click.option("--mysql-user", default="root", show_default=True)
@click.option("--mysql-password", envvar="COLORIZE_MYSQL_PASSWORD", default="",
              help="Or set COLORIZE_MYSQL_PASSWORD.")
@click.pass_context
def lineage(ctx, config_path, output_root, pipeline_name, metadata_file, mysql_host, mysql_port, mysql_database,
            mysql_user, mysql_password):
  """Show what produced a pushed model: Trainer run, Examples, input data, evaluation.

  Without a subcommand, shows the lineage of the latest pushed model.
  """
  try:
    cfg = config_lib.load(config_path, {"output_root": output_root, "pipeline_name": pipeline_name,
                                        "metadata_file": metadata_file})
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
  mysql = None
  if mysql_host:
    mysql = dict(host=mysql_host, port=mysql_port, database=mysql_database, user=mysql_user, password=mysql_password)
  ctx.obj = _Context(cfg.metadata_path, mysql)
  if ctx.invoked_subcommand is None:
    ctx.invoke(model)


@lineage.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def runs(obj: _Context, fmt):
  """List the pipeline runs in the store, newest last."""
  store = obj.store
  rows = []
  for run in sorted(store.get_contexts_by_type(summary.PIPELINE_RUN_CONTEXT), key=lambda c: (c.create_time_since_epoch, c.id)):
    executions = store.get_executions_by_context(run.id)
    states = sorted(metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions)
    rows.append({
        "run": run.name,
        "pipeline": ",".join(p.name for p in store.get_parent_contexts_by_context(run.id)),
        "created": _time(run.create_time_since_epoch),
        "steps": {s: states.count(s) for s in sorted(set(states))},
    })
  if fmt == "json":
    click.echo(json.dumps(rows, indent=2))
    return
  if not rows:
    click.echo(f"No pipeline runs in {obj.where}")
  for r in rows:
    steps = " ".join(f"{k.lower()}={v}" for k, v in r["steps"].items())
    click.echo(f"{r['created']}  {r['pipeline']:<12} {r['run']:<32} {steps}")


@lineage.command()
@click.argument("type_name", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def artifacts(obj: _Context, type_name, fmt):
  """List artifact types with counts, or the artifacts of TYPE_NAME (e.g. Model, PushedModel)."""
  store = obj.store
  if not type_name:
    counts = {t.name: len(store.get_artifacts_by_type(t.name)) for t in store.get_artifact_types()}
    if fmt == "json":
      click.echo(json.dumps(counts, indent=2))
    elif not counts:
      click.echo(f"No artifacts in {obj.where}")
    for name, count in sorted(counts.items()) if fmt == "table" else ():
      click.echo(f"{name:<24} {count}")
    return
  known = [t.name for t in store.get_artifact_types()]
  if type_name not in known:
    raise click.UsageError(f"no artifact type {type_name!r} in {obj.where}; known: {', '.join(sorted(known)) or 'none'}")
  rows = [_artifact_dict(a, type_name) for a in sorted(store.get_artifacts_by_type(type_name), key=lambda a: a.id)]
  if fmt == "json":
    click.echo(json.dumps(rows, indent=2))
    return
  for r in rows:
    click.echo(f"#{r['id']:<5} {r['created']}  {r['uri']}  {_short_properties(r['properties'])}")


@lineage.command()
@click.argument("artifact_id", type=int, required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="png needs graphviz's `dot` on the PATH.")
@click.option("--output", "output_path", type=click.Path(dir_okay=False),
              help="Write here instead of printing (required for png).")
@click.pass_obj
def model(obj: _Context, artifact_id, fmt, output_path):
  """Lineage of ARTIFACT_ID (default: the latest pushed model) back to the ingested data."""
  store = obj.store
  start = _start_artifact(store, artifact_id, obj.where)
  graph = upstream_graph(store, start.id)
  if fmt == "table":
    text = render_table(graph, start.id)
  elif fmt == "json":
    text = json.dumps(graph, indent=2)
  else:
    text = render_dot(graph, start.id)
  if fmt == "png":
    if not output_path:
      raise click.UsageError("--format png needs --output FILE.png")
    if not shutil.which("dot"):
      raise click.ClickException("graphviz's `dot` is not installed; use --format dot and render it elsewhere")
    subprocess.run(["dot", "-Tpng", "-o", output_path], input=text.encode(), check=True)
    click.echo(f"Wrote {output_path}")
  elif output_path:
    with open(output_path, "w") as f:
      f.write(text + "\n")
    click.echo(f"Wrote {output_path}")
  else:
    click.echo(text)


def _start_artifact(store, artifact_id: Optional[int], where: str) -> metadata_store_pb2.Artifact:
  if artifact_id is not None:
    found = store.get_artifacts_by_id([artifact_id])
    if not found:
      raise click.UsageError(f"no artifact #{artifact_id} in {where}")
    return found[0]
  pushed = [a for a in _artifacts_of_type(store, PUSHED_MODEL) if _prop(a, "pushed") == 1]
  if not pushed:
    raise click.ClickException(
        f"no pushed model in {where} (no run blessed a model yet); "
        "pass an artifact id, e.g. of a Model from `colorize lineage artifacts Model`")
  return max(pushed, key=lambda a: (a.create_time_since_epoch, a.id))


def _artifacts_of_type(store, type_name: str) -> List[metadata_store_pb2.Artifact]:
  try:
    return store.get_artifacts_by_type(type_name)
  except mlmd_errors.NotFoundError:
    return []


def upstream_graph(store: metadata_store.MetadataStore, artifact_id: int) -> Dict[str, Any]:
  """Everything upstream of one artifact, as plain data: artifacts, executions with their
  inputs and outputs by key, and the pipeline runs the executions belong to."""
  options = metadata_store_pb2.LineageSubgraphQueryOptions(
      starting_artifacts=metadata_store_pb2.LineageSubgraphQueryOptions.StartingNodes(filter_query=f"id = {artifact_id}"),
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
        "created": _time(e.create_time_since_epoch),
        "parameters": {k: _value(v) for k, v in sorted({**e.properties, **e.custom_properties}.items())
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
      "artifacts": [_artifact_dict(a, artifact_types.get(a.type_id, "?"))
                    for a in sorted(sub.artifacts, key=lambda a: a.id)],
      "executions": list(executions.values()),
      "reports": _reports_of(store, blessings, artifact_types),
  }


def _reports_of(store, blessing_ids: List[int], artifact_types: Dict[int, str]) -> Dict[int, Dict[str, Any]]:
  """blessing id -> the evaluation report written beside it (downstream of the blessing, so
  not in the upstream subgraph): the MSE and baselines behind the verdict."""
  if not blessing_ids:
    return {}
  blessing_of = {ev.execution_id: ev.artifact_id for ev in store.get_events_by_artifact_ids(blessing_ids)
                 if ev.type == metadata_store_pb2.Event.INPUT}
  made = [ev for ev in store.get_events_by_execution_ids(list(blessing_of))
          if ev.type == metadata_store_pb2.Event.OUTPUT]
  reports = {a.id: a for a in store.get_artifacts_by_id([ev.artifact_id for ev in made])
             if artifact_types.get(a.type_id) == report_lib.ARTIFACT_TYPE}
  return {blessing_of[ev.execution_id]: _artifact_dict(reports[ev.artifact_id], report_lib.ARTIFACT_TYPE)
          for ev in made if ev.artifact_id in reports}


def render_table(graph: Dict[str, Any], start_id: int) -> str:
  """The lineage as text: the start artifact, a short story, then every execution oldest first."""
  artifacts = {a["id"]: a for a in graph["artifacts"]}
  start = artifacts[start_id]
  lines = [f"{start['type']} #{start_id}  {start['uri']}  {_short_properties(start['properties'])}", ""]
  lines += ["  " + l for l in _story(graph, start_id)]
  lines += ["", "Executions, oldest first:"]
  for e in graph["executions"]:
    lines.append(f"  [{e['id']}] {e['component']} ({e['state'].lower()}, {e['created']}, run {e['run']})")
    params = {k: " ".join(str(v).split()) for k, v in e["parameters"].items()}
    params = {k: v for k, v in params.items() if len(v) <= 100}
    if params:
      lines.append(f"      parameters: {_short_properties(params, limit=400)}")
    for direction in ("inputs", "outputs"):
      for key, ids in sorted(e[direction].items()):
        for i in ids:
          a = artifacts.get(i)
          described = f"{a['type']} #{i}  {a['uri']}  {_short_properties(a['properties'])}" if a else f"#{i}"
          lines.append(f"      {'in ' if direction == 'inputs' else 'out'} {key:<14} {described}".rstrip())
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
    examples = [artifacts[i] for i in trainer["inputs"].get("examples", []) if i in artifacts]
    lines.append(f"Model #{m['id']} trained by {trainer['component']} [{trainer['id']}] in run {trainer['run']} "
                 f"on Examples {', '.join('#%d' % x['id'] for x in examples) or '?'}")
    train = _train_config(trainer["parameters"])
    if train:
      lines.append(f"  with {_short_properties(train, limit=400)}")
  for x in by_type.get("Examples", []):
    ingest = producers.get(x["id"])
    if ingest:
      source = ingest["parameters"].get("input_base", "?")
      span = "".join(f", {k} {x['properties'][k]}" for k in ("span", "version") if k in x["properties"])
      lines.append(f"Examples #{x['id']} ingested by {ingest['component']} [{ingest['id']}] from {source}"
                   + (f" ({span[2:]})" if span else ""))
  for b in by_type.get("ModelBlessing", []):
    evaluator = producers.get(b["id"])
    if not evaluator:
      continue
    verdict = "blessed" if b["properties"].get("blessed") == 1 else "NOT blessed"
    model_ids = evaluator["inputs"].get("model", [])
    baseline = evaluator["inputs"].get("baseline_model", [])
    lines.append(
        f"Model {', '.join('#%d' % i for i in model_ids)} {verdict} by {evaluator['component']} [{evaluator['id']}] "
        f"(ModelBlessing #{b['id']}; compared with {', '.join('Model #%d' % i for i in baseline) or 'no earlier blessed model'})")
    report = graph["reports"].get(b["id"])
    if report:
      p = report["properties"]
      lines.append(f"  test MSE {p['mse']:.5f} on {p['test_images']} images (no-colour baseline {p['no_colour_mse']:.5f}, "
                   f"mean-ab baseline {p['mean_ab_mse']:.5f}); report #{report['id']} {report['uri']}")
      if p.get("blessing_failures"):
        lines.append(f"  not blessed because: {p['blessing_failures']}")
  return lines


def _train_config(parameters: Dict[str, Any]) -> Dict[str, Any]:
  """The Trainer's hyper-parameters (custom_config["train"], pipelines/config.py's TrainConfig)."""
  try:
    return json.loads(parameters.get("custom_config") or "{}").get("train") or {}
  except (ValueError, AttributeError):
    return {}


def render_dot(graph: Dict[str, Any], start_id: int) -> str:
  """Graphviz: artifacts as ellipses, executions as boxes, events as edges labelled by key."""
  out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];',
         '  edge [fontname="Helvetica", fontsize=9];']
  for a in graph["artifacts"]:
    label = f"{a['type']} #{a['id']}\\n{_tail(a['uri'])}"
    style = ', style=filled, fillcolor="#ffe08a"' if a["id"] == start_id else ""
    out.append(f'  a{a["id"]} [shape=ellipse, label="{_dot_escape(label)}"{style}];')
  for e in graph["executions"]:
    label = f"{e['component']} [{e['id']}]\\n{e['state'].lower()}"
    out.append(f'  e{e["id"]} [shape=box, label="{_dot_escape(label)}"];')
    for key, ids in sorted(e["inputs"].items()):
      out += [f'  a{i} -> e{e["id"]} [label="{_dot_escape(key)}"];' for i in ids]
    for key, ids in sorted(e["outputs"].items()):
      out += [f'  e{e["id"]} -> a{i} [label="{_dot_escape(key)}"];' for i in ids]
  out.append("}")
  return "\n".join(out)


def _artifact_dict(a: metadata_store_pb2.Artifact, type_name: str) -> Dict[str, Any]:
  return {
      "id": a.id,
      "type": type_name,
      "uri": a.uri,
      "state": metadata_store_pb2.Artifact.State.Name(a.state),
      "created": _time(a.create_time_since_epoch),
      "properties": {k: _value(v) for k, v in sorted({**a.properties, **a.custom_properties}.items())
                     if not k.startswith("__") and k not in ("name", "producer_component", "tfx_version")},
  }


def _value(v: metadata_store_pb2.Value):
  kind = v.WhichOneof("value")
  return getattr(v, kind) if kind in ("int_value", "double_value", "string_value", "bool_value") else str(v)


def _prop(a: metadata_store_pb2.Artifact, key: str):
  if key in a.custom_properties:
    return _value(a.custom_properties[key])
  if key in a.properties:
    return _value(a.properties[key])
  return None


def _time(ms: int) -> str:
  import datetime  # pylint: disable=g-import-not-at-top
  return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _short_properties(props: Dict[str, Any], limit: int = 160) -> str:
  text = " ".join(f"{k}={v}" for k, v in props.items())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _tail(uri: str, parts: int = 3) -> str:
  return "/".join(uri.rstrip("/").split("/")[-parts:])


def _dot_escape(text: str) -> str:
  return text.replace('"', '\\"')
