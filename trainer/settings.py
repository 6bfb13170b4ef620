"""The Trainer's settings: what `colorize run` passes as custom_config["train"] and run_fn reads.

Defined here, at the lowest layer that needs them; pipelines/config.py nests them as
the `train:` section of the one config.
"""
import dataclasses
import os
from typing import Any, Dict

from schemas import config_fields

STRATEGIES = ("auto", "cpu", "one_device", "mirrored", "multi_worker")
MIXED_PRECISION = ("auto", "on", "off")
WEIGHTS = ("imagenet", "none")  # or a local .h5 / .keras weights file
WEIGHTS_FILE_SUFFIXES = (".h5", ".keras")
LIVE = "live"
PRECOMPUTED = "precomputed"
GLOBAL_FEATURES = (LIVE, PRECOMPUTED)
# Beyond these a run would never end or a counter would overflow: a typo, refused up front.
MAX_EPOCHS = 100_000
MAX_STEPS = 10 ** 9
MAX_BATCH_SIZE = 65_536

setting = config_fields.setting


@dataclasses.dataclass
class TrainConfig:
  epochs: int = setting(2, "Training epochs.")
  steps_per_epoch: int = setting(0, "Training steps per epoch; 0 = one pass over the train split.")
  eval_steps: int = setting(0, "Validation steps after each epoch; 0 = one pass over the eval split.")
  batch_size: int = setting(8, "Photos per step and replica; the global batch is batch_size x replicas.")
  learning_rate: float = setting(1e-3, "Adam's learning rate.")
  weights: str = setting("imagenet", "Inception-ResNet-v2 weights: imagenet (downloads once), none (random, offline) or a local .h5/.keras file.")
  global_features: str = setting(LIVE, "live: Inception-ResNet-v2 runs in every training step; precomputed: once per photo (the Embed step), then only the colorizer head trains.")
  augment: bool = setting(True, "Random flips, zooms and shears of the training photos (in the training step).")
  seed: int = setting(42, "Seed of the weights' initialisation, the shuffling and the augmentation.")
  strategy: str = setting("auto", "tf.distribute strategy: auto (from the devices and TF_CONFIG), cpu, one_device, mirrored, multi_worker.")
  mixed_precision: str = setting("auto", "Mixed float16 precision: auto (on for GPUs), on or off.")
  checkpoint_steps: int = setting(200, "Save the resume state every N steps (and at each epoch's end).")

  def validate(self) -> "TrainConfig":
    check = config_fields.check
    check(1 <= self.epochs <= MAX_EPOCHS, f"train.epochs must be from 1 to {MAX_EPOCHS:,}, got {self.epochs}")
    for name in ("steps_per_epoch", "eval_steps", "checkpoint_steps"):
      check(getattr(self, name) <= MAX_STEPS, f"train.{name} must be at most {MAX_STEPS:,}, got {getattr(self, name)}")
    check(self.steps_per_epoch >= 0, f"train.steps_per_epoch must be >= 0, got {self.steps_per_epoch}")
    check(self.eval_steps >= 0, f"train.eval_steps must be >= 0, got {self.eval_steps}")
    check(1 <= self.batch_size <= MAX_BATCH_SIZE,
          f"train.batch_size must be from 1 to {MAX_BATCH_SIZE:,}, got {self.batch_size}")
    check(self.learning_rate > 0, f"train.learning_rate must be > 0, got {self.learning_rate}")
    check(self.weights in WEIGHTS or self.weights.endswith(WEIGHTS_FILE_SUFFIXES),
          f"train.weights must be 'imagenet', 'none' or a .h5/.keras weights file, got {self.weights!r}")
    check(self.weights in WEIGHTS or not os.path.isfile(self.weights) or _is_weights_file(self.weights),
          f"train.weights {self.weights} is not a Keras weights file (neither HDF5 nor a .keras zip)")
    check(self.global_features in GLOBAL_FEATURES,
          f"train.global_features must be {' or '.join(GLOBAL_FEATURES)}, got {self.global_features!r}")
    check(self.strategy in STRATEGIES, f"train.strategy must be {'|'.join(STRATEGIES)}, got {self.strategy!r}")
    check(self.mixed_precision in MIXED_PRECISION,
          f"train.mixed_precision must be {'|'.join(MIXED_PRECISION)}, got {self.mixed_precision!r}")
    check(self.checkpoint_steps >= 1, f"train.checkpoint_steps must be >= 1, got {self.checkpoint_steps}")
    return self


def _is_weights_file(path: str) -> bool:
  """Whether a local file starts as Keras weights do: HDF5 (.h5) or a zip (.keras). Said here, before any
  step runs, rather than by h5py in the middle of a run.
  """
  try:
    with open(path, "rb") as f:
      head = f.read(8)
  except OSError:
    return True  # unreadable here: the step that loads it says why
  return head == b"\x89HDF\r\n\x1a\n" or head.startswith(b"PK\x03\x04")


def from_dict(values: Dict[str, Any]) -> TrainConfig:
  """The `train:` mapping (a config file section, or custom_config["train"]) -> a checked TrainConfig."""
  return config_fields.build(TrainConfig, values, "train").validate()
