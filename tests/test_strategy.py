"""Strategy selection from the environment; conftest split the CPU into 2 logical devices."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import strategy


def test_split_cpu_gives_mirrored_strategy_two_real_replicas():
  mirrored = strategy.select("auto")
  assert isinstance(mirrored, tf.distribute.MirroredStrategy)
  assert mirrored.num_replicas_in_sync == 2
  # Each replica runs on its own device and sees its own replica id.
  per_replica = mirrored.run(lambda: tf.distribute.get_replica_context().replica_id_in_sync_group)
  assert sorted(int(v) for v in mirrored.experimental_local_results(per_replica)) == [0, 1]
  devices = {v.device for v in mirrored.experimental_local_results(
      mirrored.run(lambda: tf.constant(0.0) + 1.0))}
  assert len(devices) == 2


def test_mirrored_training_step_averages_gradients_over_both_replicas():
  mirrored = strategy.select("mirrored")
  with mirrored.scope():
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    model = keras.Sequential([keras.Input((1,)), layer])
    model.compile(keras.optimizers.SGD(1.0), loss="mse")
  # Global batch of 2: one example per replica; y - 0 gives gradients -2*x*y per example.
  x, y = np.array([[1.0], [1.0]], np.float32), np.array([[1.0], [3.0]], np.float32)
  model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(2), epochs=1, verbose=0)
  # Mean over the global batch: w = 0 - 1.0 * mean(-2 * [1, 3]) = 4.
  np.testing.assert_allclose(layer.get_weights()[0], [[4.0]], rtol=1e-6)


@pytest.mark.parametrize("name, kind, replicas", [
    ("cpu", tf.distribute.OneDeviceStrategy, 1),
    ("one_device", tf.distribute.OneDeviceStrategy, 1),
    ("mirrored", tf.distribute.MirroredStrategy, 2),
])
def test_named_strategies(name, kind, replicas):
  chosen = strategy.select(name)
  assert isinstance(chosen, kind) and chosen.num_replicas_in_sync == replicas


def test_unknown_strategy_is_an_error():
  with pytest.raises(ValueError, match="unknown strategy 'tpu'"):
    strategy.select("tpu")


def test_tf_config_with_several_workers_means_multi_worker(monkeypatch):
  monkeypatch.setenv("TF_CONFIG", json.dumps({
      "cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
      "task": {"type": "chief", "index": 0}}))
  assert strategy.cluster_workers() == 3
  assert strategy.resolve("auto") == "multi_worker"
  assert strategy.resolve("cpu") == "cpu"
  monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["host0:2222"]}, "task": {}}))
  assert strategy.cluster_workers() == 1
  assert strategy.resolve("auto") == "mirrored"  # one worker with the CPU split in two
  monkeypatch.delenv("TF_CONFIG")
  assert strategy.cluster_workers() == 0


def test_mixed_precision_is_on_for_gpus_only_unless_forced():
  cpu = strategy.select("cpu")
  assert strategy.dtype_policy("auto", cpu) == "float32"
  assert strategy.dtype_policy("on", cpu) == strategy.MIXED_PRECISION_POLICY
  assert strategy.dtype_policy("off", cpu) == "float32"
  gpu = tf.distribute.OneDeviceStrategy("/gpu:0")  # a strategy object only; nothing runs on it
  assert strategy.dtype_policy("auto", gpu) == strategy.MIXED_PRECISION_POLICY
  assert strategy.dtype_policy("off", gpu) == "float32"


def test_second_mirrored_strategy_in_one_process_trains():
  # LocalDagRunner trains in the test's / CLI's process: a second strategy must not reuse
  # the first one's collective instance keys (they fail with "Shape mismatch").
  for width in (1000, 1):
    mirrored = strategy.select("mirrored")
    with mirrored.scope():
      model = keras.Sequential([keras.Input((width,)), keras.layers.Dense(1)])
      model.compile(keras.optimizers.Adam(), loss="mse")
    x, y = np.ones((4, width), np.float32), np.ones((4, 1), np.float32)
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(2), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_vertex_cluster_spec_and_legacy_names_resolve_to_chief_and_workers(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  pools = {"workerpool0": ["wp0-0:2222"], "workerpool1": ["wp1-0:2222", "wp1-1:2222"]}
  monkeypatch.setenv("CLUSTER_SPEC", json.dumps({"cluster": pools, "task": {"type": "workerpool1", "index": 1}}))
  assert strategy.cluster_config() == {"cluster": {"chief": ["wp0-0:2222"], "worker": ["wp1-0:2222", "wp1-1:2222"]},
                                       "task": {"type": "worker", "index": 1}}
  assert strategy.resolve("auto") == "multi_worker"
  resolver = strategy.cluster_resolver()
  assert (resolver.task_type, resolver.task_id, strategy.is_chief(resolver)) == ("worker", 1, False)
  # TF_CONFIG wins over CLUSTER_SPEC; AI Platform's "master" is the chief.
  monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"master": ["m:1"], "worker": ["w:1"]},
                                              "task": {"type": "master", "index": 0}}))
  assert strategy.is_chief(strategy.cluster_resolver())
  # Without a chief, worker 0 is the chief (TF's convention).
  monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["w:1", "w:2"]}, "task": {"type": "worker"}}))
  assert strategy.is_chief(strategy.cluster_resolver())
  assert strategy.is_chief(None)  # outside a cluster


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not a cluster description"),
    (json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": 1}}),
     "task .* is not in its cluster"),
    (json.dumps({"cluster": {"workerpool0": ["c:1"], "workerpool1": ["w:1"], "workerpool2": ["p:1"]},
                 "task": {"type": "workerpool2", "index": 0}}), "parameter servers and evaluators are not used"),
])
def test_bad_cluster_descriptions_are_clear_errors(monkeypatch, tf_config, message):
  monkeypatch.setenv("TF_CONFIG", tf_config)
  with pytest.raises(ValueError, match=message):
    strategy.cluster_resolver()
