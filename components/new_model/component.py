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

It is also the first step given both models, so it checks them against the manifest the
Trainer recorded (schemas/artifact_files.py) before anything loads them: a model damaged
since it was written (a truncated variables file, a deleted saved_model.pb) is one line
naming it, not a failure deep inside TensorFlow in the Evaluator, the serving gate or the
Pusher. The same reading of the files gives the fingerprint. A model written before the
Trainer recorded manifests is accepted, with a note in the verdict: it is the blessed
baseline of every run until a new model is blessed, and refusing it would stop them all
while nothing is known to be wrong with it; a missing saved_model.pb is still refused.
"""
import hashlib
from typing import Dict, Tuple

from tfx import v1 as tfx
from tfx.types import artifact
from tfx.utils import path_utils

from components import new_model
from schemas import artifact_files
from schemas import gates

# How to replace the latest blessed model's files: a new training does not (it is still the baseline).
RESTORE_BASELINE = ("restore its files from the copy the Pusher made of them (`colorize lineage artifacts "
                    "PushedModel` lists where), or start a new history under another pipeline_name")
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


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
  same = baseline_model is not None and _same_artifact(model, baseline_model)
  candidate, notes = checked_files(model, "the latest blessed model and candidate" if same else "the candidate",
                                   RESTORE_BASELINE if same else artifact_files.REBUILD)
  verdict.set_string_custom_property(new_model.FINGERPRINT, fingerprint(candidate))
  if baseline_model is None:
    passed, line = True, f"new: {_name(model)}, and no model was blessed before"
  elif same:
    passed, line = False, (f"unchanged: {_name(model)} is the latest blessed model itself (training was a cache "
                           "hit); not evaluated again, nothing pushed")
  else:
    baseline, baseline_notes = checked_files(baseline_model, "the latest blessed", RESTORE_BASELINE)
    notes += baseline_notes
    if fingerprint(baseline) == fingerprint(candidate):
      passed, line = False, (f"unchanged: {_name(model)} has the same bytes as {_name(baseline_model)}, the latest "
                             "blessed model; not evaluated again, nothing pushed")
    else:
      passed, line = True, f"new: {_name(model)} differs from {_name(baseline_model)}, the latest blessed model"
  verdict.set_int_custom_property(gates.PASSED, int(passed))
  verdict.set_string_custom_property(gates.VERDICT, "; ".join([line, *notes]))


def checked_files(model: artifact.Artifact, role: str, rebuild: str) -> Tuple[Dict[str, dict], list]:
  """The SavedModel's files ({path in it: {"bytes", "sha256"}}) as the Trainer recorded them, and notes.

  Raises artifact_files.DamagedArtifactError naming the model (`role`, id, uri) and `rebuild`
  when they differ; a model without a manifest is read as it is, with a note.
  """
  saved_model = _saved_model_dir(model)
  folder = saved_model[len(model.uri.rstrip("/")) + 1:]
  what = f"{role} Model #{model.id}" if model.id else f"{role} Model"  # the message adds its uri
  files = artifact_files.check(model.uri, what, artifact_files.model_files(folder), rebuild)
  notes = []
  if files is None:
    files = artifact_files.digests(model.uri, artifact_files.model_files(folder))
    notes.append(f"{_name(model)} has no file manifest (written before the Trainer recorded them): its files "
                 "were not checked")
  in_saved_model = {relative[len(folder) + 1:]: digest for relative, digest in files.items()}
  if not any(name in in_saved_model for name in _SAVED_MODEL_FILES):
    raise artifact_files.DamagedArtifactError(f"{what} at {model.uri} is damaged: {folder}/ holds no saved_model.pb; "
                                              f"{rebuild}")
  return in_saved_model, notes


def fingerprint(files: Dict[str, dict]) -> str:
  """SHA-256 over a SavedModel's files (checked_files): each relative path, size and SHA-256, in a fixed order."""
  digest = hashlib.sha256()
  for relative in sorted(files):
    digest.update(f"{relative}\0{files[relative]['bytes']}\0{files[relative]['sha256']}\0".encode())
  return digest.hexdigest()


def _same_artifact(a: artifact.Artifact, b: artifact.Artifact) -> bool:
  # Ids are those of ML Metadata (0 where a runner passes none); the URI names an artifact everywhere.
  return (a.id and a.id == b.id) or a.uri.rstrip("/") == b.uri.rstrip("/")


def _saved_model_dir(model: artifact.Artifact) -> str:
  return path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))


def _name(model: artifact.Artifact) -> str:
  return f"Model #{model.id}" if model.id else f"the Model at {model.uri}"
