"""Training on the real coco128 examples: the loss goes down; resume folders and config errors.

Killed trainings that resume: a `colorize run` in test_evaluation_pipeline.py, run_fn under the
TFX Trainer executor with two worker processes in test_multiworker.py; the rules of the resume
lease in test_resume_lease.py.
"""
import dataclasses
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines import config as config_lib
from schemas import features
from trainer import data
from trainer import model as model_lib
from trainer import settings
from trainer import task
from trainer import training_model


def test_short_training_on_real_photos_lowers_the_loss(coco128_examples):
  keras.utils.set_random_seed(0)
  cfg = settings.TrainConfig()
  model = model_lib.compile_model(model_lib.build_model("none"), cfg.learning_rate)
  inputs, ab = next(iter(data.make_dataset([f"{coco128_examples.uri}/Split-train/*"], 4, training=False)))
  before = model.evaluate(inputs, ab, verbose=0)
  model.fit(tf.data.Dataset.from_tensors((inputs, ab)).repeat(), steps_per_epoch=16, epochs=1, verbose=0)
  after = model.evaluate(inputs, ab, verbose=0)
  assert after < 0.85 * before, (before, after)


def test_the_training_step_augments_its_batch_as_the_pipeline_defines(coco128_examples):
  """One step of TrainingModel on a batch as the host sends it (uint8, maps) is the network's
  step on that batch augmented by `data.augment`, and not its step on the unaugmented one."""
  stored, ab = next(iter(data.make_dataset([f"{coco128_examples.uri}/Split-train/*"], 4, training=True, seed=3)))
  stored = {features.L_KEY: stored[features.L_KEY], data.MAPS_KEY: stored[data.MAPS_KEY],
            features.EMBEDDING_KEY: tf.random.stateless_uniform((4,) + features.EMBEDDING_SHAPE, [1, 2])}
  augmented = data.augment(stored, ab)
  plain = ({features.L_KEY: features.to_model(features.L_KEY, stored[features.L_KEY]),
            features.EMBEDDING_KEY: stored[features.EMBEDDING_KEY]}, features.to_model(features.AB_KEY, ab))
  keras.utils.set_random_seed(0)
  start = model_lib.build_colorizer().get_weights()

  def one_step(model, batch):
    model.set_weights(start)
    model_lib.compile_model(model, 1e-3).fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    return model.get_weights()

  trained = one_step(training_model.TrainingModel(model_lib.build_colorizer()), (stored, ab))
  for got, want in zip(trained, one_step(model_lib.build_colorizer(), augmented), strict=True):
    np.testing.assert_allclose(got, want, atol=1e-6)
  unaugmented = one_step(model_lib.build_colorizer(), plain)
  assert any(not np.allclose(got, other, atol=1e-6) for got, other in zip(trained, unaugmented, strict=True))


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
  with pytest.raises(config_lib.ConfigError, match="train.batch_size must be from 1 to 65,536"):
    task.train_config({"train": _train_config(batch_size=0)})
  with pytest.raises(ValueError, match="custom_config"):
    task.train_config({})


def test_damaged_examples_are_named_before_training(coco128_examples, tmp_path):
  """Examples changed after they were written (a cached artifact): one line naming the file, not a DataLossError."""
  from schemas import artifact_files
  examples = tmp_path / "examples"
  shutil.copytree(coco128_examples.uri, examples)

  class Args:  # what run_fn reads before anything else
    train_files, eval_files = [f"{examples}/Split-train/*"], [f"{examples}/Split-eval/*"]
    custom_config = {"train": _train_config()}

  artifact_files.check(str(examples), "the Examples")  # as written: fine
  shard = sorted((examples / "Split-train").iterdir())[0]
  data_ = shard.read_bytes()
  shard.write_bytes(data_[:len(data_) // 2])  # a copy cut short
  with pytest.raises(artifact_files.DamagedArtifactError,
                     match=rf"^the Examples at {examples} is damaged: Split-train/{shard.name} holds \d+ bytes, "
                           rf"{len(data_)} were written; rebuild it with `colorize run --no-cache`"):
    task.run_fn(Args())
  shard.write_bytes(data_[:-1] + bytes([data_[-1] ^ 1]))  # one bit flipped, same size
  with pytest.raises(artifact_files.DamagedArtifactError, match="its SHA-256 differs"):
    task.run_fn(Args())
  shard.write_bytes(data_)
  (examples / "Split-eval" / "stray.gz").write_bytes(b"")
  with pytest.raises(artifact_files.DamagedArtifactError, match="Split-eval/stray.gz was not written by the step"):
    task.run_fn(Args())
