"""`colorize photos IN... -o OUTDIR --model DIR | --endpoint URL|RESOURCE`: colorize photos."""
import pathlib

import click

from serving import endpoint as endpoint_lib
from serving import photos as photos_lib


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Where the colorized photos go (created if missing), under the input file names.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              help="An exported SavedModel, a Trainer's model output, or a Pusher's base directory "
                   "(its newest version is used).")
@click.option("--endpoint", help="Instead of --model, a deployed model: a REST :predict URL "
                                 "(TF Serving: http://HOST:8501/v1/models/NAME:predict) or a Vertex AI endpoint, "
                                 "projects/PROJECT/locations/REGION/endpoints/ID (uses your gcloud login).")
def photos(inputs, output_dir, model_dir, endpoint):
  """Colorize photos: JPEG/PNG files, or folders of them, at their original resolution."""
  try:
    if (model_dir is None) == (endpoint is None):
      raise photos_lib.UsageError("give either --model DIR or --endpoint URL|RESOURCE")
    jobs = photos_lib.plan(inputs, output_dir)
    if not jobs:
      raise photos_lib.UsageError(
          f"no {'/'.join(photos_lib.PHOTO_SUFFIXES)} photos in {', '.join(map(str, inputs))}")
    if endpoint is None:
      saved_model = photos_lib.resolve_model_dir(pathlib.Path(model_dir))
      click.echo(f"Colorizing {len(jobs)} photo(s) with {saved_model}", err=True)
      results = photos_lib.local_results(photos_lib.load_colorizer(saved_model), jobs)
    else:
      remote = endpoint_lib.connect(endpoint)
      click.echo(f"Colorizing {len(jobs)} photo(s) with {remote.url}", err=True)
      results = photos_lib.endpoint_results(remote, jobs)
  except (photos_lib.UsageError, endpoint_lib.EndpointError) as e:
    raise click.UsageError(str(e)) from e
  output_dir.mkdir(parents=True, exist_ok=True)

  from tqdm import tqdm
  failed, done = [], 0
  progress = tqdm(total=len(jobs), unit="photo", dynamic_ncols=True)
  try:
    for source, target, result in results:
      try:
        if isinstance(result, Exception):
          raise result
        target.write_bytes(result)
        done += 1
      except (photos_lib.PhotoError, OSError) as e:
        failed.append(source)
        tqdm.write(f"skipped {source}: {e}", file=click.get_text_stream("stderr"))
      progress.update()
  except endpoint_lib.EndpointError as e:  # the endpoint cannot be used: say how far it got
    raise click.ClickException(f"{e}\n{done} of {len(jobs)} photo(s) were colorized into {output_dir} before") from e
  finally:
    progress.close()
  click.echo(f"Colorized {done} photo(s) into {output_dir}"
             + (f"; skipped {len(failed)} unreadable" if failed else ""))
  if failed:
    raise SystemExit(1)
