"""Runs the pipeline on this machine: LocalDagRunner, Beam DirectRunner, SQLite ML Metadata.

One run at a time per store: a run holds an exclusive lock (flock) on a file beside its
ML Metadata store, and on a local pipeline root, for its whole life. The kernel drops the
lock when the process ends, however it ends, so a killed run leaves no lock behind. A
second run is refused at once with a message naming the first. Each step prints a line when it
starts and when it ends (pipelines/progress.py).

LocalDagRunner records an execution as RUNNING before its executor starts and publishes
it at the end; a run killed in between (kill -9, power loss) leaves it RUNNING forever,
with its output folders on disk but in no artifact. Holding the lock, the next run knows
that no execution of its store is live, so it marks every such execution CANCELED, as
TFX's own orchestrator marks the executions it interrupts (with an execution result that
says why), and removes the folders they left unpublished. Published artifacts are never
touched: a folder any artifact in the store points at is kept. A killed Trainer's resume
state is not an execution's output and stays, so the next run resumes from it.
"""
import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Dict, Iterator, List, Set

from absl import logging

from pipelines import config as config_lib

LOCK_SUFFIX = ".lock"
PIPELINE_ROOT_LOCK = ".colorize-run.lock"
PROBE_RETRIES = 10
SYSTEM_DIR = ".system"  # TFX's per-node folder of executor and scratch state
# Why a run marked an earlier execution CANCELED (its execution result's message).
INTERRUPTED_MESSAGE = ("interrupted: its process ended before it published a result; closed by the next run "
                       "(pid {pid}, {when})")


class RunLockError(RuntimeError):
  """Another live run holds the store or the pipeline root, or the lock cannot be made; the message says which."""


def run(cfg: config_lib.PipelineConfig, last_stage: str = "push", cpu_replicas: int = 0) -> None:
  """Runs the pipeline described by `cfg` up to `last_stage`, alone on its store.

  cpu_replicas > 1 splits the CPU into that many logical devices so MirroredStrategy
  trains with several replicas without a GPU. It must happen before TensorFlow
  initialises its devices, and LocalDagRunner runs every component in this process,
  so it is done here, first.
  """
  with exclusive_run(cfg):
    # TFX and TensorFlow take a while to import (seconds idle, a minute on busy cores): say so first.
    print(f"Running pipeline {cfg.pipeline_name} up to {last_stage} in {cfg.pipeline_root} (loading TFX)",
          file=sys.stderr, flush=True)
    if cpu_replicas > 1:
      from trainer import strategy
      strategy.split_cpu(cpu_replicas)

    from tfx import v1 as tfx

    from pipelines import pipeline
    from pipelines import progress

    close_interrupted_executions(cfg)
    steps = pipeline.from_config(
        cfg,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path),
        beam_pipeline_args=cfg.beam_pipeline_args,
        last_stage=last_stage,
    )
    try:
      with progress.step_lines(len(steps.components)):
        tfx.orchestration.LocalDagRunner().run(steps)
    except Exception as e:
      # TFX publishes an executor's failure, not a driver's: its execution would stay RUNNING.
      close_interrupted_executions(cfg, failure=f"failed: {type(e).__name__}: {e}")
      raise


@contextlib.contextmanager
def exclusive_run(cfg: config_lib.PipelineConfig) -> Iterator[None]:
  """Holds the run's locks (beside the store; in a local pipeline root) or raises RunLockError.

  A gs:// pipeline root cannot be locked: there the local store's lock is the only one,
  and one output root must be used by one store.
  """
  anchors = [(cfg.metadata_path + LOCK_SUFFIX, f"the ML Metadata store {cfg.metadata_path}")]
  if not cfg.pipeline_root.startswith("gs://"):
    anchors.append((os.path.join(cfg.pipeline_root, PIPELINE_ROOT_LOCK), f"the pipeline root {cfg.pipeline_root}"))
  with contextlib.ExitStack() as stack:
    for path, what in anchors:
      stack.enter_context(_flock(path, what))
    yield


def store_in_use(metadata_path: str) -> bool:
  """Whether a live run holds the lock beside this store (without taking it for long)."""
  try:
    fd = os.open(metadata_path + LOCK_SUFFIX, os.O_RDONLY)
  except OSError:
    return False
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    return False
  except BlockingIOError:
    return True
  finally:
    os.close(fd)  # closing drops the shared lock if it was taken


