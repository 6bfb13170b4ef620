"""Who is training from a resume directory: a lease, so no run adopts another live run's state.

Re-runs of the same training share one resume directory (trainer/task.py). A run that
finds checkpoints there must tell a killed run's state, which it should continue, from
the state of a run that is still training, which it must leave alone: restoring it would
train from someone else's moving checkpoint, and removing it at the end would pull it from
under its owner. The chief claims the directory by writing LEASE_FILE into it: host, boot
id, pid and the process's start time, renewed by a background thread.

A lease is live when, on this machine, its process still runs (the same pid with the same
start time, so a reused pid does not count), or, from another machine, when it was renewed
less than STALE_SECONDS ago. A stale lease is taken over; for a fresh one from another
machine the claimer first waits for it to go stale (a preempted worker restarted elsewhere)
and gives up if it is renewed meanwhile, saying at once whose lease it waits for, until
when, and how to take over. A live lease, or one renewed in the future (clocks that
disagree: its age says nothing), is an error naming its owner and how to take over.
"""
import datetime
import json
import os
import socket
import threading
import time
from typing import Any, Dict, Optional
import uuid

from absl import logging
import tensorflow as tf

LEASE_FILE = "LEASE.json"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 180.0
CLOCK_SKEW_SECONDS = 60.0  # a lease renewed further in the future than this cannot be judged by its age
# Another claimer may write between our write and our read-back; this is long enough for
# its write to land (a local rename, one object write on GCS).
SETTLE_SECONDS = 0.5


class ResumeStateInUseError(RuntimeError):
  """A live run holds the resume directory; the message says which and what to do."""


def claim(resume_dir: str) -> "Lease":
  """Takes the lease on resume_dir (created if need be) or raises ResumeStateInUseError."""
  tf.io.gfile.makedirs(resume_dir)
  path = os.path.join(resume_dir, LEASE_FILE)
  owner = _read(path)
  if owner is not None and not _on_this_machine(owner):
    if _age(owner) < -CLOCK_SKEW_SECONDS:
      raise ResumeStateInUseError(
          f"the resume state in {resume_dir} is leased by {_describe(owner)}, renewed {-_age(owner):.0f} s in the "
          f"future by this machine's clock, so whether it still runs cannot be checked; {_take_over(path)}")
    if _is_live(owner):
      # Said at once: the wait below is up to STALE_SECONDS, and its end is known now.
      logging.warning("The resume state in %s is leased by %s: waiting until %s for it to go stale (a preempted "
                      "worker's lease is not renewed); %s", resume_dir, _describe(owner), _stale_at(owner),
                      _take_over(path))
    owner = _wait_until_stale(path, owner)
  if owner is not None and _is_live(owner):
    until = ("as long as that process runs" if _on_this_machine(owner) else
             f"renewed every {HEARTBEAT_SECONDS:g} s; stale {STALE_SECONDS:g} s after its last renewal")
    raise ResumeStateInUseError(
        f"the resume state in {resume_dir} belongs to a training still running ({_describe(owner)}; {until}); "
        "it is the same training: wait for it to finish, or change the config to train another model; "
        f"{_take_over(path)}")
  if owner is not None:
    logging.info("Taking over the resume state of an ended training (%s)", _describe(owner))
  lease = Lease(path)
  time.sleep(SETTLE_SECONDS)
  if (_read(path) or {}).get("token") != lease.token:
    raise ResumeStateInUseError(f"another training claimed the resume state in {resume_dir} at the same moment: "
                                f"{_describe(_read(path) or {})}")
  lease.start()
  return lease


def _take_over(path: str) -> str:
  return f"if that training has ended, take over by deleting {path}"


def _stale_at(owner: Dict[str, Any]) -> str:
  return datetime.datetime.fromtimestamp(time.time() - _age(owner) + STALE_SECONDS).isoformat(timespec="seconds")


