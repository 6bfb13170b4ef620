"""The Deep Koalarization fusion network, in plain Keras 3 (no TensorFlow calls).

Inputs and output use the keys and model-facing scales of `schemas/features.py`:
  l     [B, 224, 224, 1] L* scaled to [-1, 1]
  gray  [B, 299, 299, 1] the grey photo already in Inception-ResNet-v2's
        `preprocess_input` scale ([-1, 1]), so it feeds the network unchanged
  -> ab [B, 224, 224, 2] a*b* / 128 in [-1, 1] (tanh)

Encoder on L (eight 3x3 ReLU convs down to 28x28x256), frozen Inception-ResNet-v2
class vector on the grey image, fusion (vector tiled over 28x28, concatenated, 1x1
conv), decoder back up to 224x224. Unlike the paper's code, which upsamples after its
tanh (so its chroma is 112x112 and blocky), the last upsampling is bilinear and comes
before the final conv, so ab is predicted at the full 224 resolution.

The network splits in two at the class vector (train.global_features, README): the
embedder (gray -> Inception-ResNet-v2 class vector, `build_embedder`) is frozen, so it
can run once per photo (components/embed/) and the colorizer head (`build_colorizer`:
l + class vector -> ab) trains alone; `build_model` is the two joined, what is served.
Their layers share names, so weights move between them by name (`copy_weights`).
"""
import os
import random

import keras
from keras import layers

from schemas import features

FUSION_SIZE = features.IMAGE_SIZE // 8
GLOBAL_MODEL_NAME = "inception_resnet_v2"
# What Keras fetches for weights="imagenet" (cached under ~/.keras/models).
IMAGENET_WEIGHTS_FILE = "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5"
# weights="none" is one fixed random network, whatever the caller's seed: an embedding
# precomputed with it must match the Inception-ResNet-v2 the trainer exports.
NONE_WEIGHTS_SEED = 1


class WeightsError(RuntimeError):
  """Inception-ResNet-v2 weights cannot be loaded; the message says what to do."""


def build_model(weights: str = "imagenet") -> keras.Model:
  """The fusion model; `weights` is "imagenet", "none" (random init) or a weights file.

  Built under the current Keras dtype policy; the last layer is always float32, so
  under mixed_float16 the prediction (and the loss) stays in float32.
  """
  gray = keras.Input(features.GRAY_SHAPE, name=features.GRAY_KEY)
  class_vector = _global_features(gray, weights)
  l = keras.Input(features.L_SHAPE, name=features.L_KEY)
  return keras.Model({features.L_KEY: l, features.GRAY_KEY: gray}, _colorize(l, class_vector), name="koalarization")


def build_colorizer() -> keras.Model:
  """The trainable head on a precomputed class vector: {"l", "embedding"} -> ab."""
  l = keras.Input(features.L_SHAPE, name=features.L_KEY)
  embedding = keras.Input(features.EMBEDDING_SHAPE, name=features.EMBEDDING_KEY)
  return keras.Model({features.L_KEY: l, features.EMBEDDING_KEY: embedding}, _colorize(l, embedding),
                     name="colorizer")


def build_embedder(weights: str = "imagenet") -> keras.Model:
  """The frozen global-features network: gray (model scale) -> the class vector [B, 1000]."""
  gray = keras.Input(features.GRAY_SHAPE, name=features.GRAY_KEY)
  return keras.Model(gray, _global_features(gray, weights), name="embedder")


def copy_weights(sources, target: keras.Model) -> keras.Model:
  """Sets every layer of `target` that a model in `sources` has (by name) to its weights."""
  for source in sources:
    for layer in source.layers:
      if layer.weights:
        target.get_layer(layer.name).set_weights(layer.get_weights())
  return target


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
  """MSE on ab in [-1, 1], Adam."""
  model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
  return model


def global_model(model: keras.Model) -> keras.Model:
  return model.get_layer(GLOBAL_MODEL_NAME)


def _conv(filters, strides=1, kernel=3, name=None):
  return layers.Conv2D(filters, kernel, strides=strides, padding="same", activation="relu", name=name)


def _encoder(l):
  x = l
  for i, (filters, strides) in enumerate(
      [(64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 1), (256, 1)]):
    x = _conv(filters, strides, name=f"encoder_{i}")(x)
  return x


def _colorize(l, class_vector):
  return _decoder(_fusion(_encoder(l), class_vector))


def _global_features(gray, weights):
  rgb = layers.Concatenate(name="gray_to_rgb")([gray, gray, gray])
  inception = _inception_resnet_v2(weights)
  inception.trainable = False
  return inception(rgb, training=False)


def _inception_resnet_v2(weights):
  shape = (features.GLOBAL_SIZE, features.GLOBAL_SIZE, 3)
  if weights == "none":
    # Keras draws initializer seeds from Python's `random`: fix it for this network, then
    # continue the caller's stream where it was (a seed drawn from it before).
    resume_seed = random.randrange(2 ** 31)
    keras.utils.set_random_seed(NONE_WEIGHTS_SEED)
    try:
      return keras.applications.InceptionResNetV2(weights=None, input_shape=shape, name=GLOBAL_MODEL_NAME)
    finally:
      keras.utils.set_random_seed(resume_seed)
  if weights != "imagenet" and not os.path.exists(weights):
    raise WeightsError(f"Inception-ResNet-v2 weights file not found: {weights}")
  try:
    return keras.applications.InceptionResNetV2(weights=weights, input_shape=shape, name=GLOBAL_MODEL_NAME)
  except Exception as e:
    if weights != "imagenet":
      raise WeightsError(f"cannot load Inception-ResNet-v2 weights from {weights}: {e}") from e
    raise WeightsError(
        f"cannot download the ImageNet weights of Inception-ResNet-v2 ({e}). Without internet access, "
        f"fetch {IMAGENET_WEIGHTS_FILE} on a connected machine (Keras keeps it in ~/.keras/models/) "
        "and pass its path with --weights /path/to/that.h5 (or train.weights in the config file), "
        "or copy it into ~/.keras/models/ here; use --weights none for random weights (offline demos)."
    ) from e


def _fusion(encoded, class_vector):
  tiled = layers.RepeatVector(FUSION_SIZE * FUSION_SIZE, name="fusion_tile")(class_vector)
  tiled = layers.Reshape((FUSION_SIZE, FUSION_SIZE, class_vector.shape[-1]), name="fusion_grid")(tiled)
  x = layers.Concatenate(name="fusion_concat")([encoded, tiled])
  return _conv(256, kernel=1, name="fusion")(x)


def _decoder(x):
  x = _conv(128, name="decoder_0")(x)
  x = layers.UpSampling2D(2, name="decoder_up_0")(x)
  x = _conv(64, name="decoder_1")(x)
  x = _conv(64, name="decoder_2")(x)
  x = layers.UpSampling2D(2, name="decoder_up_1")(x)
  x = _conv(32, name="decoder_3")(x)
  x = layers.UpSampling2D(2, interpolation="bilinear", name="decoder_up_2")(x)
  return layers.Conv2D(2, 3, padding="same", activation="tanh", dtype="float32", name=features.AB_KEY)(x)
