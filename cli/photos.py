"""`colorize photos IN... -o OUTDIR --model DIR [--runner R]`: colorize photos with an exported model.

Without --runner, in this process (serving/photos.py); with it, as a Beam pipeline
(serving/archive.py) for archives: the same per-photo work, the same bytes written. One
command for both, so an archive is colorized with the flags, names and guarantees users know.
"""
import os
import pathlib
import sys

import click

from cli import options
from imaging import tree
from serving import photo_settings


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output-dir", required=True, type=options.OutputPath(folder=True),
              help="Where the colorized photos go (created if missing), under the inputs' relative paths; "
                   "gs://BUCKET/PREFIX with --runner.")
@click.option("--model", "model_dir",
              help="An exported SavedModel, a Trainer's model output, or a Pusher's base directory "
                   "(its newest version is used); a gs:// SavedModel with --runner.")
@click.option("--endpoint", help="Instead of --model, a deployed model: a REST :predict URL "
                                 "(TF Serving: http://HOST:8501/v1/models/NAME:predict) or a Vertex AI endpoint, "
                                 "projects/PROJECT/locations/REGION/endpoints/ID (uses your gcloud login).")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs that exist already (by default they are kept). An input is never replaced.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=photo_settings.DEFAULT_BATCH_SIZE, show_default=True,
              help="Photos the network colorizes at once (a local --model). Memory grows by ~17 MB a photo "
                   "(the network's working memory).")
@click.option("--runner", type=click.Choice(photo_settings.RUNNERS),
              help="Run as a Beam pipeline (archives; gs:// inputs and outputs): DirectRunner on this machine, "
                   "DataflowRunner on Google Cloud with the project image (needs --config with a cloud: section). "
                   f"Writes {photo_settings.MANIFEST} in the output folder.")
@click.option("--beam-arg", "beam_args", multiple=True,
              help="A Beam pipeline argument for --runner, e.g. --beam-arg=--direct_num_workers=2 (repeatable).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="The project's config file, whose cloud: section (project, region, image, dataflow) "
                   "--runner DataflowRunner uses.")
def photos(inputs, output_dir, model_dir, endpoint, overwrite, batch_size, runner, beam_args, config_path):
  """Colorize photos (JPEG, PNG, GIF, BMP, WebP, TIFF), or folders of them, at their original resolution.

  Each photo's path relative to the folder holding all INPUTS is kept under OUTPUT_DIR.
  Links inside a given folder are followed; links out of it, broken links, loops and
  other files are passed over and listed.
  """
  from serving import archive  # Beam, numpy, PIL: not for `--help`
  from serving import endpoint as endpoint_lib  # numpy, PIL, requests: not for `--help`
  from serving import photos as photos_lib

  if runner:
    _archive(inputs, output_dir, model_dir, endpoint, overwrite, batch_size, runner, beam_args, config_path)
    return
  try:
    if (model_dir is None) == (endpoint is None):
      raise photos_lib.UsageError("give either --model DIR or --endpoint URL|RESOURCE")
    if any(archive.is_gcs(p) for p in (*inputs, output_dir, model_dir or "")):
      raise photos_lib.UsageError("gs:// inputs, output or model need --runner DirectRunner|DataflowRunner")
    if beam_args:
      raise photos_lib.UsageError("--beam-arg sets an option of a Beam pipeline: give --runner DirectRunner|"
                                  "DataflowRunner too")
    inputs = _local_paths(inputs)
    output_dir = pathlib.Path(output_dir)
    _check_model_dir(model_dir)
    planned = photos_lib.plan(inputs, output_dir)
    for path, reason in planned.passed_over:
      click.echo(tree.printable(f"passed over {path}: {reason}"), err=True)
    if not planned.jobs:
      raise photos_lib.UsageError(f"no photos in {', '.join(map(str, inputs))}")
    writer = photos_lib.Writer(planned.jobs, overwrite)
    todo = [job for job in planned.jobs if not writer.keeps(job.target)]
    photos_lib.prepare_output(output_dir, planned.jobs, todo)
    results = iter(())
    if endpoint is not None:
      remote = endpoint_lib.connect(endpoint)
      if todo:
        click.echo(f"Colorizing {len(todo)} photo(s) with {remote.url}", err=True)
        results = photos_lib.endpoint_results(remote, todo)
    else:
      saved_model = photos_lib.resolve_model_dir(pathlib.Path(model_dir))
      if todo:  # a finished run, repeated, needs no model
        click.echo(f"Colorizing {len(todo)} photo(s) with {saved_model}", err=True)
        results = photos_lib.local_results(photos_lib.load_network(saved_model), todo, batch_size)
  except (photos_lib.UsageError, endpoint_lib.EndpointError) as e:
    raise click.UsageError(str(e)) from e

  from tqdm import tqdm
  written, kept, failed = 0, len(planned.jobs) - len(todo), 0
  stopped = None
  progress = tqdm(total=len(todo), unit="photo", dynamic_ncols=True, file=sys.stderr, disable=not todo)
  try:
    for index, (job, result) in enumerate(results):
      try:
        if isinstance(result, Exception):
          raise result
        if writer.write(job.target, result):
          written += 1
        else:
          kept += 1
      except photos_lib.OutputFullError as e:
        stopped = (e, len(todo) - index)
        break
      except (photos_lib.PhotoError, OSError) as e:
        failed += 1
        tqdm.write(tree.printable(f"skipped {job.source}: {e}"), file=sys.stderr)
      progress.update()
  except endpoint_lib.EndpointError as e:  # the endpoint cannot be used: say how far it got
    raise click.ClickException(f"{e}\n{written} of {len(todo)} photo(s) were colorized into {output_dir} before "
                               "that; run the same command again to do the rest") from e
  finally:
    progress.close()
  summary = [f"Colorized {written} photo(s) into {output_dir}"]
  if kept:
    summary.append(f"kept {kept} that existed already (--overwrite replaces them)")
  if failed:
    summary.append(f"skipped {failed} (listed above)")
  if planned.passed_over:
    summary.append(f"passed over {len(planned.passed_over)} other file(s) (listed above)")
  click.echo("; ".join(summary))
  if stopped:
    error, left = stopped
    raise click.ClickException(f"stopped: the output folder takes no more files ({error.strerror}); "
                               f"{left} photo(s) not colorized")
  if failed:
    raise SystemExit(1)


