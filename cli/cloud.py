"""`colorize compile | submit | schedule | upload | download-coco`: from this machine to the cloud.

The pipeline commands take the same flags and config file as `colorize run`, plus the
`cloud:` section (pipelines/cloud_config.py) or its flags. cli/main.py registers them.
"""
import json
import os
import tempfile

import click

from cli import credentials as credentials_lib
from cli import options
from pipelines import config as config_lib


def _load(config_path, overrides, builds=True):
  """The config, checked for a cloud run (`builds`) or only for talking to the project (schedule list, ...)."""
  cfg = options.load_config(config_path, overrides)
  from pipelines import cloud_config
  try:
    (cloud_config.require if builds else cloud_config.require_project)(cfg)
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
  return cfg


_ALLOW_DEFAULT_SERVICE_ACCOUNT = click.option(
    "--allow-default-service-account", is_flag=True,
    help="Compile the pipeline even without --service-account: it then runs as the Compute Engine default "
         "service account (Editor on the project).")


def _compile_to(cfg, target, output, allow_default_service_account=False):
  from pipelines import vertex_runner
  try:
    vertex_runner.compile_pipeline(cfg, target, output, allow_default_service_account)
  except vertex_runner.KfpMissingError as e:
    raise click.ClickException(str(e)) from e
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e


@click.command("compile")
@options.config_options(options.CLOUD)
@click.option("--target", type=click.Choice(["vertex", "kubeflow"]), default="vertex", show_default=True,
              help="vertex: a PipelineJob for Vertex AI Pipelines; kubeflow: the pipeline spec for Kubeflow "
                   "Pipelines v2.")
@click.option("--output", type=options.OutputPath(), default="pipeline.json", show_default=True,
              help="The JSON file to write.")
@_ALLOW_DEFAULT_SERVICE_ACCOUNT
def compile_command(config_path, target, output, allow_default_service_account, **overrides):
  """Compile the pipeline to JSON for Vertex AI Pipelines or Kubeflow Pipelines v2 (offline)."""
  cfg = _load(config_path, overrides)
  _compile_to(cfg, target, output, allow_default_service_account)
  click.echo(f"wrote {output} ({target}); image {cfg.cloud.image}")


def _job_options(f):
  for option in reversed([
      click.option("--template", type=click.Path(exists=True, dir_okay=False),
                   help="A compiled pipeline JSON (colorize compile --target vertex); default: compile now."),
      click.option("--param", "params", multiple=True,
                   help="NAME=VALUE for a runtime parameter the compiled pipeline declares (repeatable)."),
      click.option("--dry-run", is_flag=True, help="Print the request that would be sent and send nothing."),
      _ALLOW_DEFAULT_SERVICE_ACCOUNT,
  ]):
    f = option(f)
  return f


def _parameter_values(params):
  """--param NAME=VALUE items -> {NAME: VALUE} (texts: the template's declared types convert them)."""
  values = {}
  for item in params:
    name, sep, value = item.partition("=")
    if not sep:
      raise click.UsageError(f"--param {item!r} must be NAME=VALUE")
    values[name] = value
  return values


def _job_for(cfg, template, params, dry_run, allow_default_service_account, job_id=None):
  import google.auth
  from google.auth import credentials as auth_credentials

  from cloud import vertex_jobs
  values = _parameter_values(params)
  if template is None:
    template = os.path.join(tempfile.mkdtemp(prefix="colorize-"), "pipeline.json")
    _compile_to(cfg, "vertex", template, allow_default_service_account)
  # A dry run sends nothing, so it needs no login.
  credentials = auth_credentials.AnonymousCredentials() if dry_run else None
  if not dry_run:
    credentials_lib.check()
  try:
    return vertex_jobs.pipeline_job(cfg, template, values, job_id=job_id, credentials=credentials)
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
  except google.auth.exceptions.DefaultCredentialsError as e:
    raise click.ClickException(
        f"no Google Cloud credentials: run `gcloud auth application-default login` "
        f"(or set GOOGLE_APPLICATION_CREDENTIALS), or use --dry-run. ({e})") from e


