"""Training on the real coco128 examples: the loss goes down, and a killed `colorize run` resumes.

The kill of run_fn under the real TFX Trainer executor with two worker processes is in
test_multiworker.py; the resume lease rules are in test_resume_lease.py.
"""
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
from ml_metadata.proto import metadata_store_pb2
import pytest
import tensorflow as tf

from lineage import summary
from pipelines import config as config_lib
from pipelines import local_runner
from serving import photos
from trainer import data
from trainer import model as model_lib
from trainer import settings
from trainer import task

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLORIZE = [sys.executable, "-c", "from cli.main import main; main()"]  # the console script's entry point


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


def _kill_at_first_checkpoint(process, resume_root, minutes):
  """kill -9 `process` as soon as it has saved resume state under resume_root."""
  deadline = time.monotonic() + 60 * minutes
  while not _saved_steps(resume_root):
    assert process.poll() is None, f"the first run ended before it could be killed:\n{process.stdout.read()[-3000:]}"
    assert time.monotonic() < deadline, f"no checkpoint within {minutes} minutes"
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.communicate()


def _saved_steps(resume_root: pathlib.Path):
  return sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in resume_root.glob("*/ckpt-*.index"))


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


@pytest.mark.slow
def test_colorize_run_killed_during_training_is_closed_and_resumed_while_a_second_run_is_refused(coco128, tmp_path):
  """The real pipeline (`colorize run --until train --cpu-replicas 2`: LocalDagRunner, SQLite
  ML Metadata, the standard TFX Trainer calling trainer.task.run_fn under a 2-replica
  MirroredStrategy) is killed mid-training. Running it again closes the killed execution
  (CANCELED, its unpublished folders removed) and resumes in a new one; a third run started
  meanwhile is refused at once."""
  config_file = tmp_path / "config.json"
  config_file.write_text(json.dumps({
      "output_root": str(tmp_path / "runs"),
      "ingest": {"data_root": str(coco128), "max_images": 40},
      "train": {"weights": "none", "epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "eval_steps": 1,
                "checkpoint_steps": 1},
  }))
  cfg = config_lib.load(str(config_file))
  command = [*COLORIZE, "run", "--config", str(config_file), "--until", "train", "--cpu-replicas", "2"]
  trainer_dir = pathlib.Path(cfg.pipeline_root) / "Trainer"

  first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  _kill_at_first_checkpoint(first, trainer_dir / "resume", minutes=15)
  store = summary.open_store(cfg.metadata_path)
  [killed] = [e for e in store.get_executions() if summary.component_id(store, e.id) == "Trainer"]
  assert killed.last_known_state == metadata_store_pb2.Execution.RUNNING  # what TFX leaves behind
  assert (trainer_dir / "model" / str(killed.id)).is_dir()

  second = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  while not local_runner.store_in_use(cfg.metadata_path):
    assert second.poll() is None, second.stdout.read()[-5000:]
    time.sleep(0.2)
  third = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
  assert third.returncode == 1 and len(third.stderr.splitlines()) == 1, third.stderr[-3000:]
  assert third.stderr.startswith(f"Error: another colorize run (pid {second.pid} on ")
  log, _ = second.communicate(timeout=1200)
  assert second.returncode == 0, log[-5000:]

  store = summary.open_store(cfg.metadata_path)
  types = summary.artifact_type_names(store)
  _, outputs = summary.latest_run_outputs(store, cfg.pipeline_name)
  produced = {types[a.type_id]: a for _, a in outputs}
  model_run = pathlib.Path(produced["ModelRun"].uri)
  trained = json.loads((model_run / task.SUMMARY_FILE).read_text())
  assert trained["strategy"] == "MirroredStrategy" and trained["replicas"] == 2 and trained["global_batch"] == 4
  assert 1 <= trained["resumed_from_step"] < trained["final_step"] == 4
  # TensorBoard: the resumed run logged the epochs it ran, with the image triplets.
  tags = {v.tag for events in model_run.rglob("events.out.tfevents.*")
          for event in tf.compat.v1.train.summary_iterator(str(events)) for v in event.summary.value}
  assert {"epoch_loss", "train_loss_running_mean", "gray | predicted | truth"} <= tags, tags
  saved_model = photos.resolve_model_dir(pathlib.Path(produced["Model"].uri))
  assert "colorize_image" in tf.saved_model.load(str(saved_model)).signatures

  # The killed execution is closed, not left RUNNING; only the published folders remain.
  [killed] = store.get_executions_by_id([killed.id])
  assert killed.last_known_state == metadata_store_pb2.Execution.CANCELED
  assert "interrupted" in killed.custom_properties["__execution_result__"].string_value
  assert [p.name for p in (trainer_dir / "model").iterdir()] == [model_run.name]
  assert [p.name for p in (trainer_dir / "model_run").iterdir()] == [model_run.name]
  assert str(killed.id) not in [p.name for p in (trainer_dir / ".system" / "executor_execution").iterdir()]
  assert not any((trainer_dir / ".system" / "stateful_working_dir").iterdir())
  assert not any((trainer_dir / "resume").iterdir())
  runs = subprocess.run([*COLORIZE, "lineage", "--config", str(config_file), "runs", "--format", "json"],
                        capture_output=True, text=True, check=True)
  assert [r["status"] for r in json.loads(runs.stdout)] == ["interrupted", "complete"]