def _local_paths(inputs):
  """The inputs as paths; one that does not exist is a usage error. One that cannot be reached
  (a folder on the way that may not be entered) is the listing's to pass over with its reason.
  """
  from serving import photos as photos_lib
  for path in inputs:
    try:
      os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
      raise photos_lib.UsageError(f"Path {path!r} does not exist.") from None
    except OSError:
      pass
  return [pathlib.Path(p) for p in inputs]


def _check_model_dir(model_dir):
  from serving import photos as photos_lib
  if model_dir is not None and not pathlib.Path(model_dir).is_dir():
    raise photos_lib.UsageError(f"--model {model_dir!r} is not a folder.")


def _archive(inputs, output_dir, model_dir, endpoint, overwrite, batch_size, runner, beam_args, config_path):
  """`colorize photos --runner`: serving/archive.py's pipeline; the counts, and exit code 1 if any was skipped."""
  from serving import archive  # Beam, numpy, PIL: not for `--help`
  from serving import colorizer
  from serving import photos as photos_lib
  try:
    if endpoint is not None or model_dir is None:
      raise photos_lib.UsageError("--runner runs a --model DIR (a deployed --endpoint serves photos itself)")
    beam_args = pipeline_args(runner, inputs, output_dir, model_dir, config_path, beam_args)
    _check_beam_args(beam_args)
    if not archive.is_gcs(inputs[0]):
      _local_paths(inputs)
    if archive.is_gcs(model_dir):
      saved_model = model_dir
    else:
      _check_model_dir(model_dir)
      saved_model = str(photos_lib.resolve_model_dir(pathlib.Path(model_dir)))
      photos_lib.check_readable(pathlib.Path(saved_model))
    planned = archive.plan(inputs, output_dir, overwrite)
    for r in planned.rows:  # as without --runner: before the job, and in the list too
      if r["result"] == archive.PASSED_OVER:
        click.echo(tree.printable(f"passed over {r['input']}: {r['reason']}"), err=True)
    if not planned.todo and not planned.count(archive.KEPT):
      raise photos_lib.UsageError(f"no photos in {', '.join(map(str, inputs))}")
    if not archive.is_gcs(output_dir):
      jobs = [photos_lib.Job(pathlib.Path(source), pathlib.Path(target)) for source, target in planned.todo]
      photos_lib.prepare_output(pathlib.Path(output_dir), jobs, jobs)
  except photos_lib.UsageError as e:
    raise click.UsageError(str(e)) from e
  if planned.todo:  # a finished run, repeated, needs no model
    click.echo(f"Colorizing {len(planned.todo)} photo(s) with {saved_model} on Beam's {runner}", err=True)
    try:
      rows = archive.run(planned, saved_model, output_dir, overwrite, batch_size, beam_args)
    except colorizer.ModelError as e:  # as without --runner, where the model is loaded before any photo
      raise click.UsageError(str(e)) from e
  else:
    rows = planned.rows
  counts = {result: sum(r["result"] == result for r in rows)
            for result in (archive.COLORIZED, archive.KEPT, archive.SKIPPED, archive.PASSED_OVER)}
  for r in rows:
    if r["result"] == archive.SKIPPED:
      click.echo(tree.printable(f"skipped {r['input']}: {r['reason']}"), err=True)
  summary = (f"Colorized {counts[archive.COLORIZED]} photo(s) into {output_dir}; kept {counts[archive.KEPT]} that "
             f"existed already; skipped {counts[archive.SKIPPED]}; passed over {counts[archive.PASSED_OVER]} other "
             "file(s)")
  manifest = f"{output_dir.rstrip('/')}/{archive.MANIFEST}"
  try:
    archive.write_manifest(output_dir, rows)
  except (photos_lib.PhotoError, OSError) as e:  # a full disk, another user's list in a shared folder
    click.echo(summary)
    raise click.ClickException(f"the list could not be written ({e.strerror if isinstance(e, OSError) else e}); "
                               "what the job did is counted above") from e
  click.echo(f"{summary}; the list: {manifest}")
  if counts[archive.SKIPPED]:
    sys.exit(1)


