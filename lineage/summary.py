"""What a pipeline run did and produced, read from ML Metadata (never from guessed paths).

The same lines end `colorize run` and answer `colorize lineage run`: each step ran, was
cached, resolved or was skipped (and why), the span ingested and the spans the Trainer
read, every gate's verdict (any artifact carrying schemas/gates.py's properties), what
was pushed or why nothing was, and where every output is.
"""
import json
import os
import shlex
import shutil
import sys
from typing import Dict, List, Optional, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import embed
from components import ingest
from components import model_card
from components import report as report_lib
from imaging import tree
from pipelines import config as config_lib
from schemas import gates

PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
PIPELINE_CONTEXT = "pipeline"
_E = metadata_store_pb2.Execution
# How a step's execution ended, in the summary's words.
_RESOLVER = ".Resolver"  # the execution type of every TFX resolver node
STEP_STATES = {_E.COMPLETE: "ran", _E.CACHED: "cached", _E.FAILED: "failed", _E.CANCELED: "interrupted",
               _E.RUNNING: "running", _E.NEW: "not started"}


def open_store(metadata_path: str, read_only: bool = True) -> metadata_store.MetadataStore:
  connection = metadata_store_pb2.ConnectionConfig()
  connection.sqlite.filename_uri = metadata_path
  connection.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only
      else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
  return metadata_store.MetadataStore(connection)


def latest_run_outputs(store: metadata_store.MetadataStore, pipeline_name: str
                       ) -> Tuple[Optional[str], List[Tuple[str, metadata_store_pb2.Artifact]]]:
  """(run id, [(component id, artifact)]) of the newest run of `pipeline_name`.

  Cached executions count: a step whose outputs were reused still shows them.
  """
  run = find_run(store, pipeline_name)
  if run is None:
    return None, []
  executions = store.get_executions_by_context(run.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  output_ids = {ev.artifact_id: ev.execution_id for ev in events
                if ev.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)}
  component_of = {e.id: component_id(store, e.id) for e in executions}
  artifacts = store.get_artifacts_by_id(list(output_ids))
  return run.name, [(component_of.get(output_ids[a.id], "?"), a) for a in sorted(artifacts, key=lambda a: a.id)]


def find_run(store: metadata_store.MetadataStore, pipeline_name: Optional[str], run_id: Optional[str] = None
             ) -> Optional[metadata_store_pb2.Context]:
  """The pipeline run context named run_id, or the newest run of the pipeline (of any pipeline when
  pipeline_name is None); None if there is none.
  """
  runs = [c for c in store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
          if (pipeline_name is None or _belongs_to(store, c, pipeline_name)) and (run_id is None or c.name == run_id)]
  return max(runs, key=lambda c: (c.create_time_since_epoch, c.id)) if runs else None


def component_id(store, execution_id: int) -> str:
  """TFX associates every execution with a "node" context named "<pipeline>.<component id>"."""
  for context in store.get_contexts_by_execution(execution_id):
    if context.type == NODE_CONTEXT:
      return context.name.split(".", 1)[-1]
  return "?"


def _belongs_to(store, run_context, pipeline_name: str) -> bool:
  parents = store.get_parent_contexts_by_context(run_context.id)
  return any(p.name == pipeline_name for p in parents)


def artifact_type_names(store) -> Dict[int, str]:
  return {t.id: t.name for t in store.get_artifact_types()}


def print_run_summary(cfg: config_lib.PipelineConfig) -> None:
  """Prints what the latest run did, every output (where it is, what it says) and what was pushed."""
  store = open_store(cfg.metadata_path)
  lines = run_lines(store, cfg.pipeline_name, cfg.metadata_path)
  print("\n" + "\n".join(lines))
  if any(l.startswith("Pushed ") for l in lines):
    default_store = cfg.metadata_path == config_lib.from_dict({}).metadata_path  # what `colorize lineage` finds here
    print(f"\nTrace the model back to its data:  {colorize_command()} lineage"
          + ("" if default_store else f" --metadata-file {shlex.quote(cfg.metadata_path)}"))