@click.command("submit")
@options.config_options(options.CLOUD)
@_job_options
@click.option("--job-id", help="Vertex AI job id (default: <pipeline name>-<timestamp>).")
def submit_command(config_path, template, params, dry_run, allow_default_service_account, job_id, **overrides):
  """Run the pipeline once on Vertex AI Pipelines."""
  from cloud import vertex_jobs
  cfg = _load(config_path, overrides)
  job = _job_for(cfg, template, params, dry_run, allow_default_service_account, job_id)
  click.echo(json.dumps(vertex_jobs.submit(job, cfg, dry_run=dry_run), indent=2, sort_keys=True))


@click.group("schedule", invoke_without_command=True)
@options.config_options(options.CLOUD)
@_job_options
@click.option("--cron", help='When to run, e.g. "0 3 * * 1" (Mondays 03:00 UTC); "TZ=Europe/Paris 0 3 * * 1". '
                             "Needed to create a schedule.")
@click.option("--schedule-name", help="Display name of the schedule (default: <pipeline name>-schedule).")
@click.option("--max-concurrent-runs", type=int, default=1, show_default=True,
              help="Most runs of this schedule at once.")
@click.pass_context
def schedule_command(ctx, config_path, template, params, dry_run, allow_default_service_account, cron, schedule_name,
                     max_concurrent_runs, **overrides):
  """Run the pipeline on a cron schedule on Vertex AI Pipelines (`schedule list|pause|resume|delete`: operate them)."""
  if ctx.invoked_subcommand:
    return
  if not cron:
    raise click.UsageError("--cron is needed to create a schedule (or: schedule list | pause ID | resume ID | "
                           "delete ID)")
  from cloud import vertex_jobs
  cfg = _load(config_path, overrides)
  try:
    vertex_jobs.check_cron(cron)
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
  job = _job_for(cfg, template, params, dry_run, allow_default_service_account)
  try:
    request = vertex_jobs.schedule(job, cfg, cron, schedule_name or f"{cfg.pipeline_name}-schedule",
                                   max_concurrent_runs=max_concurrent_runs, dry_run=dry_run)
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
  click.echo(json.dumps(request, indent=2, sort_keys=True))


@click.command("rehearse")
@click.argument("template", type=click.Path(exists=True, dir_okay=False))
@click.option("--workdir", required=True, type=options.OutputPath(folder=True),
              help="Where runs, outputs, buckets (gs://B/P is WORKDIR/gcs/B/P) and the record of earlier "
                   "rehearsals (the baseline a resolver finds, the cache) live.")
@click.option("--param", "params", multiple=True,
              help="NAME=VALUE for a runtime parameter the compiled pipeline declares (repeatable).")
@click.option("--no-cache", is_flag=True, help="Run every task even when an earlier rehearsal ran it the same way.")
def rehearse_command(template, workdir, params, no_cache):
  """Run a compiled Vertex AI pipeline JSON on this machine, task by task, as Vertex AI would."""
  from cloud import vertex_jobs
  from cloud.rehearsal import engine
  values = _parameter_values(params)
  try:  # what was given (the template, --param) is checked first: a usage error, as compile's
    parameters = engine.runtime_parameters(engine.load_template(template), values)
    vertex_jobs.check_run_parameters({name: engine.plain_value(value) for name, value in parameters.items()})
  except (engine.RehearsalError, config_lib.ConfigError) as e:
    raise click.UsageError(str(e)) from e
  try:
    engine.rehearse(template, workdir, values, enable_cache=not no_cache, echo=click.echo)
  except engine.RehearsalError as e:
    raise click.ClickException(str(e)) from e


def _operate_schedules(call):
  from google.api_core import exceptions as api_exceptions
  import google.auth
  credentials_lib.check()
  try:
    return call()
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
  except google.auth.exceptions.DefaultCredentialsError as e:
    raise click.ClickException(f"no Google Cloud credentials: run `gcloud auth application-default login` ({e})") from e
  except api_exceptions.GoogleAPICallError as e:
    raise click.ClickException(f"Vertex AI answered: {e.message}") from e