def _check_beam_args(beam_args) -> None:
  """Beam's option values parsed now, before anything is written: Beam parses them when the pipeline
  starts, and a bad one prints its whole usage text and exits.
  """
  import contextlib
  import io

  from apache_beam.options import pipeline_options

  from serving import photos as photos_lib
  said = io.StringIO()
  try:
    with contextlib.redirect_stderr(said):
      pipeline_options.PipelineOptions(list(beam_args)).get_all_options()
  except SystemExit as e:
    lines = said.getvalue().strip().splitlines() or [f"exit {e.code}"]
    raise photos_lib.UsageError(f"--beam-arg: {lines[-1].split(': error: ', 1)[-1]}") from e


def pipeline_args(runner, inputs, output_dir, model_dir, config_path, beam_args):
  """The Beam pipeline's arguments: the runner's (DataflowRunner: the config's cloud: section),
  then the user's --beam-arg (which win over them, e.g. --max_num_workers).
  """
  if runner == "DataflowRunner":
    return _dataflow_args(inputs, output_dir, model_dir, config_path) + list(beam_args)
  return ["--runner=DirectRunner", *beam_args]


def _dataflow_args(inputs, output_dir, model_dir, config_path):
  from pipelines import cloud_config
  from pipelines import config as config_lib
  from serving import archive  # Beam, numpy, PIL: not for `--help`
  from serving import photos as photos_lib
  if not all(archive.is_gcs(p) for p in (*inputs, output_dir, model_dir)):
    raise photos_lib.UsageError("--runner DataflowRunner reads and writes Cloud Storage: the inputs, "
                                "--output-dir and --model must be gs:// paths")
  try:
    cfg = config_lib.load(config_path)
  except config_lib.ConfigError as e:
    raise photos_lib.UsageError(str(e)) from e
  cloud = cfg.cloud
  if cloud is None or not cloud.project or not cloud.image:
    raise photos_lib.UsageError("--runner DataflowRunner needs --config FILE with a cloud: section giving "
                                "project and image (the project image, see docs/vertex.md)")
  if not cloud.dataflow.temp_location and not cfg.output_root.startswith("gs://"):
    raise photos_lib.UsageError("--runner DataflowRunner needs a gs:// temp location: set cloud.dataflow.temp_location "
                                "or a gs:// output_root in the config file")
  return cloud_config.dataflow_args(cloud, cfg.output_root)
