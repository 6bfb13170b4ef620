"""Chooses the tf.distribute strategy from the environment (TF_CONFIG, visible GPUs)."""
import tensorflow as tf


def split_cpu(replicas: int) -> None:
  """Splits the CPU into `replicas` logical devices, so MirroredStrategy has that many
  replicas without a GPU. Must run before TensorFlow initialises its devices (before
  any op or strategy is created in this process)."""
  cpus = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)])
