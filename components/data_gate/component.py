"""DataGate and DataGateCheck: the TFX components of the data gate (executor.py says what they do).

The verdict artifact is TFX's `Statistics` type, one the Kubeflow v2 / Vertex compiler knows
by name: its LatestArtifactStrategy resolver is a query on the type alone (custom types all
compile to one title), and no other step of this pipeline outputs `Statistics`, so "the
latest verdict" means the same on every runner.
"""
from tfx import types
from tfx.dsl.components.base import base_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter
from tfx.types.experimental import simple_artifacts

from components.data_gate import executor

VERDICT_TYPE = simple_artifacts.Statistics


class DataGateSpec(types.ComponentSpec):
  PARAMETERS = {
      **{key: ExecutionParameter(type=float) for key in executor.THRESHOLD_PARAMETERS},
      executor.MIN_PHOTOS_PARAMETER: ExecutionParameter(type=int),
      executor.ACCEPT_PARAMETER: ExecutionParameter(type=str),
  }
  INPUTS = {
      executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
      executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
      executor.BASELINE_KEY: ChannelParameter(type=VERDICT_TYPE, optional=True),
  }
  OUTPUTS = {executor.RESULT_KEY: ChannelParameter(type=VERDICT_TYPE)}


class DataGate(base_component.BaseComponent):
  """A span's statistics, schema anomalies and shares -> the verdict (passed or not, and why)."""
  SPEC_CLASS = DataGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, *, examples: types.BaseChannel, statistics: types.BaseChannel, anomalies: types.BaseChannel,
               baseline: types.BaseChannel, max_mean_shift: float, max_spread_ratio: float,
               max_skip_share: float, max_bw_share: float, min_photos: int, accept: str):
    """Every value comes from pipelines/config.py's DataGateConfig.

    Args:
      examples: CocoIngest's Examples (their skip report gives the shares).
      statistics: StatisticsGen's statistics of those Examples.
      anomalies: ExampleValidator's anomalies of those statistics against the schema.
      baseline: the last verdict (a LatestArtifactStrategy resolver of this component's output).
      max_mean_shift: a photo statistic's largest mean shift, in the baseline's standard deviations.
      max_spread_ratio: its standard deviation's largest change (a factor, either way).
      max_skip_share: the largest share of skipped files (black-and-white ones not counted).
      max_bw_share: the largest share of black-and-white photos among the usable ones.
      min_photos: the fewest photos whose statistics are compared with the last accepted span's.
      accept: comma-separated names of the checks accepted for this run ('all': every one).
    """
    super().__init__(spec=DataGateSpec(
        examples=examples, statistics=statistics, anomalies=anomalies, baseline=baseline,
        max_mean_shift=float(max_mean_shift), max_spread_ratio=float(max_spread_ratio),
        max_skip_share=float(max_skip_share), max_bw_share=float(max_bw_share), min_photos=int(min_photos),
        accept=accept,
        result=types.Channel(type=VERDICT_TYPE)))


class DataGateCheckSpec(types.ComponentSpec):
  PARAMETERS = {}
  INPUTS = {executor.RESULT_KEY: ChannelParameter(type=VERDICT_TYPE)}
  OUTPUTS = {}


class DataGateCheck(base_component.BaseComponent):
  """Fails (stopping the run) when the DataGate's verdict did not pass."""
  SPEC_CLASS = DataGateCheckSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.CheckExecutor)

  def __init__(self, *, result: types.BaseChannel):
    super().__init__(spec=DataGateCheckSpec(result=result))
