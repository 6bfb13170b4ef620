"""`colorize lineage`: where a model came from, read from ML Metadata.

The store is the local runs' SQLite file by default (found through the config: --config,
--output-root, --pipeline-name or --metadata-file), a shared MySQL store, or, for a Vertex AI
pipeline job (--vertex-job), Vertex ML Metadata (lineage/vertex.py). `--format`
and `--output` work before or after the subcommand. ML Metadata and PIL are imported only
when a store is read or a picture drawn, so `--help` answers at once.
"""
import json

import click

from cli import credentials as credentials_lib
from cli import options
from pipelines import config as config_lib

FORMATS = ("table", "json", "dot", "png")
_LIST_FORMATS = ("table", "json")


@click.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The run's config file: its output_root and pipeline_name locate the store.")
@click.option("--output-root", help=f"The run's output root (default {config_lib.DEFAULT_OUTPUT_ROOT}).")
@click.option("--pipeline-name", help=f"The run's pipeline name (default {config_lib.DEFAULT_PIPELINE_NAME}).")
@click.option("--metadata-file", type=click.Path(dir_okay=False), help="The SQLite ML Metadata file to read.")
@click.option("--mysql-host", help="Read a shared MySQL ML Metadata store on this host instead.")
@click.option("--mysql-port", type=int, default=3306, show_default=True, help="Port of that MySQL server.")
@click.option("--mysql-database", default="mlmd", show_default=True, help="Its ML Metadata database.")
@click.option("--mysql-user", default="root", show_default=True, help="The MySQL user to read as.")
@click.option("--mysql-password", envvar="COLORIZE_MYSQL_PASSWORD", default="",
              help="Or set COLORIZE_MYSQL_PASSWORD.")
