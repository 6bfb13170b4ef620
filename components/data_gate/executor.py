"""The data gate's two executors: DataGate judges a span, DataGateCheck stops the run on its verdict.

DataGate reads StatisticsGen's statistics (every split), ExampleValidator's schema anomalies,
the ingestion's skip report and the last verdict's baseline, and writes one `Statistics`
artifact: the verdict as custom properties (schemas/gates.py), the full report (report.json)
and the baseline the next span is compared with (baseline.json): this span's moments when it
passed, else the baseline it was given, so a stopped span never becomes the reference.

DataGateCheck raises checks.Stopped when the verdict did not pass. Two steps, because TFX
publishes no outputs of a failed execution: the verdict must be recorded before the run is
stopped. Training only waits for DataGateCheck (an ordering dependency, not an input), so a
gate that runs again on an unchanged span leaves the Trainer's cache alone.
"""
import json
import os
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components.data_gate import checks
from components.ingest import commit
from components.ingest import executor as ingest_executor
from schemas import features
from schemas import gates

EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"
ANOMALIES_KEY = "anomalies"
BASELINE_KEY = "baseline"
RESULT_KEY = "result"
ACCEPT_PARAMETER = "accept"
THRESHOLD_PARAMETERS = ("max_mean_shift", "max_spread_ratio", "max_skip_share", "max_bw_share")
MIN_PHOTOS_PARAMETER = "min_photos"
REPORT_FILE = "report.json"
BASELINE_FILE = "baseline.json"
ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator's file in each Split-<name> folder
SPAN_PROPERTY = "span"


def _moments(statistics: types.Artifact) -> Dict[str, checks.Moments]:
  """Every photo statistic's moments over all the splits StatisticsGen computed."""
  per_split: Dict[str, List[checks.Moments]] = {name: [] for name in checks.STATISTICS}
  for split in artifact_utils.decode_split_names(statistics.split_names):
    stats = stats_artifact_utils.load_statistics(statistics, split).get_default_slice().proto()
    for feature in stats.features:
      name = feature.path.step[0] if feature.path.step else feature.name
      if name in per_split and feature.HasField("num_stats"):
        num = feature.num_stats
        per_split[name].append(checks.Moments(int(num.common_stats.num_non_missing), num.mean, num.std_dev))
  return {name: checks.pool(moments) for name, moments in per_split.items()}


def _schema_problems(anomalies: types.Artifact) -> List[str]:
  from tensorflow_metadata.proto.v0 import anomalies_pb2

  problems = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
    with fileio.open(path, "rb") as f:
      found = anomalies_pb2.Anomalies.FromString(f.read())
    for name, info in sorted(found.anomaly_info.items()):
      problems.append(f"{name} in {split}: {info.short_description or info.description}")
    for reason in found.dataset_anomaly_info.reason:
      problems.append(f"{split}: {reason.short_description}")
  return problems


def _shares(examples: types.Artifact) -> Dict[str, float]:
  report = commit.read_report(os.path.join(examples.uri, ingest_executor.SKIP_REPORT_FILE))
  return features.span_shares(report["split_counts"], report["skip_counts"], len(report["grayscale_kept"]))


class Executor(base_executor.BaseExecutor):
  """DataGate: see the module docstring."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],  # noqa: N802 (TFX's executor API)
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    result = artifact_utils.get_single_instance(output_dict[RESULT_KEY])
    statistics = _moments(artifact_utils.get_single_instance(input_dict[STATISTICS_KEY]))
    given = _given_baseline(input_dict.get(BASELINE_KEY) or [])
    baseline = checks.from_json(given["moments"]) if given else None
    shares = _shares(examples)
    thresholds = checks.Thresholds(**{key: float(exec_properties[key]) for key in THRESHOLD_PARAMETERS},
                                   min_photos=int(exec_properties[MIN_PHOTOS_PARAMETER]))
    accept = [a for a in (exec_properties.get(ACCEPT_PARAMETER) or "").split(",") if a]
    verdict = checks.judge(statistics, baseline, shares,
                           _schema_problems(artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])),
                           thresholds, accept)
    span = examples.get_int_custom_property(SPAN_PROPERTY) if examples.has_custom_property(SPAN_PROPERTY) else 0
    report = {
        "passed": verdict.passed, "verdict": verdict.line, "findings": verdict.findings,
        "accepted": verdict.accepted, "span": span, "thresholds": vars(thresholds), "shares": shares,
        "moments": checks.to_json(statistics), "baseline_span": given and given["span"],
        "baseline": given and given["moments"],
    }
    _write_json(result.uri, REPORT_FILE, report)
    next_baseline = {"span": span, "moments": checks.to_json(statistics)} if verdict.passed else given
    if next_baseline:
      _write_json(result.uri, BASELINE_FILE, next_baseline)
    result.set_int_custom_property(SPAN_PROPERTY, span)
    result.set_int_custom_property(gates.PASSED, int(verdict.passed))
    result.set_string_custom_property(gates.VERDICT, verdict.line)
    result.set_string_custom_property(gates.REPORT, os.path.join(result.uri, REPORT_FILE))


def _given_baseline(previous: List[types.Artifact]) -> Optional[Dict[str, Any]]:
  """The baseline the last verdict handed on ({"span", "moments"}), None before any span passed."""
  path = previous and os.path.join(previous[-1].uri, BASELINE_FILE)
  if not path or not fileio.exists(path):
    return None
  with fileio.open(path) as f:
    return json.load(f)


def _write_json(folder: str, name: str, value: Any) -> None:
  fileio.makedirs(folder)
  with fileio.open(os.path.join(folder, name), "w") as f:
    f.write(json.dumps(value, indent=1))


class CheckExecutor(base_executor.BaseExecutor):
  """DataGateCheck: stops the run (checks.Stopped) when the gate's verdict did not pass."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],  # noqa: N802 (TFX's executor API)
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    result = artifact_utils.get_single_instance(input_dict[RESULT_KEY])
    if not result.get_int_custom_property(gates.PASSED):
      raise checks.Stopped(result.get_string_custom_property(gates.VERDICT))
