"""Training on accumulating data: the Examples of the latest N spans CocoIngest produced.

TFX's SpanRangeStrategy returns every Examples artifact whose span is in range, so a
span ingested twice (a photo inside it changed, or a new {VERSION} folder) would be
trained on twice. This strategy keeps one artifact per span: the highest version, then
the most recent ingestion.
"""
from typing import Dict, List

from tfx import types
from tfx.components.example_gen import utils
from tfx.dsl.input_resolution.strategies import span_range_strategy


class LatestSpansStrategy(span_range_strategy.SpanRangeStrategy):
  """SpanRangeStrategy over a rolling range, one artifact per span, newest span first."""

  def _resolve(self, input_dict: Dict[str, List[types.Artifact]]) -> Dict[str, List[types.Artifact]]:
    return {key: _newest_per_span(artifacts) for key, artifacts in super()._resolve(input_dict).items()}


def _newest_per_span(artifacts: List[types.Artifact]) -> List[types.Artifact]:
  newest: Dict[int, types.Artifact] = {}
  for artifact in artifacts:
    span = artifact.get_int_custom_property(utils.SPAN_PROPERTY_NAME)
    if span not in newest or _recency(artifact) > _recency(newest[span]):
      newest[span] = artifact
  return [newest[span] for span in sorted(newest, reverse=True)]


def _recency(artifact: types.Artifact):
  version = (artifact.get_int_custom_property(utils.VERSION_PROPERTY_NAME)
             if artifact.has_custom_property(utils.VERSION_PROPERTY_NAME) else -1)
  return version, artifact.id
