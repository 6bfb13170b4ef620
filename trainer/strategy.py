"""Chooses the tf.distribute strategy from the environment (TF_CONFIG or Vertex's CLUSTER_SPEC, visible GPUs)."""
import os
from typing import Mapping

import keras
import tensorflow as tf

from trainer import settings
from trainer.cluster import ClusterConfigError
from trainer.cluster import cluster_config

MIXED_PRECISION_POLICY = "mixed_float16"
# What MultiWorkerMirroredStrategy trains with (trainer/cluster.py reads the cluster).
TRAINING_ROLES = ("chief", "worker")


def split_cpu(replicas: int) -> None:
  """Splits the CPU into `replicas` logical devices, so MirroredStrategy has that many
  replicas without a GPU. Must run before TensorFlow initialises its devices (before
  any op or strategy is created in this process).
  """
  cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])


def cluster_workers() -> int:
  """How many workers (chief included) the cluster holds; 0 outside a cluster."""
  cluster = cluster_config().get("cluster", {})
  return sum(len(cluster.get(role, [])) for role in TRAINING_ROLES)


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
  if cluster_workers() > 1:  # decided before devices are listed: that would start TF's runtime (see select)
    return "multi_worker"
  gpus = tf.config.list_logical_devices("GPU")
  if len(gpus) > 1 or (not gpus and len(tf.config.list_logical_devices("CPU")) > 1):
    return "mirrored"
  return "one_device" if gpus else "cpu"


def select(name: str = "auto") -> tf.distribute.Strategy:
  """The tf.distribute strategy for `name` (see resolve)."""
  name = resolve(name)
  if name == "multi_worker":
    # Before anything starts TF's runtime (listing logical devices, running an op): collective
    # ops can only be configured before that ("Collective ops must be configured at program startup").
    return KerasMultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver())
  gpus = tf.config.list_logical_devices("GPU")
  cpus = tf.config.list_logical_devices("CPU")
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


# What TF's collective reductions accept (CollectiveReduceV2).
_COLLECTIVE_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
  """MultiWorkerMirroredStrategy as Keras 3's `fit` calls it (keras-team/keras#20329, #20585:
  `fit` under the plain strategy fails before its first step). `fit` reduces a whole nested
  input batch in one `reduce` call (to build the model) and reduces per-replica scalar metrics
  along axis 0; TF's strategy reduces one value at a time and needs the axis to exist. So
  each leaf is reduced on its own, and scalars over the replicas only. Collectives take no
  uint8 (the stored images of an augmented batch): such a leaf is reduced as float32 and cast back.
  """

  def reduce(self, reduce_op, value, axis):
    reduce = super().reduce

    def reduce_one(v):
      local = self.experimental_local_results(v)[0]
      axis_or_none = axis if local.shape.rank else None
      if local.dtype in _COLLECTIVE_DTYPES:
        return reduce(reduce_op, v, axis_or_none)
      as_float = self.run(lambda x: tf.cast(x, tf.float32), args=(v,))
      return tf.cast(reduce(reduce_op, as_float, axis_or_none), local.dtype)
    return tf.nest.map_structure(reduce_one, value)


def cluster_resolver(environ: Mapping[str, str] = os.environ):
  """The cluster of cluster_config() for MultiWorkerMirroredStrategy (None: this machine alone)."""
  config = cluster_config(environ)
  if not config:
    return None
  extra = sorted(set(config["cluster"]) - set(TRAINING_ROLES))
  if extra or len(config["cluster"].get("chief", [])) > 1 or config["task"].get("type") not in TRAINING_ROLES:
    raise ClusterConfigError(
        f"multi-worker training needs one chief (Vertex worker pool 0, replica count 1) and workers (pool 1); this "
        f"cluster has {sorted(config['cluster'])} and this task is {config['task']}: parameter servers and "
        "evaluators are not used")
  # Physical GPUs: counting logical ones would start the runtime. MultiWorkerMirroredStrategy
  # mirrors over the GPUs a resolver reports (none reported: the CPU only).
  gpus = len(tf.config.list_physical_devices("GPU"))
  return tf.distribute.cluster_resolver.SimpleClusterResolver(
      tf.train.ClusterSpec(config["cluster"]), task_type=config["task"]["type"], task_id=config["task"]["index"],
      num_accelerators={"GPU": gpus} if gpus else None, rpc_layer="grpc")


def is_chief(resolver) -> bool:
  """Whether this process writes the run's outputs, given its strategy's cluster resolver (None
  outside a cluster): always outside a cluster; in one, the chief, or worker 0 when the
  cluster names no chief (TF's convention).
  """
  if resolver is None or not resolver.task_type:
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "chief" or (not has_chief and resolver.task_type == "worker" and
                                           resolver.task_id == 0)


def worker_count(strategy: tf.distribute.Strategy) -> int:
  """How many processes train together under `strategy` (1 unless multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None:
    return 1
  spec = resolver.cluster_spec().as_dict()
  return max(1, sum(len(spec.get(role, [])) for role in TRAINING_ROLES))


def check_same_on_all_workers(strategy: tf.distribute.Strategy, what: str, value: int) -> None:
  """Raises unless every worker of a multi-worker run holds the same `value`; a barrier too
  (no worker returns before all have called it). Does nothing in a single process.

  Workers that disagree on, say, the step they resume from would run different numbers of
  collective steps and hang, or train apart without noticing.
  """
  if worker_count(strategy) < 2:
    return
  gathered = strategy.run(
      lambda: tf.distribute.get_replica_context().all_gather(tf.constant([value], tf.int64), axis=0))
  values = [int(v) for v in strategy.experimental_local_results(gathered)[0].numpy()]
  if len(set(values)) > 1:
    raise RuntimeError(f"the workers disagree on {what}: {values} (one per replica)")


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