def run_lines(store: metadata_store.MetadataStore, pipeline_name: Optional[str], where: str,
              run_id: Optional[str] = None) -> List[str]:
  """The run's summary: its steps, data, gates, outputs and the push, as lines of text.

  pipeline_name None: the run of whichever pipeline it belongs to (the newest run in the store).
  """
  run = find_run(store, pipeline_name, run_id)
  if run is None:
    of = f"of pipeline {pipeline_name!r} " if pipeline_name else ""
    return [f"No run {run_id + ' ' if run_id else ''}{of}recorded in {where}"]
  pipeline_name = pipeline_name or next(
      (p.name for p in store.get_parent_contexts_by_context(run.id) if p.type == PIPELINE_CONTEXT), "")
  types = artifact_type_names(store)
  executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(list({ev.artifact_id for ev in events}))}
  steps = {e.id: component_id(store, e.id) for e in executions}
  inputs: Dict[int, Dict[str, List[metadata_store_pb2.Artifact]]] = {e.id: {} for e in executions}
  outputs: Dict[int, List[metadata_store_pb2.Artifact]] = {e.id: [] for e in executions}
  for ev in sorted(events, key=lambda ev: ev.artifact_id):
    key = ev.path.steps[0].key if ev.path.steps else "?"
    if ev.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT):
      inputs[ev.execution_id].setdefault(key, []).append(artifacts[ev.artifact_id])
    elif ev.artifact_id not in [a.id for a in outputs[ev.execution_id]]:
      outputs[ev.execution_id].append(artifacts[ev.artifact_id])
  kind = lambda a: types.get(a.type_id, "?")  # noqa: E731
  execution_types = {t.id: t.name for t in store.get_execution_types()}
  resolvers = {e.id for e in executions if execution_types.get(e.type_id, "?").endswith(_RESOLVER)}

  gate_lines, stopped = [], []
  for e in executions:
    # A resolver's output is an earlier run's artifact (the last data gate verdict): no decision of this run.
    for a in [] if e.id in resolvers else outputs[e.id]:
      if gates.PASSED in a.custom_properties:
        passed = a.custom_properties[gates.PASSED].int_value == 1
        verdict = a.custom_properties[gates.VERDICT].string_value if gates.VERDICT in a.custom_properties else ""
        gate_lines.append(f"  {steps[e.id]:<30} {'passed ' if passed else 'STOPPED'}  {verdict}")
        stopped += [] if passed else [(steps[e.id], verdict)]

  lines = [f"Pipeline run {run.name}  (ML Metadata: {where})", "Steps:"]
  for e in executions:
    type_name = execution_types.get(e.type_id, "?")
    lines.append(f"  {steps[e.id]:<30} {_step_state(e, type_name):<9} {_step_note(e, type_name, outputs[e.id], kind)}"
                 .rstrip())
  ran = set(steps.values())
  if stopped:
    # A step of the pipeline with no execution in a run that a gate stopped: the gate's condition
    # kept it from running (the first gate that stopped says why).
    for node in _pipeline_nodes(store, pipeline_name):
      if node not in ran:
        lines.append(f"  {node:<30} {'skipped':<9} {stopped[0][0]} stopped the run here: {stopped[0][1]}")
  lines += _data_lines(store, executions, steps, inputs, outputs, kind)
  if gate_lines:
    lines += ["Gates:", *gate_lines]
  lines += ["Outputs:"]
  # Custom types carry a namespace ("components.ColorizationReport"); the name is enough here.
  rows = [(steps[e.id], kind(a).rsplit(".", 1)[-1], a) for e in executions for a in outputs[e.id]]
  step_width = max([16] + [len(step) for step, _, _ in rows])
  type_width = max([18] + [len(type_name) for _, type_name, _ in rows])
  for step, type_name, a in rows:
    lines.append(f"  {step:<{step_width}} {type_name:<{type_width}} {a.uri}")
    lines += [f"  {'':<{step_width}} {'':<{type_width}} {line}" for line in _describe(kind(a), a)]
  lines.append(_push_line(executions, steps, inputs, outputs, kind, stopped))
  return lines


