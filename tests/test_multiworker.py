"""Multi-worker training for real: two worker processes on this machine train together.

Each worker runs what a replica of the Vertex AI Training job runs: the standard TFX
Trainer executor (GenericExecutor.Do) calling trainer.task.run_fn, with the same output
artifacts in every process, on the real coco128 examples, on the CPU, talking gRPC over
two 127.0.0.1 ports. The run is killed (kill -9, both workers) after its first checkpoint
and started again; the second start names the cluster as Vertex's CLUSTER_SPEC does
(worker pools), the first as TF_CONFIG does (chief, worker).
"""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from schemas import artifact_files
from schemas import signatures
from trainer import task

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# As small as a real run gets: one example per worker, killed after step 1 of 2 (mid-epoch),
# so the resumed run traces the train and eval steps and exports once.
TRAIN = {"weights": "none", "batch_size": 1, "epochs": 1, "steps_per_epoch": 2, "eval_steps": 1,
         "checkpoint_steps": 1, "strategy": "auto"}
TOTAL_STEPS = TRAIN["epochs"] * TRAIN["steps_per_epoch"]
ROLES = (("chief", "workerpool0"), ("worker", "workerpool1"))
PHOTO = "Detroit_circa_1915.jpg"
DEADLINE_S = 1800  # per run: minutes on an idle 2-core machine, many more when it is shared

WORKER_SCRIPT = """
import json, sys
from absl import logging
from cli import quiet
quiet.install()
logging.set_verbosity(logging.INFO)  # as tfx.scripts.run_executor, which runs this on Vertex
from tfx.components.trainer import executor
from tfx.types import standard_artifacts
examples_uri, split_names, trainer_root, execution, train = sys.argv[1:6]
examples = standard_artifacts.Examples()
examples.uri, examples.split_names = examples_uri, split_names
model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
model.uri, model_run.uri = f"{trainer_root}/model/{execution}", f"{trainer_root}/model_run/{execution}"
executor.GenericExecutor().Do({"examples": [examples]}, {"model": [model], "model_run": [model_run]}, {
    "run_fn": "trainer.task.run_fn", "train_args": '{"splits": ["train"]}', "eval_args": '{"splits": ["eval"]}',
    "custom_config": json.dumps({"train": json.loads(train)})})
"""


def _free_ports(count):
  sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def _cluster_env(naming):
  """{role: the environment variable Vertex (CLUSTER_SPEC) or TF (TF_CONFIG) gives that worker}."""
  addresses = [f"127.0.0.1:{port}" for port in _free_ports(len(ROLES))]
  names = [tf_name if naming == "TF_CONFIG" else pool for tf_name, pool in ROLES]
  cluster = {name: [address] for name, address in zip(names, addresses, strict=True)}
  return {role: {naming: json.dumps({"cluster": cluster, "task": {"type": name, "index": 0}, "environment": "cloud"})}
          for (role, _), name in zip(ROLES, names, strict=True)}


def _start(examples, trainer_root, execution, tmp_path, naming):
  """Both workers of TFX execution `execution` (a re-run is a new execution, with new output dirs)."""
  workers = {}
  for role, variables in _cluster_env(naming).items():
    scratch = tmp_path / f"tmp_{role}"  # the worker's TMPDIR: where its scratch copies go
    scratch.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "CLUSTER_SPEC")}
    env.update(variables, TMPDIR=str(scratch), CUDA_VISIBLE_DEVICES="")
    workers[role] = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, examples.uri, examples.split_names, str(trainer_root),
         str(execution), json.dumps(TRAIN)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  return workers


def _saved_steps(resume_root):
  return sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in resume_root.glob("*/ckpt-*.index"))


def _scratch(tmp_path, role):
  return list((tmp_path / f"tmp_{role}").glob("colorize_*"))


def _event_file_writers(model_run):
  """The processes that wrote TensorBoard events there (the writer's pid is in the file name)."""
  return {int(e.name.split(".")[-3]) for e in model_run.rglob("events.out.tfevents.*")}


def _summary(log):
  found = re.findall(r"Training summary: (\{.*\})", log)
  assert len(found) == 1, log[-5000:]
  return json.loads(found[0])


