"""EvaluationReport: the Python-function component that runs after the Evaluator.

One pass of the candidate model over the test split gives the MSE (cross-checking TFMA's),
both baselines, PSNR, SSIM and colorfulness, and the rows of the PNG grid. The verdict
comes from the Evaluator's validation result, with the reason when it is "not blessed".
Everything lands in `report.json` and `grid.png`, and the headline numbers become custom
properties of the report artifact, so `colorize run` and `colorize lineage` read them
from ML Metadata.
"""
import json
import os
from typing import Iterator, List

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.types import artifact
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components import metrics
from components import report as report_lib
from components.report import grid as grid_lib
from components.report import scoring
from schemas import features
from schemas import signatures

_BATCH = 16
_Examples = tfx.types.standard_artifacts.Examples


class ColorizationReport(artifact.Artifact):
  """report.json (scores, baselines, blessing verdict) and grid.png."""
  TYPE_NAME = report_lib.ARTIFACT_TYPE


@tfx.dsl.components.component
def EvaluationReport(  # noqa: N802 (a TFX component: named as a class)
    examples: tfx.dsl.components.InputArtifact[_Examples],
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    report: tfx.dsl.components.OutputArtifact[ColorizationReport],
    grid_rows: tfx.dsl.components.Parameter[int] = 8,
) -> None:
  """Scores the model on the test split against its baselines and draws the grid."""
  mean_ab = scoring.train_mean_ab(_batches(examples, features.TRAIN_SPLIT))
  scores, rows = scoring.score(_batches(examples, features.TEST_SPLIT), _predictor(model), mean_ab, grid_rows)
  blessed = bool(blessing.get_int_custom_property("blessed"))
  failures = [] if blessed else blessing_failures(evaluation.uri)
  tfma_metrics = _tfma_metrics(evaluation.uri)

  grid_path = os.path.join(report.uri, report_lib.GRID_FILE)
  tf.io.gfile.makedirs(report.uri)
  with tf.io.gfile.GFile(grid_path, "wb") as f:
    grid_lib.render(rows).save(f, format="PNG")
  content = {
      **scores.to_dict(),
      "tfma": tfma_metrics,
      "blessed": blessed,
      "blessing_failures": failures,
      "baseline_model_id": blessing.get_int_custom_property("baseline_model_id") or None,
      "grid": grid_path,
      "grid_columns": list(grid_lib.COLUMNS),
  }
  with tf.io.gfile.GFile(os.path.join(report.uri, report_lib.REPORT_FILE), "w") as f:
    json.dump(content, f, indent=2)

  for key, value in scores.to_dict().items():
    if isinstance(value, float):
      report.set_float_custom_property(key, value)
  report.set_int_custom_property("test_images", scores.test_images)
  report.set_int_custom_property("blessed", int(blessed))
  report.set_string_custom_property("blessing_failures", "; ".join(failures))
  report.set_string_custom_property("grid", grid_path)


def blessing_failures(evaluation_uri: str) -> List[str]:
  """Why the Evaluator did not bless, one sentence per failed threshold."""
  result = tfma.load_validation_result(evaluation_uri)
  reasons = []
  for per_slice in result.metric_validations_per_slice:
    for failure in per_slice.failures:
      reasons.append(_explain(failure))
  if result.missing_slices or result.missing_thresholds:
    reasons.append("the evaluation is incomplete (missing slices or metrics)")
  return reasons or ["the Evaluator did not bless the model (no failed threshold recorded)"]


def _explain(failure) -> str:
  name, value, threshold = failure.metric_key.name, failure.metric_value.double_value.value, failure.metric_threshold
  if threshold.HasField("change_threshold"):
    return (f"{name} {value:+.5f} vs the last blessed model exceeds the tolerance "
            f"{threshold.change_threshold.absolute.value:g}")
  if name == metrics.GAIN_OVER_NO_COLOUR:
    return f"no better than leaving the photo grey ({metrics.AB_MSE} is {-value:.5f} above the no-colour baseline)"
  bounds = threshold.value_threshold
  if bounds.HasField("upper_bound") and value > bounds.upper_bound.value:
    return f"{name} {value:.5f} is above the bound {bounds.upper_bound.value:g}"
  return f"{name} {value:.5f} fails its threshold: {failure.message}"


def _tfma_metrics(evaluation_uri: str) -> dict:
  """The overall-slice metrics the Evaluator computed for the candidate model."""
  out = {}
  for per_slice in tfma.load_metrics(evaluation_uri):
    if per_slice.slice_key.single_slice_keys:
      continue
    for kv in per_slice.metric_keys_and_values:
      if kv.key.model_name in ("", tfma.CANDIDATE_KEY) and not kv.key.is_diff:
        out[kv.key.name] = kv.value.double_value.value
  return out


def _batches(examples: artifact.Artifact, split: str) -> Iterator[tf.Tensor]:
  uri = artifact_utils.get_split_uri([examples], split)
  return iter(features.records([os.path.join(uri, "*")]).batch(_BATCH))


def _predictor(model: artifact.Artifact) -> scoring.Predictor:
  loaded = tf.saved_model.load(path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model)))
  signature = loaded.signatures[signatures.EXAMPLES_SIGNATURE]
  return lambda serialized: signature(**{signatures.EXAMPLES_INPUT: serialized})[signatures.AB_OUTPUT]