def _step_state(execution, type_name: str) -> str:
  # TFX records a resolver that found nothing to resolve (a first run) as FAILED; the run went on.
  if type_name.endswith(_RESOLVER) and execution.last_known_state in (_E.COMPLETE, _E.CACHED, _E.FAILED):
    return "resolved"
  return STEP_STATES.get(execution.last_known_state, "?")


def _step_note(execution, type_name: str, outputs, kind) -> str:
  if type_name.endswith(_RESOLVER):
    found = ", ".join(f"{kind(a).rsplit('.', 1)[-1]} #{a.id}" for a in outputs)
    return f"found {found}" if found else "nothing to find yet"
  made = ", ".join(f"{kind(a).rsplit('.', 1)[-1]} #{a.id}" for a in outputs)
  if execution.last_known_state == _E.CACHED:
    return f"{made}: unchanged inputs and settings, an earlier run's outputs reused"
  return made


def _pipeline_nodes(store, pipeline_name: str) -> List[str]:
  """The step ids ever recorded for the pipeline (node contexts "<pipeline>.<step>")."""
  prefix = pipeline_name + "."
  return sorted(c.name[len(prefix):] for c in store.get_contexts_by_type(NODE_CONTEXT) if c.name.startswith(prefix))


def _span_of(store, artifact, kind, depth: int = 0) -> str:
  """"span S[, version V]" of Examples; for derived Examples (Embed's), those of the Examples they came from."""
  props = artifact.custom_properties
  if "span" in props:
    return f"span {props['span'].int_value}" + (f", version {props['version'].int_value}" if "version" in props else "")
  if depth < 3:
    made_by = [ev.execution_id for ev in store.get_events_by_artifact_ids([artifact.id])
               if ev.type == metadata_store_pb2.Event.OUTPUT]
    sources = [ev.artifact_id for ev in store.get_events_by_execution_ids(made_by[:1])
               if ev.type == metadata_store_pb2.Event.INPUT]
    for source in store.get_artifacts_by_id(sources):
      if kind(source) == "Examples":
        return f"{_span_of(store, source, kind, depth + 1)} via Examples #{source.id}"
  return "no span recorded"


def _data_lines(store, executions, steps, inputs, outputs, kind) -> List[str]:
  lines = []
  for e in executions:
    if steps[e.id] == "CocoIngest":
      for a in outputs[e.id]:
        state = "ingested" if e.last_known_state == _E.COMPLETE else "reused (unchanged snapshot)"
        lines.append(f"  {state}: {_span_of(store, a, kind)} as Examples #{a.id}")
        lines += _ignored_lines(a.custom_properties)
    if steps[e.id] == "Trainer":
      read = [f"Examples #{a.id} ({_span_of(store, a, kind)})" for a in inputs[e.id].get("examples", [])]
      lines.append(f"  the Trainer read: {', '.join(read) or '?'}")
  return ["Data:", *lines] if lines else []


def _ignored_lines(props) -> List[str]:
  """The entries of the data root the ingestion decided are no snapshot, each with why (the first few)."""
  if ingest.IGNORED_PROPERTY not in props:
    return []
  shown = json.loads(props[ingest.IGNORED_PROPERTY].string_value)
  lines = [f"  not ingested, no snapshot: {tree.printable(name)} ({reason})" for name, reason in shown.items()]
  more = props[ingest.IGNORED_COUNT_PROPERTY].int_value - len(shown)
  if more > 0:
    report = props["skip_report"].string_value if "skip_report" in props else "the skip report"
    lines.append(f"  \u2026 and {more} more, all in {report}")
  return lines


def _push_line(executions, steps, inputs, outputs, kind, stopped_gates) -> str:
  """One line: what was pushed, or why nothing was (every gate that stopped, the Evaluator's verdict)."""
  for e in executions:
    for a in outputs[e.id]:
      if kind(a) == "PushedModel" and "pushed" in a.custom_properties and a.custom_properties["pushed"].int_value:
        models = ", ".join(f"Model #{m.id}" for m in inputs[e.id].get("model", []))
        return f"Pushed {models} to {a.custom_properties['pushed_destination'].string_value}"
  reasons = [f"{step}: {verdict}" for step, verdict in stopped_gates]
  for e in executions:
    for a in outputs[e.id]:
      if kind(a) == report_lib.ARTIFACT_TYPE and "blessed" in a.custom_properties \
          and not a.custom_properties["blessed"].int_value:
        reasons.append(f"{steps[e.id]}: not blessed: {a.custom_properties['blessing_failures'].string_value}")
  if not any(kind(a) == "PushedModel" for e in executions for a in outputs[e.id]) and not reasons:
    reasons.append("this run had no push step")
  return "Nothing pushed: " + ("; ".join(reasons) or "the Pusher pushed nothing")