class Lease:
  """A lease written to `path`; start() renews it every HEARTBEAT_SECONDS until finish() or stop()."""

  def __init__(self, path: str):
    self.path = path
    self.token = uuid.uuid4().hex
    self._record = {**_this_process(), "token": self.token}
    self._stopped = threading.Event()
    self._thread = threading.Thread(target=self._renew, name="resume-lease", daemon=True)
    self._write()

  def start(self) -> None:
    with _HELD_LOCK:  # a lease this process held before belongs to an attempt that has ended
      earlier, _HELD[self.path] = _HELD.get(self.path), self
    if earlier is not None:
      earlier.stop()
    self._thread.start()

  def stop(self) -> None:
    self._stopped.set()
    if self._thread.is_alive():
      self._thread.join()  # not in the middle of a renewal once this returns

  def finish(self) -> None:
    """The training is exported: removes the resume state, the lease last, so no run can
    adopt the half-removed state in between.
    """
    self.stop()
    directory = os.path.dirname(self.path)
    for name in tf.io.gfile.listdir(directory):
      if name.rstrip("/") != LEASE_FILE:
        child = os.path.join(directory, name)
        if tf.io.gfile.isdir(child):
          tf.io.gfile.rmtree(child)
        else:
          tf.io.gfile.remove(child)
    tf.io.gfile.rmtree(directory)

  def _renew(self) -> None:
    while not self._stopped.wait(HEARTBEAT_SECONDS):
      try:
        self._write()
      except (tf.errors.OpError, OSError) as e:  # a missed beat is not worth killing the training for
        logging.warning("Could not renew the resume lease %s: %s", self.path, e)

  def _write(self) -> None:
    self._record["renewed"] = time.time()
    tmp = f"{self.path}.{self.token}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(json.dumps(self._record))
    tf.io.gfile.rename(tmp, self.path, overwrite=True)


_HELD: Dict[str, Lease] = {}
_HELD_LOCK = threading.Lock()


def _read(path: str) -> Optional[Dict[str, Any]]:
  try:
    with tf.io.gfile.GFile(path) as f:
      record = json.loads(f.read())
  except tf.errors.NotFoundError:
    return None
  except ValueError:
    logging.warning("Unreadable resume lease %s: treated as ended", path)
    return {}
  return record if isinstance(record, dict) else {}


def _wait_until_stale(path: str, owner: Dict[str, Any]) -> Optional[Dict[str, Any]]:
  """A lease from another machine: waits while it is fresh and not renewed; returns it as last read."""
  while _is_live(owner):
    time.sleep(min(HEARTBEAT_SECONDS / 2, max(0.0, STALE_SECONDS - _age(owner)) + 0.1))
    newer = _read(path)
    if newer is None or newer.get("renewed") != owner.get("renewed") or newer.get("token") != owner.get("token"):
      return newer  # renewed (live: refused), released or replaced: judged afresh by the caller
  return owner


def _is_live(owner: Dict[str, Any]) -> bool:
  if not owner:
    return False
  if _on_this_machine(owner):
    me = _this_process()
    if owner.get("pid") == me["pid"] and owner.get("start") == me["start"]:
      return False  # an earlier attempt in this very process, which has ended
    start = _process_start(owner.get("pid"))
    return start is not None and start == owner.get("start")
  return _age(owner) < STALE_SECONDS


def _age(owner: Dict[str, Any]) -> float:
  try:
    return time.time() - float(owner.get("renewed", 0))
  except (TypeError, ValueError):
    return float("inf")


def _on_this_machine(owner: Dict[str, Any]) -> bool:
  me = _this_process()
  return owner.get("host") == me["host"] and owner.get("boot") == me["boot"]


def _this_process() -> Dict[str, Any]:
  return {"host": socket.gethostname(), "boot": _boot_id(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _boot_id() -> str:
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      return f.read().strip()
  except OSError:
    return ""


def _process_start(pid) -> Optional[int]:
  """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if it is gone."""
  if not isinstance(pid, int) or pid <= 0:
    return None
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
  except OSError:
    return None
  fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
  return int(fields[19]) if fields[0] != "Z" else None  # a zombie has ended


def _describe(owner: Dict[str, Any]) -> str:
  renewed = owner.get("renewed")
  when = f", renewed {_age(owner):.0f} s ago" if renewed else ""
  return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}{when}"
