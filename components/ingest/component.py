"""CocoIngest: a TFX component that turns photos into train/eval/test tf.Examples.

Its output is a standard `Examples` artifact, written the way ExampleGen writes one
(`Split-<name>/` gzipped TFRecords of tf.Example, `payload_format` and `file_format`
custom properties), so the standard Trainer and Evaluator read it unchanged. It also
carries `split_counts`, `skip_counts` and `skip_report` custom properties; the skip
report (JSON, inside the artifact) lists every file left out and why. Its driver
(driver.py) fingerprints the input so a cached run is reused only for unchanged photos.
"""
from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.ingest import driver
from components.ingest import executor

EXAMPLES_KEY = "examples"


class CocoIngestSpec(types.ComponentSpec):
  PARAMETERS = {
      "input_base": ExecutionParameter(type=str),
      "max_images": ExecutionParameter(type=int),
      "categories": ExecutionParameter(type=str),
      "test_images": ExecutionParameter(type=int),
      "test_fraction": ExecutionParameter(type=float),
      "eval_fraction": ExecutionParameter(type=float),
      "keep_grayscale": ExecutionParameter(type=int),
      # Filled in by the driver at run time (driver.py), never by the pipeline definition.
      executor.INPUT_FINGERPRINT_PROPERTY: ExecutionParameter(type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class CocoIngest(base_beam_component.BaseBeamComponent):
  """Photos (COCO root or folder, local or gs://) -> Examples {train, eval, test}.

  See components/ingest/executor.py for what is written, components/ingest/splits.py
  for the split rule and imaging/images.py for decoding and the black-and-white test.
  """
  SPEC_CLASS = CocoIngestSpec
  DRIVER_CLASS = driver.Driver
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, *,
               input_base: str,
               max_images: int,
               categories: str,
               test_images: int,
               test_fraction: float,
               eval_fraction: float,
               keep_grayscale: bool):
    """Every value comes from pipelines/config.py's IngestConfig (defaults live there).

    Args:
      input_base: COCO root (train2017/, val2017/, annotations/) or a folder of photos; local or gs://.
      max_images: ingest at most this many photos (the lowest image ids); 0 = all.
      categories: comma-separated COCO category names; keep only photos showing one of them.
      test_images: size of the test split when the dataset is large enough.
      test_fraction: share of the usable colour photos used for test when test_images
        would be more than that share.
      eval_fraction: share of the remaining photos used for eval.
      keep_grayscale: keep black-and-white photos (in train/eval) instead of skipping them.
    """
    super().__init__(spec=CocoIngestSpec(
        input_base=input_base,
        max_images=int(max_images),
        categories=categories,
        test_images=int(test_images),
        test_fraction=float(test_fraction),
        eval_fraction=float(eval_fraction),
        # An int, not a bool: every orchestrator's IR carries ints.
        keep_grayscale=int(bool(keep_grayscale)),
        examples=types.Channel(type=standard_artifacts.Examples)))