def _describe(type_name: Optional[str], artifact) -> List[str]:
  props = artifact.custom_properties
  if gates.VERDICT in props:
    report = props[gates.REPORT].string_value if gates.REPORT in props else ""
    return [props[gates.VERDICT].string_value] + ([f"report: {report}"] if report else [])
  if type_name == "Examples" and "skip_counts" in props:
    counts = json.loads(props["skip_counts"].string_value or "{}")
    lines = [f"splits: {props['split_counts'].string_value}" if "split_counts" in props else ""]
    lines.append("skipped: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
    if "skip_report" in props:
      lines.append(f"skip report: {props['skip_report'].string_value}")
    return [l for l in lines if l]
  if type_name == "Examples" and embed.FINGERPRINT_PROPERTY in props:
    lines = [f"splits: {props['split_counts'].string_value}"] if "split_counts" in props else []
    return lines + [f"with the Inception-ResNet-v2 class vector of weights "
                    f"{props[embed.WEIGHTS_PROPERTY].string_value!r} (fingerprint "
                    f"{props[embed.FINGERPRINT_PROPERTY].string_value[:16]})"]
  if type_name == report_lib.ARTIFACT_TYPE and "mse" in props:
    return _describe_report({k: value_of(v) for k, v in props.items()})
  if type_name == "ModelBlessing" and "blessed" in props:
    return ["blessed" if props["blessed"].int_value else "not blessed"]
  if type_name == "PushedModel" and "pushed" in props:
    if props["pushed"].int_value:
      return [f"pushed to {props['pushed_destination'].string_value}"]
    return ["nothing pushed: the model was not blessed or did not pass the serving gate"]
  if type_name == model_card.ARTIFACT_TYPE:
    location = props[model_card.LOCATION].string_value if model_card.LOCATION in props else ""
    return [f"model card beside the pushed model: {location}/{model_card.MARKDOWN_FILE}" if location
            else "model card (the model was not pushed)"]
  return []


def _describe_report(p) -> List[str]:
  beats = "beats" if p["mse"] < p["mean_ab_mse"] else "does not beat"
  return [
      f"test MSE {p['mse']:.5f} on {p['test_images']} images: no-colour baseline {p['no_colour_mse']:.5f}, "
      f"mean-ab baseline {p['mean_ab_mse']:.5f} ({beats} it)",
      f"PSNR {p['psnr']:.2f} dB, SSIM {p['ssim']:.4f} (grey photo: {p['no_colour_psnr']:.2f} dB, "
      f"{p['no_colour_ssim']:.4f}); colorfulness {p['colorfulness_prediction']:.1f} "
      f"(ground truth {p['colorfulness_truth']:.1f})",
      "blessed" if p["blessed"] else f"not blessed: {p['blessing_failures']}",
      f"grid (grayscale | prediction | ground truth): {p['grid']}",
  ]


def value_of(v: metadata_store_pb2.Value):
  """A property's plain Python value (structs and protos as their text)."""
  kind = v.WhichOneof("value")
  return getattr(v, kind) if kind in ("int_value", "double_value", "string_value", "bool_value") else str(v)


def colorize_command() -> str:
  """This program as the user can type it here: `colorize` if that is what PATH finds, else its path
  (`.venv/bin/colorize` after `make demo`).
  """
  program = sys.argv[0]
  if os.path.basename(program) != "colorize":
    return "colorize"
  found = shutil.which("colorize")
  if found and os.path.realpath(found) == os.path.realpath(program):
    return "colorize"
  relative = os.path.relpath(program)
  return shlex.quote(relative if not relative.startswith("..") else os.path.abspath(program))
