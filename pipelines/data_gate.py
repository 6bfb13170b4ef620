"""The data gate's steps in the pipeline, between ingestion and [embedding and] training.

StatisticsGen (TFDV) -> ExampleValidator (against schemas/schema.pbtxt) -> DataGate (with the
last verdict, resolved by TFX's LatestArtifactStrategy: the Kubeflow v2 / Vertex compiler
supports it) -> DataGateCheck. The steps after the gate wait for DataGateCheck, which fails
the run when the verdict did not pass (components/data_gate/executor.py says why two steps).
"""
from typing import List, Tuple

from tfx import v1 as tfx

from components.data_gate import component
from components.data_gate import executor
from pipelines import config as config_lib

GATE_ID = "DataGate"
LAST_VERDICT_RESOLVER_ID = "last_data_gate_verdict"


def steps(examples: tfx.dsl.Channel, schema: tfx.dsl.Channel, gate: config_lib.DataGateConfig
          ) -> Tuple[List, component.DataGateCheck]:
  """The gate's components for `examples` (in pipeline order), and the step the later ones wait for."""
  statistics_gen = tfx.components.StatisticsGen(examples=examples, schema=schema)
  validator = tfx.components.ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema)
  last_verdict = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
      baseline=tfx.dsl.Channel(type=component.VERDICT_TYPE, producer_component_id=GATE_ID,
                               output_key=executor.RESULT_KEY),
  ).with_id(LAST_VERDICT_RESOLVER_ID)
  data_gate = component.DataGate(
      examples=examples,
      statistics=statistics_gen.outputs["statistics"],
      anomalies=validator.outputs["anomalies"],
      baseline=last_verdict.outputs["baseline"],
      max_mean_shift=gate.max_mean_shift,
      max_spread_ratio=gate.max_spread_ratio,
      max_skip_share=gate.max_skip_share,
      max_bw_share=gate.max_bw_share,
      min_photos=gate.min_photos,
      accept=",".join(gate.accept),
  ).with_id(GATE_ID)
  check = component.DataGateCheck(result=data_gate.outputs[executor.RESULT_KEY])
  return [statistics_gen, validator, last_verdict, data_gate, check], check
