"""Training on the real coco128 examples: the loss goes down; resume folders and config errors.

Killed trainings that resume: a `colorize run` in test_evaluation_pipeline.py, run_fn under the
TFX Trainer executor with two worker processes in test_multiworker.py; the rules of the resume
lease in test_resume_lease.py.
"""
import dataclasses
import os

import keras
import pytest
import tensorflow as tf

from pipelines import config as config_lib
from trainer import data
from trainer import model as model_lib
from trainer import settings
from trainer import task


def test_short_training_on_real_photos_lowers_the_loss(coco128_examples):
  keras.utils.set_random_seed(0)
  cfg = settings.TrainConfig()
  model = model_lib.compile_model(model_lib.build_model("none"), cfg.learning_rate)
  inputs, ab = next(iter(data.make_dataset([f"{coco128_examples.uri}/Split-train/*"], 4, training=False)))
  before = model.evaluate(inputs, ab, verbose=0)
  model.fit(tf.data.Dataset.from_tensors((inputs, ab)).repeat(), steps_per_epoch=16, epochs=1, verbose=0)
  after = model.evaluate(inputs, ab, verbose=0)
  assert after < 0.85 * before, (before, after)


def _train_config(**changes):
  values = dict(weights="none", batch_size=2, epochs=2, steps_per_epoch=2, eval_steps=1, checkpoint_steps=1)
  cfg = dataclasses.replace(settings.TrainConfig(), **{**values, **changes})
  return dataclasses.asdict(cfg)


def test_resume_directory_is_shared_by_re_runs_of_the_same_training():
  class Args:  # the FnArgs fields resume_directory reads
    def __init__(self, execution, **train_changes):
      self.train_files, self.eval_files = ["/ex/1/Split-train/*"], ["/ex/1/Split-eval/*"]
      self.model_run_dir = f"/root/Trainer/model_run/{execution}"
      self.custom_config = {"train": _train_config(**train_changes)}

  first = task.resume_directory(Args(7))
  assert first == task.resume_directory(Args(8))
  assert first.startswith(os.path.join("/root/Trainer", "resume"))
  assert first != task.resume_directory(Args(8, learning_rate=0.5))


def test_bad_train_config_is_a_clear_error():
  with pytest.raises(config_lib.ConfigError, match="train.batch_size must be >= 1"):
    task.train_config({"train": _train_config(batch_size=0)})
  with pytest.raises(ValueError, match="custom_config"):
    task.train_config({})
