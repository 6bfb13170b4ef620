"""Flags shared by the commands that run the pipeline, and the config they build."""
import click

from pipelines import config as config_lib
from trainer import settings


def config_options(f):
  """Flags shared by the commands that run the pipeline; they override the config file."""
  options = [
      click.option("--config", "config_path", type=click.Path(dir_okay=False),
                   help="JSON or YAML config file (keys as in pipelines/config.py)."),
      click.option("--data-root", "ingest__data_root",
                   help="COCO root (train2017/, val2017/, annotations/) or a folder of images; local or gs://. "
                   "Default: the bundled demo data."),
      click.option("--output-root", "output_root",
                   help=f"Where pipeline outputs, metadata and pushed models go (default "
                        f"{config_lib.DEFAULT_OUTPUT_ROOT})."),
      click.option("--pipeline-name", "pipeline_name"),
      click.option("--metadata-file", "metadata_file",
                   help="Local ML Metadata SQLite file (default: under the output root, or ./colorize_runs "
                   "when the output root is gs://)."),
      click.option("--max-images", "ingest__max_images", type=int, help="Ingest at most this many images (0 = all)."),
      click.option("--categories", "ingest__categories",
                   help="Comma-separated COCO category names; keep only images containing one of them."),
      click.option("--snapshot", "ingest__snapshot",
                   help="One snapshot per run: its folder below --data-root with {SPAN} or {YYYY}{MM}{DD} "
                   "(and optionally {VERSION}), e.g. 'span-{SPAN}'; the newest is ingested unless --span says which."),
      click.option("--span", "ingest__span", type=int, help="Ingest this span instead of the newest."),
      click.option("--test-fraction", "ingest__test_fraction", type=float,
                   help="Share of the photos held out for test, by a stable hash of the image id (default 0.2)."),
      click.option("--keep-grayscale/--drop-grayscale", "ingest__keep_grayscale", default=None,
                   help="Keep genuinely black-and-white photos in the training splits (default: drop)."),
      click.option("--epochs", "train__epochs", type=int),
      click.option("--steps-per-epoch", "train__steps_per_epoch", type=int, help="0 = one pass over the train split."),
      click.option("--batch-size", "train__batch_size", type=int, help="Per replica."),
      click.option("--learning-rate", "train__learning_rate", type=float),
      click.option("--weights", "train__weights",
                   help="Inception-ResNet-v2 weights: imagenet (downloads once), none (random, offline) or a local "
                        "file."),
      click.option("--strategy", "train__strategy",
                   type=click.Choice(settings.STRATEGIES)),
      click.option("--seed", "train__seed", type=int),
      click.option("--mse-upper-bound", "evaluate__mse_upper_bound", type=float,
                   help="Bless only models whose test MSE is below this."),
      click.option("--beam-arg", "beam_pipeline_args", multiple=True,
                   help="A Beam pipeline argument, e.g. --beam-arg=--direct_running_mode=multi_processing "
                        "(repeatable)."),
      click.option("--cache/--no-cache", "enable_cache", default=None, help="Reuse outputs of unchanged steps "
                                                                            "(default on)."),
  ]
  for option in reversed(options):
    f = option(f)
  return f


def load_config(config_path, overrides) -> config_lib.PipelineConfig:
  # Flag names spell the config key with "__" for "." (Click names must be identifiers).
  overrides = {k.replace("__", "."): v for k, v in overrides.items() if v is not None and v != ()}
  try:
    return config_lib.load(config_path, overrides)
  except config_lib.ConfigError as e:
    raise click.UsageError(str(e)) from e
