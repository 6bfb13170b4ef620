"""This process's training cluster, read from TF_CONFIG or Vertex AI's CLUSTER_SPEC, checked whole.

Light (no TensorFlow), so `colorize run` checks the environment before anything starts:
a malformed description is one ClusterConfigError line naming the variable and the part
that is wrong, not a TensorFlow error in the middle of training.
"""
import json
import os
from typing import Any, Dict, Mapping

VARIABLES = ("TF_CONFIG", "CLUSTER_SPEC")
# Vertex AI names a cluster's tasks after the worker pools of the custom job (CLUSTER_SPEC,
# and TF_CONFIG in some set-ups): workerPoolSpecs[i] -> "workerpool<i>". The pools' roles are
# fixed by position: 0 the primary replica (chief), 1 the workers, 2 parameter servers, 3 evaluators.
VERTEX_POOL_ROLES = ("chief", "worker", "ps", "evaluator")
# "master" is the pre-TF2 name of the chief (AI Platform Training), which TF 2 does not accept.
_ALIASES = {"master": "chief", **{f"workerpool{i}": role for i, role in enumerate(VERTEX_POOL_ROLES)}}


class ClusterConfigError(ValueError):
  """TF_CONFIG or CLUSTER_SPEC is not a cluster description; the message names the variable and what is wrong."""


def cluster_config(environ: Mapping[str, str] = os.environ) -> Dict[str, Any]:
  """{"cluster": {"chief": [...], "worker": [...]}, "task": {"type": ..., "index": ...}}, or {} outside a cluster.

  Read from TF_CONFIG, else from CLUSTER_SPEC; Vertex pool names ("workerpool0",
  "workerpool1") and the legacy "master" become chief and worker.
  """
  for variable in VARIABLES:
    raw = environ.get(variable)
    if not raw:
      continue
    try:
      config = json.loads(raw)
    except (ValueError, RecursionError) as e:
      raise ClusterConfigError(f"{variable} is not a cluster description ({{'cluster': ..., 'task': ...}}): "
                               f"{raw[:200]!r}") from e
    cluster, task = _parse(variable, config)
    if not cluster:
      continue
    if not task:  # a cluster with no task: no process of it is this one
      return {"cluster": cluster, "task": {}}
    role, index = task["type"], task["index"]
    if role not in cluster or not 0 <= index < len(cluster[role]):
      raise ClusterConfigError(f"{variable}: task {task} is not in its cluster {sorted(cluster)}")
    return {"cluster": cluster, "task": {"type": role, "index": index}}
  return {}


def _parse(variable: str, config: Any):
  """(cluster with TF's role names, task or {}) of a parsed description, every part of it type-checked."""
  if not isinstance(config, dict):
    raise ClusterConfigError(f"{variable} must be a JSON object {{'cluster': ..., 'task': ...}}, "
                             f"got {type(config).__name__}")
  cluster, task = config.get("cluster") or {}, config.get("task") or {}
  if not isinstance(cluster, dict):
    raise ClusterConfigError(f"{variable}: 'cluster' must map roles to lists of \"host:port\", got {cluster!r:.200}")
  if not isinstance(task, dict):
    raise ClusterConfigError(f"{variable}: 'task' must be {{'type': ..., 'index': ...}}, got {task!r:.200}")
  named = {}
  for role, addresses in cluster.items():
    if not (isinstance(addresses, list) and addresses and all(isinstance(a, str) and a for a in addresses)):
      raise ClusterConfigError(f"{variable}: cluster.{role} must be a list of \"host:port\" strings, "
                               f"got {addresses!r:.200}")
    named[_ALIASES.get(role, role)] = addresses
  if not task:
    return named, {}
  role, index = task.get("type"), task.get("index", 0)
  if not isinstance(role, str) or not isinstance(index, int) or isinstance(index, bool):
    raise ClusterConfigError(f"{variable}: task must have a role name as 'type' and a whole number as 'index', "
                             f"got {task!r:.200}")
  return named, {"type": _ALIASES.get(role, role), "index": index}
