"""`colorize photos IN... -o OUTDIR --model DIR`: colorize photos with an exported model."""
import pathlib

import click

from serving import photos as photos_lib


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Where the colorized photos go (created if missing), under the inputs' relative paths.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="An exported SavedModel, a Trainer's model output, or a Pusher's base directory "
                   "(its newest version is used).")
@click.option("--overwrite", is_flag=True,
              help="Replace outputs that exist already (by default they are kept). An input is never replaced.")
def photos(inputs, output_dir, model_dir, overwrite):
  """Colorize photos (JPEG, PNG, GIF, BMP, WebP, TIFF), or folders of them, at their original resolution.

  Each photo's path relative to the folder holding all INPUTS is kept under OUTPUT_DIR.
  Links inside a given folder are followed; links out of it, broken links, loops and
  other files are passed over and listed.
  """
  stderr = click.get_text_stream("stderr")
  try:
    planned = photos_lib.plan(inputs, output_dir)
    for path, reason in planned.passed_over:
      click.echo(f"passed over {path}: {reason}", err=True)
    if not planned.jobs:
      raise photos_lib.UsageError(f"no photos in {', '.join(map(str, inputs))}")
    writer = photos_lib.Writer(planned.jobs, overwrite)
    todo = [job for job in planned.jobs if not writer.keeps(job.target)]
    photos_lib.prepare_output(output_dir, planned.jobs, todo)
    saved_model = photos_lib.resolve_model_dir(pathlib.Path(model_dir))
    if todo:  # a finished run, repeated, needs no model
      click.echo(f"Colorizing {len(todo)} photo(s) with {saved_model}", err=True)
      colorizer = photos_lib.load_colorizer(saved_model)
  except photos_lib.UsageError as e:
    raise click.UsageError(str(e)) from e

  from tqdm import tqdm
  written, kept, failed = 0, len(planned.jobs) - len(todo), 0
  stopped = None
  for index, job in enumerate(tqdm(todo, unit="photo", dynamic_ncols=True, file=stderr, disable=not todo)):
    try:
      if writer.keeps(job.target):
        kept += 1
        continue
      data = photos_lib.colorize_photo(colorizer, job.source.read_bytes(), photos_lib.output_format(job.target))
      if writer.write(job.target, data):
        written += 1
      else:
        kept += 1
    except photos_lib.OutputFullError as e:
      stopped = (e, len(todo) - index)
      break
    except (photos_lib.PhotoError, OSError) as e:
      failed += 1
      tqdm.write(f"skipped {job.source}: {e}", file=stderr)
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