@contextlib.contextmanager
def _flock(path: str, what: str) -> Iterator[None]:
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a planted link would be truncated
  except OSError as e:
    raise RunLockError(f"cannot make the run lock {path} for {what}: {e.strerror}") from e
  try:
    if not _try_flock(fd):
      raise RunLockError(f"another colorize run ({_holder(fd, path)}) is using {what} and holds it until it ends; "
                         "wait for it, or give this run another --output-root; to take over, end that process "
                         "(the lock goes with it; a killed run leaves none)")
    # Who holds it, for the message a refused run prints. The file itself is never removed:
    # a run that opened it just before would lock a name nobody else sees.
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": _now()}).encode(), 0)
    yield
  finally:
    os.close(fd)


def _try_flock(fd: int) -> bool:
  # A reader's probe (store_in_use) holds a shared lock for a moment: not a run.
  for _ in range(PROBE_RETRIES):
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return True
    except BlockingIOError:
      time.sleep(0.1)
  return False


def _holder(fd: int, path: str) -> str:
  try:
    holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
  except (ValueError, KeyError, TypeError):
    return f"which one {path} does not say: `fuser {path}` names its process"


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def close_interrupted_executions(cfg: config_lib.PipelineConfig, failure: str = "") -> List[Dict[str, Any]]:
  """Marks the store's unfinished executions CANCELED and removes the folders they left unpublished.

  Call it only holding the run's lock (exclusive_run): then none of them is live. With
  `failure` (this run's own error), they are marked FAILED with that message instead.
  Returns one dict per execution closed: its id, component, run and the folders removed.
  """
  if not os.path.isfile(cfg.metadata_path):
    return []
  from ml_metadata import metadata_store
  from ml_metadata.proto import metadata_store_pb2
  from tfx.orchestration import metadata
  from tfx.orchestration.portable.mlmd import execution_lib
  from tfx.proto.orchestration import execution_result_pb2
  from tfx.utils import status as status_lib

  store = metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(cfg.metadata_path))
  unfinished = store.get_executions(list_options=metadata_store.ListOptions(
      filter_query="last_known_state = NEW OR last_known_state = RUNNING"))
  if not unfinished:
    return []
  published = {a.uri.rstrip("/") for a in store.get_artifacts()}
  message = failure or INTERRUPTED_MESSAGE.format(pid=os.getpid(), when=_now())
  code, state = ((status_lib.Code.UNKNOWN, metadata_store_pb2.Execution.FAILED) if failure else
                 (status_lib.Code.CANCELLED, metadata_store_pb2.Execution.CANCELED))
  closed = []
  for execution in sorted(unfinished, key=lambda e: e.id):
    contexts = {c.type: c.name for c in store.get_contexts_by_execution(execution.id)}
    pipeline_name, _, node_id = contexts.get("node", "").partition(".")
    removed = []
    if pipeline_name == cfg.pipeline_name and node_id not in ("", ".", "..") and "/" not in node_id:
      removed = _remove_unpublished(_join(cfg.pipeline_root, node_id), execution.id, published)
    # Folders first, then the state: a run killed in between finds the execution again.
    execution_lib.set_execution_result(
        execution_result_pb2.ExecutionResult(code=code, result_message=message), execution)
    execution.last_known_state = state
    store.put_executions([execution])
    closed.append({"id": execution.id, "component": node_id or "?", "run": contexts.get("pipeline_run", "?"),
                   "removed": removed})
    logging.warning("Execution %d (%s) of run %s %s: marked %s; removed its unpublished outputs %s", execution.id,
                    node_id, contexts.get("pipeline_run"), "failed" if failure else "was interrupted",
                    metadata_store_pb2.Execution.State.Name(state), removed or "(none)")
  return closed


def _remove_unpublished(node_dir: str, execution_id: int, published: Set[str]) -> List[str]:
  """Removes what LocalDagRunner made for one execution under its node: every output folder
  <node>/<output key>/<execution id> that no artifact points at, its executor folder, and
  the node's stateful working folders (TFX removes those when an execution succeeds).
  """
  from tfx.dsl.io import fileio

  if not fileio.isdir(node_dir):
    return []
  system = _join(node_dir, SYSTEM_DIR)
  candidates = [_join(node_dir, key, str(execution_id)) for key in fileio.listdir(node_dir)
                if key.rstrip("/") != SYSTEM_DIR]
  candidates.append(_join(system, "executor_execution", str(execution_id)))
  stateful = _join(system, "stateful_working_dir")
  if fileio.isdir(stateful):
    candidates += [_join(stateful, name) for name in fileio.listdir(stateful)]
  removed = []
  for path in (c.rstrip("/") for c in candidates):
    if not fileio.exists(path) or any(uri == path or uri.startswith(path + "/") for uri in published):
      continue
    if fileio.isdir(path):
      fileio.rmtree(path)
    else:
      fileio.remove(path)
    removed.append(path)
  return removed


def _join(root: str, *parts: str) -> str:
  return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