@click.option("--vertex-job", help="Read a Vertex AI pipeline job's lineage from Vertex ML Metadata instead: "
              "projects/P/locations/L/pipelineJobs/ID, or the job id with --config's cloud project and region.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="table (default), json, dot or png (png needs --output); runs and artifacts take table|json.")
@click.option("--output", "output_path", type=options.OutputPath(),
              help="Write here instead of printing (required for png).")
@click.pass_context
def lineage(ctx, config_path, output_root, pipeline_name, metadata_file, mysql_host, mysql_port, mysql_database,
            mysql_user, mysql_password, vertex_job, fmt, output_path):
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
  # Named by --pipeline-name or the config; else `run` reads the store's newest run, of any pipeline.
  named = cfg.pipeline_name if pipeline_name or config_path else None
  ctx.obj = _Options(cfg.metadata_path, mysql, fmt, output_path, named)
  if vertex_job:
    if metadata_file or mysql_host:
      raise click.UsageError("--vertex-job reads Vertex ML Metadata: leave out --metadata-file and --mysql-host")
    from lineage import vertex
    credentials_lib.check()
    ctx.obj.vertex = vertex.Client(_read(lambda: vertex.job_name(vertex_job, getattr(cfg, "cloud", None))))
  if ctx.invoked_subcommand is None:
    ctx.invoke(model)


class _Options:
  """What the group's options say, for the subcommand to use where it has no option of its own."""

  def __init__(self, metadata_path: str, mysql, fmt, output_path, pipeline_name: str):
    self.metadata_path, self.mysql, self.fmt, self.output_path = metadata_path, mysql, fmt, output_path
    self.pipeline_name = pipeline_name
    self._store = None
    self.vertex = None  # a lineage.vertex.Client with --vertex-job

  def local_only(self, command: str) -> None:
    if self.vertex:
      raise click.UsageError(f"`lineage {command}` reads a local store; with --vertex-job use `model` or `runs`")

  @property
  def store(self):
    """The store to read (lineage.graph.Store, opened on first use)."""
    if self._store is None:
      from lineage import graph as graph_lib
      self._store = graph_lib.Store(self.metadata_path, self.mysql)
    return self._store

  def format(self, fmt, allowed=FORMATS) -> str:
    chosen = fmt or self.fmt or "table"
    if chosen not in allowed:
      raise click.UsageError(f"--format {chosen} is not available here; choose from {', '.join(allowed)}")
    return chosen


def _format_option(choices):
  return click.option("--format", "fmt", type=click.Choice(choices), default=None, help="Default table.")


@lineage.command()
@_format_option(_LIST_FORMATS)
@click.pass_obj
def runs(obj: _Options, fmt):
  """List the pipeline runs in the store (the pipeline's jobs with --vertex-job), newest last: complete, failed,
  running or interrupted.
  """
  from lineage import graph as graph_lib
  if obj.vertex:
    from lineage import vertex
    rows = _read(lambda: vertex.runs(obj.vertex))
  else:
    rows = _read(lambda: graph_lib.pipeline_runs(obj.store.store, obj.store.may_be_running))
  if obj.format(fmt, _LIST_FORMATS) == "json":
    click.echo(json.dumps(rows, indent=2))
    return
  if not rows:
    click.echo(f"No pipeline runs in {obj.store.where}")
  for r in rows:
    steps = " ".join(f"{k.lower()}={v}" for k, v in r["steps"].items())
    click.echo(f"{r['created']}  {r['pipeline']:<12} {r['run']:<32} {r['status']:<12} {steps}")


@lineage.command("run")
@click.argument("run_id", required=False)
@click.pass_obj
def run_summary(obj: _Options, run_id):
  """What run RUN_ID (default: the latest) did: each step ran, cached or skipped and why, the spans, the gates'
  verdicts, the outputs and what was pushed (the summary `colorize run` ends with).
  """
  from lineage import summary
  obj.local_only("run")
  click.echo("\n".join(_read(lambda: summary.run_lines(obj.store.store, obj.pipeline_name, obj.store.where, run_id))))


@lineage.command()
@click.argument("type_name", required=False)
@_format_option(_LIST_FORMATS)
@click.pass_obj
def artifacts(obj: _Options, type_name, fmt):
  """List artifact types with counts, or the artifacts of TYPE_NAME (e.g. Model, PushedModel)."""
  from lineage import graph as graph_lib
  fmt = obj.format(fmt, _LIST_FORMATS)
  obj.local_only("artifacts")
  if not type_name:
    counts = _read(lambda: graph_lib.artifact_counts(obj.store.store))
    if fmt == "json":
      click.echo(json.dumps(counts, indent=2))
    elif not counts:
      click.echo(f"No artifacts in {obj.store.where}")
    for name, count in sorted(counts.items()) if fmt == "table" else ():
      click.echo(f"{name:<24} {count}")
    return
  rows = _read(lambda: graph_lib.artifacts_of_type(obj.store.store, type_name, obj.store.where))
  if fmt == "json":
    click.echo(json.dumps(rows, indent=2))
    return
  for r in rows:
    click.echo(f"#{r['id']:<5} {r['created']}  {r['uri']}  {graph_lib.short_properties(r['properties'])}")


@lineage.command()
@click.argument("artifact_id", type=int, required=False)
@_format_option(FORMATS)
@click.option("--output", "output_path", type=options.OutputPath(),
              help="Write here instead of printing (required for png).")
@click.pass_obj
def model(obj: _Options, artifact_id, fmt, output_path):
  """Lineage of ARTIFACT_ID (default: the latest pushed model; the job's with --vertex-job) back to the ingested
  data.
  """
  from lineage import graph as graph_lib
  fmt, output_path = obj.format(fmt), output_path or obj.output_path
  if fmt == "png" and not output_path:
    raise click.UsageError("--format png needs --output FILE.png")

  def read():
    if obj.vertex:
      from lineage import vertex
      return vertex.model_lineage(obj.vertex, artifact_id)
    start = graph_lib.start_artifact(obj.store.store, artifact_id, obj.store.where)
    return start.id, graph_lib.upstream_graph(obj.store.store, start.id)

  start_id, graph = _read(read)
  if fmt == "png":
    from lineage import picture
    picture.draw(graph, start_id).save(output_path, format="PNG")
    click.echo(f"Wrote {output_path}")
    return
  if fmt == "table":
    text = graph_lib.render_table(graph, start_id)
  elif fmt == "json":
    text = json.dumps(graph, indent=2)
  else:
    text = graph_lib.render_dot(graph, start_id)
  if output_path:
    with open(output_path, "w") as f:
      f.write(text + "\n")
    click.echo(f"Wrote {output_path}")
  else:
    click.echo(text)


def _read(query):
  from lineage import graph as graph_lib
  try:
    return query()
  except graph_lib.NotInStoreError as e:
    raise click.UsageError(str(e)) from e
  except graph_lib.UserError as e:
    raise _UserError(str(e)) from e
  except graph_lib.LineageError as e:
    raise click.ClickException(str(e)) from e



class _UserError(click.ClickException):
  """One line, exit 2: what the user must change (the job named, a login)."""
  exit_code = 2
