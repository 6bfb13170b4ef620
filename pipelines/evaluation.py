"""The Evaluator's configuration: what is measured on the test split and what blesses a model.

A model is blessed when, on the held-out test split,
  - its pixelwise ab MSE is at most `mse_upper_bound`,
  - it beats leaving the photo grey (MSE strictly below the no-colour baseline), and
  - its MSE is at most `mse_change_tolerance` worse than the last blessed model's
    (TFX drops this check when no model was blessed before).
"""
import json
import math

import tensorflow_model_analysis as tfma

from components import metrics
from pipelines import config as config_lib
from schemas import features
from schemas import signatures

# "Strictly below the no-colour baseline": the gain must be at least the smallest positive double.
_STRICTLY_POSITIVE = math.ulp(0.0)


def eval_config(evaluate: config_lib.EvalConfig) -> tfma.EvalConfig:
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(
          # No name on purpose: TFMA then calls "predict" (signatures.EXAMPLES_SIGNATURE) and, in
          # models exported before the REST signature took "serving_default", that one, so the
          # last blessed model of an older release stays a usable baseline.
          model_type=tfma.TF_GENERIC,
          label_key=features.AB_KEY,
          prediction_key=signatures.AB_OUTPUT,
      )],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          _metric(metrics.AbMse, metrics.AB_MSE, tfma.MetricThreshold(
              value_threshold=tfma.GenericValueThreshold(upper_bound={"value": evaluate.mse_upper_bound}),
              change_threshold=tfma.GenericChangeThreshold(
                  direction=tfma.MetricDirection.LOWER_IS_BETTER,
                  absolute={"value": evaluate.mse_change_tolerance}))),
          _metric(metrics.NoColourMse, metrics.NO_COLOUR_MSE),
          _metric(metrics.MseGainOverNoColour, metrics.GAIN_OVER_NO_COLOUR, tfma.MetricThreshold(
              value_threshold=tfma.GenericValueThreshold(lower_bound={"value": _STRICTLY_POSITIVE}))),
      ])],
  )


def _metric(cls, name: str, threshold: tfma.MetricThreshold = None) -> tfma.MetricConfig:
  config = tfma.MetricConfig(class_name=cls.__name__, module=cls.__module__, config=json.dumps({"name": name}))
  if threshold is not None:
    config.threshold.CopyFrom(threshold)
  return config
