"""Embed: a TFX component that adds Inception-ResNet-v2's class vector to every example.

Its own component rather than a step of CocoIngest, for TFX's cache: an execution is
reused when its inputs and parameters are unchanged, so changing `train.weights` re-runs
the embedding alone (not the ingestion, which knows nothing about weights), and
changing only training settings re-runs neither. Takes an Examples artifact, writes an
Examples artifact with the same splits, examples and custom properties plus the
`embedding` feature (schemas/features.py) and records which weights made it
(executor.py): the Trainer refuses to mix it with other weights.
"""
from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.embed import executor


class EmbedSpec(types.ComponentSpec):
  PARAMETERS = {
      executor.WEIGHTS_PARAMETER: ExecutionParameter(type=str),
      executor.BATCH_SIZE_PARAMETER: ExecutionParameter(type=int),
      executor.EMBEDDER_FN_PARAMETER: ExecutionParameter(type=str),
  }
  INPUTS = {executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {executor.EMBEDDED_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class Embed(base_beam_component.BaseBeamComponent):
  """Examples -> Examples + `embedding` (Beam RunInference, batched; Dataflow GPU workers in the cloud)."""
  SPEC_CLASS = EmbedSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, *, examples: types.BaseChannel, weights: str, batch_size: int = executor.DEFAULT_BATCH_SIZE,
               embedder_fn: str = executor.DEFAULT_EMBEDDER_FN):
    """Embeds `examples` with Inception-ResNet-v2.

    Args:
      examples: the ingested Examples (they must hold `gray`).
      weights: Inception-ResNet-v2's weights, as train.weights: "imagenet", "none" or a weights file.
      batch_size: photos per inference call.
      embedder_fn: import path of a function weights -> the Keras embedder (gray -> class vector).
    """
    super().__init__(spec=EmbedSpec(
        examples=examples, weights=weights, batch_size=int(batch_size), embedder_fn=embedder_fn,
        embedded_examples=types.Channel(type=standard_artifacts.Examples)))
