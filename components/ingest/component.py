"""CocoIngest: a TFX file-based ExampleGen that turns photos into train/eval/test tf.Examples.

It is a `FileBasedExampleGen` with its own spec, driver and Beam executor, so every
orchestrator treats it as TFX's own file-based ExampleGens: its driver resolves the
input's span and version and fingerprints it before the cache is consulted, locally
(driver.py) and as the Vertex AI / Kubeflow V2 pre-cache check (the compiler gives every
FileBasedExampleGen that hook). snapshot.py says how spans are laid out.

Its output is a standard `Examples` artifact, written the way ExampleGen writes one
(`Split-<name>/` gzipped TFRecords of tf.Example, `payload_format` and `file_format`
custom properties), so the standard Trainer and Evaluator read it unchanged. It also
carries ExampleGen's `span`, `version` and `input_fingerprint` and this project's
`split_counts`, `skip_counts` and `skip_report` custom properties; the skip report (JSON,
inside the artifact) lists every file left out and why.

Its `feature_spec` parameter is schemas/features.py's spec_fingerprint: TFX's cache key (local
and on Vertex) covers every parameter, so after an upgrade that changes what an example holds
the next run ingests again, while Examples of an unchanged spec stay cached.
"""
from tfx import types
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from components.ingest import driver
from components.ingest import executor
from components.ingest import snapshot
from schemas import features

EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY
FEATURE_SPEC_KEY = "feature_spec"


class CocoIngestSpec(types.ComponentSpec):
  # input_base, input_config and range_config under ExampleGen's names: both of TFX's
  # file-based drivers read them. The output splits come from splits.py, not an output_config.
  PARAMETERS = {
      standard_component_specs.INPUT_BASE_KEY: ExecutionParameter(type=str),
      standard_component_specs.INPUT_CONFIG_KEY: ExecutionParameter(type=example_gen_pb2.Input),
      standard_component_specs.RANGE_CONFIG_KEY: ExecutionParameter(type=range_config_pb2.RangeConfig, optional=True),
      "max_images": ExecutionParameter(type=int),
      "categories": ExecutionParameter(type=str),
      "test_fraction": ExecutionParameter(type=float),
      "eval_fraction": ExecutionParameter(type=float),
      "keep_grayscale": ExecutionParameter(type=int),
      # The executor does not read it: it is in the cache key, so Examples of another spec are made again.
      FEATURE_SPEC_KEY: ExecutionParameter(type=str),
      snapshot.PATTERN_KEY: ExecutionParameter(type=str),
  }
  INPUTS = {}
  OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class CocoIngest(example_gen_component.FileBasedExampleGen):
  """Photos (COCO root or folder, local or gs://; one snapshot per run) -> Examples {train, eval, test}.

  See components/ingest/executor.py for what is written, components/ingest/splits.py
  for the split rule and imaging/images.py for decoding and the black-and-white test.
  """
  SPEC_CLASS = CocoIngestSpec
  DRIVER_CLASS = driver.Driver
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, *,
               input_base: str,
               snapshot_pattern: str,
               snapshot_files: str,
               span: int,
               max_images: int,
               categories: str,
               test_fraction: float,
               eval_fraction: float,
               keep_grayscale: bool):
    """Every value comes from pipelines/config.py's IngestConfig (defaults live there).

    Args:
      input_base: COCO root (train2017/, val2017/, annotations/) or a folder of photos, or the
        folder holding one of them per snapshot; local or gs://.
      snapshot_pattern: the folder of one snapshot below input_base, with TFX's {SPAN} or
        {YYYY}{MM}{DD} and optionally {VERSION} (e.g. 'span-{SPAN}'); '' = input_base itself.
      snapshot_files: glob of a snapshot's files below its folder ('*/*' for a COCO root).
      span: snapshot.NEWEST, or the span to ingest.
      max_images: ingest at most this many photos (the lowest image ids); 0 = all.
      categories: comma-separated COCO category names; keep only photos showing one of them.
      test_fraction: share of the image-id hash space held out for test (splits.py).
      eval_fraction: share of the remaining photos used for eval.
      keep_grayscale: keep black-and-white photos (in train/eval) instead of skipping them.
    """
    # A runtime parameter (compiled templates) is checked with its default here, its value by the driver.
    problem = snapshot.check(getattr(input_base, "default", input_base), snapshot_pattern, snapshot_files)
    if problem:
      raise ValueError(problem)
    # FileBasedExampleGen.__init__ builds ExampleGen's own spec; this component has its own.
    base_beam_component.BaseBeamComponent.__init__(self, spec=CocoIngestSpec(
        input_base=input_base,
        input_config=snapshot.input_config(snapshot_pattern, snapshot_files),
        range_config=snapshot.range_config(span),
        max_images=int(max_images),
        categories=categories,
        test_fraction=float(test_fraction),
        eval_fraction=float(eval_fraction),
        # An int, not a bool: every orchestrator's IR carries ints.
        keep_grayscale=int(bool(keep_grayscale)),
        feature_spec=features.spec_fingerprint(),
        snapshot_pattern=snapshot_pattern,
        examples=types.Channel(type=standard_artifacts.Examples)))
