"""Runs the pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata."""
import os

from pipelines import config as config_lib


def run(cfg: config_lib.PipelineConfig, last_stage: str = "push", cpu_replicas: int = 0) -> None:
  """Runs the pipeline described by `cfg` up to `last_stage`.

  cpu_replicas > 1 splits the CPU into that many logical devices so MirroredStrategy
  trains with several replicas without a GPU. It must happen before TensorFlow
  initialises its devices, and LocalDagRunner runs every component in this process,
  so it is done here, first.
  """
  if cpu_replicas > 1:
    from trainer import strategy
    strategy.split_cpu(cpu_replicas)

  from tfx import v1 as tfx

  from pipelines import pipeline

  os.makedirs(os.path.dirname(os.path.abspath(cfg.metadata_path)), exist_ok=True)
  tfx.orchestration.LocalDagRunner().run(
      pipeline.from_config(
          cfg,
          metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
              cfg.metadata_path),
          beam_pipeline_args=cfg.beam_pipeline_args,
          last_stage=last_stage,
      ))
