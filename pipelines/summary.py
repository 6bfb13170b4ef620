"""What a pipeline run produced, read from ML Metadata (never from guessed paths)."""
import json
from typing import Dict, List, Optional, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipelines import config as config_lib

PIPELINE_RUN_CONTEXT = "pipeline_run"


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
  component_of = {e.id: e.properties["component_id"].string_value or
                  e.custom_properties["component_id"].string_value for e in executions}
  artifacts = store.get_artifacts_by_id(list(output_ids))
  return run.name, [(component_of.get(output_ids[a.id], "?"), a) for a in sorted(artifacts, key=lambda a: a.id)]


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
    print(f"  {component:<16} {types.get(artifact.type_id, '?'):<16} {artifact.uri}")
    for line in _describe(types.get(artifact.type_id), artifact):
      print(f"  {'':<16} {'':<16} {line}")


def _describe(type_name: Optional[str], artifact) -> List[str]:
  props = artifact.custom_properties
  if type_name == "Examples" and "skip_counts" in props:
    counts = json.loads(props["skip_counts"].string_value or "{}")
    lines = [f"splits: {props['split_counts'].string_value}" if "split_counts" in props else ""]
    lines.append("skipped: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
    if "skip_report" in props:
      lines.append(f"skip report: {props['skip_report'].string_value}")
    return [l for l in lines if l]
  return []
