"""Vertex AI Training, rehearsed: a CustomJob's worker pools run as processes on this machine.

TFX's Vertex Trainer (tfx.extensions.google_cloud_ai_platform) builds the CustomJob itself (its
container command is `python -m tfx.scripts.run_executor ...` with the step's artifacts) and hands
it to aiplatform's JobServiceClient. In a rehearsal's step processes (engine.py puts a
sitecustomize on their path) that client is replaced by LocalJobService: the job is checked as the
API's own CustomJob message (an unknown field fails as the API would fail it), then every replica
of every pool runs from its container spec (command, args, env) with the CLUSTER_SPEC Vertex AI
gives it, on loopback ports, under the job's scheduling timeout.
"""
import importlib.abc
import json
import os
import socket
import subprocess
import sys
from typing import Any, Dict, List

TRAINING_CLIENTS = "tfx.extensions.google_cloud_ai_platform.training_clients"


class LocalJobService:
  """Answers create_custom_job / get_custom_job as aiplatform's JobServiceClient does."""

  def __init__(self, log_dir: str, image: str):
    self._log_dir, self._image = log_dir, image
    self._job = None

  def create_custom_job(self, parent: str, custom_job: Dict[str, Any]):
    from google.cloud import aiplatform_v1
    job = aiplatform_v1.CustomJob(custom_job)  # raises on a field the API does not have
    spec = json.loads(aiplatform_v1.CustomJob.to_json(job, preserving_proto_field_name=True))["job_spec"]
    job.name = f"{parent}/customJobs/rehearsal"
    failed = self._run(spec)
    job.state = aiplatform_v1.JobState.JOB_STATE_FAILED if failed else aiplatform_v1.JobState.JOB_STATE_SUCCEEDED
    if failed:
      job.error.message = failed
    self._job = job
    return job

  def get_custom_job(self, name: str, retry=None):
    return self._job

  def _run(self, spec: Dict[str, Any]) -> str:
    pools = spec.get("worker_pool_specs", [])
    cluster = {f"workerpool{i}": [f"127.0.0.1:{_free_port()}" for _ in range(int(p.get("replica_count", 1)))]
               for i, p in enumerate(pools)}
    timeout = _seconds(spec.get("scheduling", {}).get("timeout"))
    processes: List = []
    for i, pool in enumerate(pools):
      container = pool["container_spec"]
      if self._image and container.get("image_uri") != self._image:
        return (f"worker pool {i} runs image {container.get('image_uri')!r}; the rehearsal has only the "
                f"pipeline's image {self._image!r}")
      argv = list(container.get("command", [])) + list(container.get("args", []))
      if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
      for index in range(len(cluster[f"workerpool{i}"])):
        env = dict(os.environ)
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        env.update(_output_directories(spec))
        env["CLUSTER_SPEC"] = json.dumps({"cluster": cluster, "environment": "cloud",
                                          "task": {"type": f"workerpool{i}", "index": index}})
        log = open(os.path.join(self._log_dir, f"training-workerpool{i}-{index}.log"), "w")
        processes.append((f"workerpool{i}/{index}", subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    problems = []
    for label, process, log in processes:
      try:
        code = process.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        code = "killed at the job's scheduling timeout"
      log.close()
      if code != 0:
        problems.append(f"{label}: exit {code} (log {log.name})")
    return "; ".join(problems)


def _output_directories(spec: Dict[str, Any]) -> Dict[str, str]:
  """The AIP_* folders Vertex AI gives a job with a base_output_directory (AIP_TENSORBOARD_LOG_DIR: what a
  job's TensorBoard uploads).
  """
  prefix = spec.get("base_output_directory", {}).get("output_uri_prefix")
  if not prefix:
    return {}
  prefix = prefix.rstrip("/")
  return {"AIP_MODEL_DIR": f"{prefix}/model/", "AIP_CHECKPOINT_DIR": f"{prefix}/checkpoints/",
          "AIP_TENSORBOARD_LOG_DIR": f"{prefix}/logs/"}


def _seconds(duration) -> float:
  """A protobuf Duration as JSON ("3600s") -> seconds, or None."""
  return float(str(duration).rstrip("s")) if duration else None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _patch(module) -> None:
  def create_client(self):
    self._client = LocalJobService(os.environ.get("COLORIZE_REHEARSAL_TASK_DIR", "."),
                                   os.environ.get("COLORIZE_REHEARSAL_IMAGE", ""))
  module.VertexJobClient.create_client = create_client


class _PatchOnImport(importlib.abc.MetaPathFinder):
  """Patches TFX's training clients when (and only if) a step imports them."""

  def find_spec(self, fullname, path, target=None):
    if fullname != TRAINING_CLIENTS:
      return None
    sys.meta_path.remove(self)
    import importlib.util
    spec = importlib.util.find_spec(fullname)
    loader = spec.loader
    original = loader.exec_module

    def exec_module(module):
      original(module)
      _patch(module)
    loader.exec_module = exec_module
    return spec


def install() -> None:
  sys.meta_path.insert(0, _PatchOnImport())
