"""The `colorize` command line: run the pipeline, colorize photos, inspect lineage, go to the cloud.

Every command module keeps heavy imports (TensorFlow, TFX) inside its commands, so
`colorize --help` is instant.
"""
import click

from cli import cloud
from cli import crash
from cli import lineage
from cli import options
from cli import photos
from cli import quiet
from pipelines import config as config_lib


def _print_version(ctx, param, value):
  del param
  if value and not ctx.resilient_parsing:
    from cli import version
    click.echo(version.describe())
    ctx.exit()


@click.group(cls=crash.GuardedGroup)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and the git commit it was built from, and exit.")
def main():
  """Colorize black-and-white photographs with a TFX pipeline (Deep Koalarization)."""
  quiet.install()


@main.command()
@options.config_options(options.RUN)
@click.option("--until", "last_stage", type=click.Choice(config_lib.STAGES), default=config_lib.STAGES[-1],
              show_default=True, help="Run the pipeline up to this stage.")
@click.option("--cpu-replicas", type=int, default=0,
              help="Split the CPU into N logical devices so MirroredStrategy trains N replicas without a GPU.")
def run(config_path, last_stage, cpu_replicas, **overrides):
  """Run the pipeline locally (LocalDagRunner, Beam DirectRunner, SQLite ML Metadata)."""
  _run_locally(options.load_config(config_path, overrides), last_stage, cpu_replicas)


@main.command()
@options.config_options(options.INGEST)
def ingest(config_path, **overrides):
  """Run only the ingestion stage: COCO -> TFRecords (an Examples artifact) + skip report."""
  _run_locally(options.load_config(config_path, overrides), config_lib.STAGES[0])


def _run_locally(cfg, last_stage: str, cpu_replicas: int = 0) -> None:
  from components.data_gate import checks
  from components.ingest import roots
  try:
    roots.check(cfg.ingest.data_root)  # in seconds, before TFX is even imported
  except roots.SourceError as e:
    raise click.ClickException(str(e)) from e
  from lineage import summary
  from pipelines import local_runner
  from schemas import artifact_files
  from trainer import cluster
  try:
    cluster.cluster_config()  # the Trainer reads it: a malformed one is the caller's to fix, before anything runs
  except cluster.ClusterConfigError as e:
    raise click.UsageError(str(e)) from e
  try:
    local_runner.run(cfg, last_stage=last_stage, cpu_replicas=cpu_replicas)
  except (roots.SourceError, local_runner.RunLockError, artifact_files.DamagedArtifactError) as e:
    raise click.ClickException(str(e)) from e
  except checks.Stopped as e:  # the data gate's verdict: what the run recorded, then why it stopped
    summary.print_run_summary(cfg)
    raise click.ClickException(str(e)) from e
  except Exception as e:
    # Imported here: they load TensorFlow, which a failed check never needs.
    from schemas import embedding_info
    from trainer import model as model_lib
    from trainer import resume_lease
    if isinstance(e, (resume_lease.ResumeStateInUseError, model_lib.WeightsError, embedding_info.EmbeddingError)):
      raise click.ClickException(str(e)) from e
    raise
  summary.print_run_summary(cfg)


for _command in cloud.COMMANDS:
  main.add_command(_command)
main.add_command(lineage.lineage)
main.add_command(photos.photos)