@pytest.fixture
def started():
  """Starts workers (as _start); kills those still running when the test ends, failed or not."""
  launched = []

  def start(*args):
    launched.append(_start(*args))
    return launched[-1]

  yield start
  for workers in launched:
    for worker in workers.values():
      if worker.poll() is None:
        worker.kill()
        worker.communicate()


@pytest.mark.slow
def test_two_workers_train_in_lock_step_resume_after_kill_and_only_the_chief_writes(
    coco128_examples, historical, tmp_path, started):
  trainer_root = tmp_path / "pipeline" / "Trainer"
  resume_root = trainer_root / "resume"
  model_dir = trainer_root / "model" / "2" / "Format-Serving"
  model_run = trainer_root / "model_run" / "2"

  first = started(coco128_examples, trainer_root, 1, tmp_path, "TF_CONFIG")
  deadline = time.monotonic() + DEADLINE_S
  while not _saved_steps(resume_root):
    for role, worker in first.items():
      assert worker.poll() is None, f"the {role} ended before it could be killed:\n{worker.stdout.read()[-5000:]}"
    assert time.monotonic() < deadline, f"no checkpoint within {DEADLINE_S} s"
    time.sleep(0.2)
  for worker in first.values():
    worker.send_signal(signal.SIGKILL)
  for worker in first.values():
    worker.communicate()
  killed_at = max(_saved_steps(resume_root))
  assert killed_at < TOTAL_STEPS and not list(trainer_root.glob("model/*/Format-Serving/saved_model.pb"))
  assert _event_file_writers(trainer_root / "model_run" / "1") == {first["chief"].pid}
  # The other worker had its scratch directory (kill -9 left it behind); the chief has none.
  assert _scratch(tmp_path, "worker") and not _scratch(tmp_path, "chief")

  second = started(coco128_examples, trainer_root, 2, tmp_path, "CLUSTER_SPEC")
  logs = {}
  for role, worker in second.items():
    logs[role], _ = worker.communicate(timeout=DEADLINE_S)
    assert worker.returncode == 0, f"{role}:\n{logs[role][-5000:]}"

  chief, other = _summary(logs["chief"]), _summary(logs["worker"])
  assert chief["strategy"] == "KerasMultiWorkerMirroredStrategy"
  assert chief["workers"] == 2 and chief["replicas"] == 2 and chief["global_batch"] == 2
  # Lock-step: both restored the chief's checkpoint, ran the same steps, and hold the same weights.
  assert 1 <= chief["resumed_from_step"] == other["resumed_from_step"] < TOTAL_STEPS
  assert chief["resumed_from_step"] >= killed_at - 1  # (the newest files may be a save the kill cut short)
  assert chief["final_step"] == other["final_step"] == TOTAL_STEPS
  assert chief["weights_sha256"] == other["weights_sha256"]

  # Only the chief wrote the shared outputs; the other worker's scratch copies (its killed
  # run's included) are gone.
  assert json.loads((model_run / task.SUMMARY_FILE).read_text())["weights_sha256"] == chief["weights_sha256"]
  assert _event_file_writers(model_run) == {second["chief"].pid}
  assert not _scratch(tmp_path, "worker") and not _scratch(tmp_path, "chief")
  assert not any(resume_root.iterdir()), "resume state is removed once the model is exported"
  # The chief recorded the exported files for NewModelCheck (schemas/artifact_files.py): they check out.
  recorded = artifact_files.check(str(model_dir.parent), "the Model", artifact_files.model_files(model_dir.name))
  assert "Format-Serving/saved_model.pb" in recorded and any("variables/variables.index" in f for f in recorded)

  # The exported model colorizes a real photo at its own size, in colour.
  colorize = tf.saved_model.load(str(model_dir)).signatures[signatures.IMAGE_SIGNATURE]
  photo = (historical / PHOTO).read_bytes()
  rgb = colorize(**{signatures.IMAGE_INPUT: tf.constant(photo)})[signatures.RGB_OUTPUT].numpy()
  height, width = tf.image.decode_jpeg(photo).shape[:2]
  assert rgb.shape == (height, width, 3)
  assert np.abs(rgb.astype(int) - rgb.mean(axis=-1, keepdims=True)).mean() > 0.5, "no colour at all"
