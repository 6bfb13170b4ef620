"""Which Inception-ResNet-v2 weights made the embeddings of an Examples artifact.

The Embed component (components/embed/) writes INFO_FILE beside the splits; the Trainer
reads it before training on the embeddings (its run_fn gets the splits' file patterns,
not the artifact and its custom properties), and refuses other weights.
"""
import hashlib
import json
import posixpath
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from schemas import artifact_files

INFO_FILE = "embedding.json"


class EmbeddingError(ValueError):
  """Precomputed embeddings are missing or were made with other weights; the message says what to do."""


def fingerprint(weights: Sequence[np.ndarray]) -> str:
  """sha256 of a network's weights (Keras `get_weights()` of the embedder): what names the
  embedding, compared by the trainer before it trains on one.
  """
  digest = hashlib.sha256()
  for weight in weights:
    digest.update(str(weight.shape).encode())
    digest.update(np.ascontiguousarray(weight, np.float32).tobytes())
  return digest.hexdigest()


def write(examples_uri: str, weights: str, fingerprint: str) -> None:
  with tf.io.gfile.GFile(posixpath.join(examples_uri, INFO_FILE), "w") as f:
    json.dump({"weights": weights, "fingerprint": fingerprint}, f)


def read(examples_uri: str) -> Dict[str, str]:
  """{"weights", "fingerprint"} of the embedded Examples at `examples_uri`."""
  path = posixpath.join(examples_uri, INFO_FILE)
  if not tf.io.gfile.exists(path):
    raise EmbeddingError(f"{examples_uri} holds no precomputed embeddings ({INFO_FILE} missing): train with "
                         "train.global_features: precomputed on the Embed component's output, or use live")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def check(split_patterns: Sequence[str], weights: str, fingerprint: str) -> None:
  """Raises EmbeddingError unless the Examples of every `<uri>/Split-<name>/*` pattern were
  embedded with the weights whose fingerprint is `fingerprint` (train.weights = `weights`).
  """
  for uri in artifact_files.artifact_uris(split_patterns):
    info = read(uri)
    if info["fingerprint"] != fingerprint:
      raise EmbeddingError(
          f"the embeddings in {uri} were made with Inception-ResNet-v2 weights {info['weights']!r} "
          f"(fingerprint {info['fingerprint'][:16]}), but train.weights {weights!r} has fingerprint "
          f"{fingerprint[:16]}: the exported model would not be the one the colorizer was trained with. "
          "Re-run the Embed step with these weights (`colorize run` does when train.weights changes; "
          "--no-cache if the weights file changed in place), or set train.global_features: live.")
