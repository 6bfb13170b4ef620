"""A resumed Trainer never adopts the resume state of a training that is still running.

The live owner is a real process on this machine that claimed the directory, then a
process from 'another machine' (its lease as written elsewhere); a killed owner's state is
adopted (the kill of a real run_fn is in test_multiworker.py, of `colorize run` in
test_evaluation_pipeline.py).
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
from tfx.components.trainer.fn_args_utils import FnArgs

from trainer import resume_lease
from trainer import task

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CLAIM = """
import sys, time
from trainer import resume_lease
resume_lease.claim(sys.argv[1])
print("claimed", flush=True)
time.sleep(600)
"""


def _claimed_by_another_process(resume_dir: pathlib.Path):
  """A process on this machine that holds the lease on resume_dir, with a checkpoint in it."""
  resume_dir.mkdir(parents=True)
  (resume_dir / "ckpt-3.index").write_bytes(b"the owner's state")
  owner = subprocess.Popen([sys.executable, "-c", CLAIM, str(resume_dir)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                           text=True)
  assert owner.stdout.readline().strip() == "claimed"
  return owner


def _lease(resume_dir):
  return json.loads((resume_dir / resume_lease.LEASE_FILE).read_text())


def test_run_fn_refuses_a_live_trainings_state_and_adopts_it_once_that_run_is_killed(tmp_path):
  fn_args = FnArgs(train_files=["/ex/Split-train/*"], eval_files=["/ex/Split-eval/*"],
                   serving_model_dir=str(tmp_path / "Trainer" / "model" / "9" / "Format-Serving"),
                   model_run_dir=str(tmp_path / "Trainer" / "model_run" / "9"),
                   custom_config={"train": {"weights": "none", "strategy": "cpu"}})
  resume_dir = pathlib.Path(task.resume_directory(fn_args))
  owner = _claimed_by_another_process(resume_dir)
  try:
    with pytest.raises(resume_lease.ResumeStateInUseError, match=f"still running \\(pid {owner.pid} on "):
      task.run_fn(fn_args)
    assert (resume_dir / "ckpt-3.index").read_bytes() == b"the owner's state"
    assert _lease(resume_dir)["pid"] == owner.pid
  finally:
    owner.send_signal(signal.SIGKILL)
    owner.wait()
  lease = resume_lease.claim(str(resume_dir))  # what run_fn does first: now it adopts the killed run's state
  assert _lease(resume_dir)["token"] == lease.token
  assert (resume_dir / "ckpt-3.index").exists()
  lease.finish()
  assert not resume_dir.exists()


def test_a_reused_pid_or_an_earlier_attempt_in_this_process_is_not_a_live_owner(tmp_path):
  resume_dir = tmp_path / "resume"
  first = resume_lease.claim(str(resume_dir))  # an attempt in this process that ended without finishing
  second = resume_lease.claim(str(resume_dir))
  assert _lease(resume_dir)["token"] == second.token != first.token
  second.stop()
  # A live process (our parent) whose start time is not the one recorded: the pid was reused.
  record = {**_lease(resume_dir), "pid": os.getppid(), "start": 1, "token": "old"}
  (resume_dir / resume_lease.LEASE_FILE).write_text(json.dumps(record))
  third = resume_lease.claim(str(resume_dir))
  assert _lease(resume_dir)["token"] == third.token
  third.finish()


def test_a_lease_from_another_machine_is_waited_for_and_refused_while_it_is_renewed(tmp_path, monkeypatch):
  monkeypatch.setattr(resume_lease, "STALE_SECONDS", 2.0)
  monkeypatch.setattr(resume_lease, "HEARTBEAT_SECONDS", 0.4)
  resume_dir = tmp_path / "resume"
  resume_dir.mkdir()
  path = resume_dir / resume_lease.LEASE_FILE

  def write(renewed):
    path.write_text(json.dumps({"host": "elsewhere", "boot": "b", "pid": 7, "start": 1, "token": "t",
                                "renewed": renewed}))

  # Renewed while we wait: a live training on another machine.
  write(time.time())
  stop = threading.Event()
  renewer = threading.Thread(target=lambda: [write(time.time()) for _ in iter(lambda: stop.wait(0.3), True)])
  renewer.start()
  try:
    with pytest.raises(resume_lease.ResumeStateInUseError, match="pid 7 on elsewhere"):
      resume_lease.claim(str(resume_dir))
  finally:
    stop.set()
    renewer.join()
  # Not renewed (that worker was preempted): taken over once stale, without an error.
  write(time.time())
  started = time.monotonic()
  lease = resume_lease.claim(str(resume_dir))
  assert time.monotonic() - started >= 1.0
  assert _lease(resume_dir)["token"] == lease.token
  lease.finish()


def test_a_lease_that_cannot_be_checked_is_refused_at_once_and_a_wait_is_announced(tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(resume_lease, "STALE_SECONDS", 1.0)
  resume_dir = tmp_path / "resume"
  resume_dir.mkdir()
  path = resume_dir / resume_lease.LEASE_FILE
  path.write_text(json.dumps({"host": "elsewhere", "boot": "b", "pid": 7, "start": 1, "token": "t",
                              "renewed": time.time() + 3600}))  # another machine's clock, an hour ahead
  started = time.monotonic()
  with pytest.raises(resume_lease.ResumeStateInUseError,
                     match=rf"pid 7 on elsewhere.*in the future.*cannot be checked; .*take over by deleting {path}"):
    resume_lease.claim(str(resume_dir))
  assert time.monotonic() - started < 1.0  # it used to wait for ever
  path.write_text(json.dumps({"host": "elsewhere", "boot": "b", "pid": 7, "start": 1, "token": "t",
                              "renewed": time.time()}))
  with caplog.at_level("WARNING"):
    resume_lease.claim(str(resume_dir)).finish()
  announced = [r.getMessage() for r in caplog.records if "waiting until" in r.getMessage()]
  assert announced and "pid 7 on elsewhere" in announced[0] and f"deleting {path}" in announced[0]