@schedule_command.command("list")
@options.config_options(options.CLOUD)
def schedule_list_command(config_path, **overrides):
  """List the pipeline schedules of the project in the region (newest first)."""
  from cloud import vertex_jobs
  cfg = _load(config_path, overrides, builds=False)
  click.echo(json.dumps(_operate_schedules(lambda: vertex_jobs.list_schedules(cfg)), indent=2, sort_keys=True))


def _schedule_action_command(action, summary):
  @schedule_command.command(action, help=f"{summary} a schedule: its id or resource name (see `schedule list`).")
  @click.argument("schedule_id")
  @options.config_options(options.CLOUD)
  def command(schedule_id, config_path, **overrides):
    from cloud import vertex_jobs
    cfg = _load(config_path, overrides, builds=False)
    result = _operate_schedules(lambda: vertex_jobs.change_schedule(cfg, schedule_id, action))
    click.echo(json.dumps(result, indent=2, sort_keys=True))
  return command


for _action, _summary in (("pause", "Pause"), ("resume", "Resume"), ("delete", "Delete")):
  _schedule_action_command(_action, _summary)


@click.command("upload")
@click.argument("local_dir", type=click.Path(file_okay=False))
@click.argument("destination")
@click.option("--workers", type=int, default=8, show_default=True, help="Parallel uploads.")
def upload_command(local_dir, destination, workers):
  """Copy LOCAL_DIR (e.g. a COCO root) to DESTINATION (gs://bucket/prefix); resumable.

  Objects already in the bucket with the same size and CRC32C are skipped, so running
  it again after an interruption sends only what is missing or changed.
  """
  import google.auth.exceptions

  from cloud import gcs_upload
  credentials_lib.check()
  try:
    result = gcs_upload.upload(local_dir, destination, workers=workers)
  except gcs_upload.UploadError as e:
    raise click.ClickException(str(e)) from e
  except google.auth.exceptions.DefaultCredentialsError as e:
    raise click.ClickException(f"no Google Cloud credentials: run `gcloud auth application-default login` ({e})") from e
  click.echo(f"uploaded {len(result.uploaded)} files ({result.bytes_uploaded / 1e6:.1f} MB), "
             f"skipped {len(result.skipped)} already in {destination}, failed {len(result.failed)}, "
             f"not uploaded {len(result.passed_over)} (links out of the folder, broken links, special files)")
  for relative, error in sorted(result.failed.items()):
    click.echo(f"  failed: {relative}: {error}", err=True)
  for path, reason in sorted(result.passed_over.items()):
    click.echo(f"  not uploaded: {path}: {reason}", err=True)
  if result.failed:
    raise click.ClickException(f"{len(result.failed)} files failed; run the same command again to retry them")


@click.command("download-coco")
@click.option("--split", type=click.Choice(["val2017", "train2017"]), default="val2017", show_default=True,
              help="val2017: 5k images (815 MB); train2017: 118k images (19 GB). Annotations come with either.")
@click.option("--dest", required=True, type=options.OutputPath(folder=True),
              help="The COCO root to create or complete.")
@click.option("--keep-zips/--delete-zips", default=False, show_default=True,
              help="Keep the downloaded zips after unpacking.")
@click.option("--base-url", default=None, help="A mirror of cocodataset.org (same files, same checksums).")
def download_coco_command(split, dest, keep_zips, base_url):
  """Download and unpack the official COCO 2017 zips into a COCO root (resumable, checksummed)."""
  from cloud import coco_download
  try:
    unpacked = coco_download.download_split(split, dest, base_url=base_url or coco_download.OFFICIAL_BASE_URL,
                                            keep_zips=keep_zips)
  except coco_download.DownloadError as e:
    raise click.ClickException(str(e)) from e
  click.echo(f"{dest} holds {split} and annotations/ "
             f"({'unpacked ' + ', '.join(unpacked) if unpacked else 'already complete'})")

COMMANDS = (compile_command, submit_command, schedule_command, rehearse_command, upload_command,
            download_coco_command)
