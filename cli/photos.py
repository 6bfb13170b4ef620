"""`colorize photos IN... -o OUTDIR --model DIR`: colorize photos with an exported model."""
import pathlib

import click

from serving import endpoint as endpoint_lib
from serving import photos as photos_lib


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Where the colorized photos go (created if missing), under the inputs' relative paths.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              help="An exported SavedModel, a Trainer's model output, or a Pusher's base directory "
                   "(its newest version is used).")
@click.option("--endpoint", help="Instead of --model, a deployed model: a REST :predict URL "
                                 "(TF Serving: http://HOST:8501/v1/models/NAME:predict) or a Vertex AI endpoint, "
                                 "projects/PROJECT/locations/REGION/endpoints/ID (uses your gcloud login).")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs that exist already (by default they are kept). An input is never replaced.")
def photos(inputs, output_dir, model_dir, endpoint, overwrite):
  """Colorize photos (JPEG, PNG, GIF, BMP, WebP, TIFF), or folders of them, at their original resolution.

  Each photo's path relative to the folder holding all INPUTS is kept under OUTPUT_DIR.
  Links inside a given folder are followed; links out of it, broken links, loops and
  other files are passed over and listed.
  """
  stderr = click.get_text_stream("stderr")
  try:
    if (model_dir is None) == (endpoint is None):
      raise photos_lib.UsageError("give either --model DIR or --endpoint URL|RESOURCE")
    planned = photos_lib.plan(inputs, output_dir)
    for path, reason in planned.passed_over:
      click.echo(f"passed over {path}: {reason}", err=True)
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
        results = photos_lib.local_results(photos_lib.load_network(saved_model), todo)
  except (photos_lib.UsageError, endpoint_lib.EndpointError) as e:
    raise click.UsageError(str(e)) from e

  from tqdm import tqdm
  written, kept, failed = 0, len(planned.jobs) - len(todo), 0
  stopped = None
  progress = tqdm(total=len(todo), unit="photo", dynamic_ncols=True, file=stderr, disable=not todo)
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
        tqdm.write(f"skipped {job.source}: {e}", file=stderr)
      progress.update()
  except endpoint_lib.EndpointError as e:  # the endpoint cannot be used: say how far it got
    raise click.ClickException(f"{e}\n{written} of {len(todo)} photo(s) were colorized into {output_dir} before") from e
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
