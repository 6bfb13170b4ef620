"""Chooses the tf.distribute strategy from the environment (TF_CONFIG, visible GPUs)."""
import json
import os

import keras
import tensorflow as tf

from trainer import settings

MIXED_PRECISION_POLICY = "mixed_float16"


def split_cpu(replicas: int) -> None:
  """Splits the CPU into `replicas` logical devices, so MirroredStrategy has that many
  replicas without a GPU. Must run before TensorFlow initialises its devices (before
  any op or strategy is created in this process).
  """
  cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])


def cluster_workers() -> int:
  """How many workers (chief included) TF_CONFIG names; 0 without TF_CONFIG."""
  cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
  return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def resolve(name: str = "auto") -> str:
  """The concrete strategy `name` (one of settings.STRATEGIES) stands for.

  "auto" reads the environment:

  several workers in TF_CONFIG -> multi_worker (MultiWorkerMirroredStrategy); several
  GPUs -> mirrored over them; one GPU -> one_device on it; a CPU split into logical
  devices (split_cpu, `colorize run --cpu-replicas`) -> mirrored over them; otherwise cpu.
  """
  if name not in settings.STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose one of {settings.STRATEGIES}")
  if name != "auto":
    return name
  gpus = tf.config.list_logical_devices("GPU")
  if cluster_workers() > 1:
    return "multi_worker"
  if len(gpus) > 1 or (not gpus and len(tf.config.list_logical_devices("CPU")) > 1):
    return "mirrored"
  return "one_device" if gpus else "cpu"


def select(name: str = "auto") -> tf.distribute.Strategy:
  """The tf.distribute strategy for `name` (see resolve)."""
  name = resolve(name)
  gpus = tf.config.list_logical_devices("GPU")
  cpus = tf.config.list_logical_devices("CPU")
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "mirrored":
    if gpus:
      return tf.distribute.MirroredStrategy([d.name for d in gpus])  # NCCL all-reduce
    # Logical CPU devices share memory: reduce on one device. The default collective
    # all-reduce restarts its instance keys with every new strategy in a process, and a
    # second strategy's reductions then collide with the first's ("Shape mismatch in the
    # collective instance").
    return tf.distribute.MirroredStrategy([d.name for d in cpus],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy((gpus or cpus)[0].name)
  return tf.distribute.OneDeviceStrategy(cpus[0].name)


def uses_gpu(strategy: tf.distribute.Strategy) -> bool:
  devices = strategy.extended.worker_devices
  return any("GPU" in d.upper() for d in devices)


def dtype_policy(mixed_precision: str, strategy: tf.distribute.Strategy) -> str:
  """The Keras dtype policy for `mixed_precision` (auto | on | off): auto is mixed
  float16 on GPUs, where it halves memory traffic, and float32 on CPUs, where float16
  math is emulated and slower.
  """
  if mixed_precision == "on" or (mixed_precision == "auto" and uses_gpu(strategy)):
    return MIXED_PRECISION_POLICY
  return "float32"


class dtype_policy_scope:  # noqa: N801 (used like contextlib context-manager functions)
  """Sets the global Keras dtype policy for a block and restores it afterwards (LocalDagRunner
  runs every component in one process, so the policy must not leak).
  """

  def __init__(self, policy: str):
    self._policy = policy
    self._previous = None

  def __enter__(self):
    self._previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(self._policy)

  def __exit__(self, *exc):
    keras.config.set_dtype_policy(self._previous)
