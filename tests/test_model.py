"""The fusion model: architecture, shapes, value ranges, weights sources, mixed precision."""
import ast
import pathlib
import re

import keras
import numpy as np
import pytest

from schemas import features
from trainer import model as model_lib
from trainer import strategy

MODEL_SOURCE = pathlib.Path(model_lib.__file__)


@pytest.fixture(scope="module")
def model():
  keras.utils.set_random_seed(0)
  return model_lib.build_model("none")


@pytest.fixture(scope="module")
def coco_batch(coco128_examples):
  from trainer import data
  return next(iter(data.make_dataset([f"{coco128_examples.uri}/Split-train/*"], 4, training=False)))


def test_inputs_and_output_are_named_and_shaped_as_the_feature_definition(model):
  assert {k: tuple(t.shape) for k, t in model.input.items()} == {
      features.L_KEY: (None,) + features.L_SHAPE, features.GRAY_KEY: (None,) + features.GRAY_SHAPE}
  assert model.output_names == [features.AB_KEY]
  assert tuple(model.output.shape) == (None,) + features.AB_SHAPE


def test_architecture_encoder_fusion_decoder(model):
  encoder = [model.get_layer(f"encoder_{i}") for i in range(8)]
  assert [(c.filters, c.strides) for c in encoder] == [
      (64, (2, 2)), (128, (1, 1)), (128, (2, 2)), (256, (1, 1)), (256, (2, 2)), (512, (1, 1)), (512, (1, 1)),
      (256, (1, 1))]
  assert tuple(encoder[-1].output.shape) == (None, 28, 28, 256)
  assert tuple(model.get_layer("fusion_grid").output.shape) == (None, 28, 28, 1000)
  assert tuple(model.get_layer("fusion").output.shape) == (None, 28, 28, 256)
  # ab is predicted at the full 224 (the last upsampling comes before the last conv).
  last = model.get_layer(features.AB_KEY)
  assert tuple(last.input.shape) == (None, 224, 224, 32)
  assert last.activation.__name__ == "tanh"


def test_global_features_are_frozen_inception_resnet_v2(model):
  inception = model_lib.global_model(model)
  assert not inception.trainable
  assert inception.count_params() > 55e6
  trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  assert trainable == model.count_params() - inception.count_params()
  assert trainable < 7e6


def test_outputs_in_range_on_real_examples(model, coco_batch):
  inputs, ab = coco_batch
  assert -1 <= float(np.min(inputs[features.L_KEY])) and float(np.max(inputs[features.L_KEY])) <= 1
  predicted = np.asarray(model(inputs, training=False))
  assert predicted.shape == (4,) + features.AB_SHAPE
  assert np.isfinite(predicted).all() and np.abs(predicted).max() <= 1.0
  assert predicted.dtype == np.float32


def test_model_code_is_plain_keras():
  tree = ast.parse(MODEL_SOURCE.read_text())
  imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
  imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
  assert "tensorflow" not in imported
  assert not re.search(r"\btf\.", MODEL_SOURCE.read_text())


def test_mixed_precision_keeps_the_last_layer_float32():
  with strategy.dtype_policy_scope(strategy.MIXED_PRECISION_POLICY):
    mixed = model_lib.build_model("none")
  assert mixed.get_layer("encoder_0").compute_dtype == "float16"
  assert mixed.get_layer(features.AB_KEY).compute_dtype == "float32"
  assert mixed.output.dtype == "float32"
  assert keras.config.dtype_policy().name == "float32"  # the scope restored the policy


def test_local_weights_file_is_loaded(model, tmp_path):
  path = tmp_path / "irv2.weights.h5"
  model_lib.global_model(model).save_weights(path)
  loaded = model_lib.build_model(str(path))
  expected = model_lib.global_model(model).get_weights()
  actual = model_lib.global_model(loaded).get_weights()
  assert len(actual) == len(expected)
  for a, e in zip(actual, expected, strict=True):
    np.testing.assert_array_equal(a, e)


def test_missing_weights_file_is_a_clear_error(tmp_path):
  with pytest.raises(model_lib.WeightsError, match="weights file not found"):
    model_lib.build_model(str(tmp_path / "nope.h5"))


def test_imagenet_without_network_tells_how_to_pass_a_local_file(monkeypatch, tmp_path):
  # An empty Keras cache and a download URL on a closed loopback port: the fetch fails
  # at once, as it does offline.
  from keras.src.applications import inception_resnet_v2
  from keras.src.backend import config as keras_config
  monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path))
  monkeypatch.setattr(inception_resnet_v2, "BASE_WEIGHT_URL", "http://127.0.0.1:9/")
  with pytest.raises(model_lib.WeightsError) as error:
    model_lib.build_model("imagenet")
  message = str(error.value)
  assert "--weights /path/to" in message and model_lib.IMAGENET_WEIGHTS_FILE in message
  assert "--weights none" in message
