"""NewModelCheck: is the candidate Model new, or the latest blessed model once more?

An unchanged week re-runs every step from the cache: the Trainer's output is the very Model
artifact blessed and pushed last week, and the latest-blessed-model resolver hands the
Evaluator that same model as its baseline. Comparing a model with itself blesses it again
and the Pusher writes a second identical version. A retraining can also reproduce the same
bytes. So this check compares the candidate with the resolved baseline (the same artifact,
or the same SavedModel bytes) and records its verdict with schemas/gates.py's properties;
the pipeline runs the Evaluator, the serving gate and the Pusher only when it passed
(tfx.dsl.Cond), so an unchanged model is neither evaluated against itself nor pushed.

Why a gate and not a resolver that leaves the candidate out: TFX's Kubeflow v2 / Vertex
compiler turns LatestBlessedModelStrategy into two fixed artifact queries (the latest blessed
ModelBlessing, then the Model it names) and refuses any other strategy, so such a resolver
would run locally but could not be compiled. The gate and Cond compile to an ordinary step
and a task trigger condition, and behave the same on both runners.
"""
import hashlib
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact
from tfx.utils import path_utils

from components import new_model
from schemas import gates

_CHUNK = 1 << 20


class NewModelVerdict(artifact.Artifact):
  """The verdict (schemas/gates.py properties) and the candidate's fingerprint; no files."""
  TYPE_NAME = new_model.ARTIFACT_TYPE


@tfx.dsl.components.component
def NewModelCheck(  # noqa: N802 (a TFX component: named as a class)
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    verdict: tfx.dsl.components.OutputArtifact[NewModelVerdict],
    baseline_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model] = None,
) -> None:
  """Passes a model that is not the latest blessed one (`baseline_model`) nor a byte copy of it."""
  candidate = fingerprint(_saved_model_dir(model))
  verdict.set_string_custom_property(new_model.FINGERPRINT, candidate)
  if baseline_model is None:
    passed, line = True, f"new: {_name(model)}, and no model was blessed before"
  elif _same_artifact(model, baseline_model):
    passed, line = False, (f"unchanged: {_name(model)} is the latest blessed model itself (training was a cache "
                           "hit); not evaluated again, nothing pushed")
  elif fingerprint(_saved_model_dir(baseline_model)) == candidate:
    passed, line = False, (f"unchanged: {_name(model)} has the same bytes as {_name(baseline_model)}, the latest "
                           "blessed model; not evaluated again, nothing pushed")
  else:
    passed, line = True, f"new: {_name(model)} differs from {_name(baseline_model)}, the latest blessed model"
  verdict.set_int_custom_property(gates.PASSED, int(passed))
  verdict.set_string_custom_property(gates.VERDICT, line)


def fingerprint(model_dir: str) -> str:
  """SHA-256 over the SavedModel's files: each relative path, size and content, in a fixed order."""
  digest = hashlib.sha256()
  for directory, _, files in sorted(tf.io.gfile.walk(model_dir)):
    for name in sorted(files):
      path = os.path.join(directory, name)
      relative = os.path.relpath(path, model_dir)
      digest.update(f"{relative}\0{tf.io.gfile.stat(path).length}\0".encode())
      with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(_CHUNK):
          digest.update(chunk)
  return digest.hexdigest()


def _same_artifact(a: artifact.Artifact, b: artifact.Artifact) -> bool:
  # Ids are those of ML Metadata (0 where a runner passes none); the URI names an artifact everywhere.
  return (a.id and a.id == b.id) or a.uri.rstrip("/") == b.uri.rstrip("/")


def _saved_model_dir(model: artifact.Artifact) -> str:
  return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def _name(model: artifact.Artifact) -> str:
  return f"Model #{model.id}" if model.id else f"the Model at {model.uri}"
