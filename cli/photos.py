"""`colorize photos IN... -o OUTDIR --model DIR`: colorize photos with an exported model."""
import pathlib

import click

from serving import photos as photos_lib


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=pathlib.Path))
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Where the colorized photos go (created if missing), under the input file names.")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="An exported SavedModel, a Trainer's model output, or a Pusher's base directory "
                   "(its newest version is used).")
def photos(inputs, output_dir, model_dir):
  """Colorize photos: JPEG/PNG files, or folders of them, at their original resolution."""
  try:
    jobs = photos_lib.plan(inputs, output_dir)
    if not jobs:
      raise photos_lib.UsageError(
          f"no {'/'.join(photos_lib.PHOTO_SUFFIXES)} photos in {', '.join(map(str, inputs))}")
    saved_model = photos_lib.resolve_model_dir(pathlib.Path(model_dir))
    click.echo(f"Colorizing {len(jobs)} photo(s) with {saved_model}", err=True)
    colorize = photos_lib.load_colorizer(saved_model)
  except photos_lib.UsageError as e:
    raise click.UsageError(str(e)) from e
  output_dir.mkdir(parents=True, exist_ok=True)

  from tqdm import tqdm
  failed = []
  for source, target in tqdm(jobs, unit="photo", dynamic_ncols=True):
    try:
      target.write_bytes(photos_lib.colorize_photo(colorize, source.read_bytes(), target.suffix.lower()))
    except (photos_lib.PhotoError, OSError) as e:
      failed.append(source)
      tqdm.write(f"skipped {source}: {e}", file=click.get_text_stream("stderr"))
  click.echo(f"Colorized {len(jobs) - len(failed)} photo(s) into {output_dir}"
             + (f"; skipped {len(failed)} unreadable" if failed else ""))
  if failed:
    raise SystemExit(1)
