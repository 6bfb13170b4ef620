"""What a pipeline run produced, read from ML Metadata (never from guessed paths)."""
import json
from typing import Dict, List, Optional, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components import embed
from components import report as report_lib
from pipelines import config as config_lib

PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"


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
  runs = [c for c in store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
          if _belongs_to(store, c, pipeline_name)]
  if not runs:
    return None, []
  run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
  executions = store.get_executions_by_context(run.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  output_ids = {ev.artifact_id: ev.execution_id for ev in events
                if ev.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)}
  component_of = {e.id: component_id(store, e.id) for e in executions}
  artifacts = store.get_artifacts_by_id(list(output_ids))
  return run.name, [(component_of.get(output_ids[a.id], "?"), a) for a in sorted(artifacts, key=lambda a: a.id)]


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
  """Prints every output of the latest run: where it is and what it says."""
  store = open_store(cfg.metadata_path)
  run_id, outputs = latest_run_outputs(store, cfg.pipeline_name)
  if run_id is None:
    print(f"No run of pipeline {cfg.pipeline_name!r} recorded in {cfg.metadata_path}")
    return
  types = artifact_type_names(store)
  print(f"\nPipeline run {run_id}  (ML Metadata: {cfg.metadata_path})")
  for component, artifact in outputs:
    # Custom types carry a namespace ("components.ColorizationReport"); the name is enough here.
    print(f"  {component:<16} {types.get(artifact.type_id, '?').rsplit('.', 1)[-1]:<18} {artifact.uri}")
    for line in _describe(types.get(artifact.type_id), artifact):
      print(f"  {'':<16} {'':<18} {line}")
  if any(types.get(a.type_id) == "PushedModel" for _, a in outputs):
    default_store = cfg.metadata_path == config_lib.from_dict({}).metadata_path  # what `colorize lineage` finds here
    print("\nTrace the model back to its data:  colorize lineage"
          + ("" if default_store else f" --metadata-file {cfg.metadata_path}"))


def _describe(type_name: Optional[str], artifact) -> List[str]:
  props = artifact.custom_properties
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
    return ["nothing pushed: the model was not blessed"]
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
