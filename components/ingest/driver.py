"""CocoIngest's driver: TFX's file-based ExampleGen driver, resolving and fingerprinting by the tree rule.

It runs in the orchestrator before the cache lookup, and records span, version and
`input_fingerprint` on the Examples artifact as TFX's FileBasedDriver
(tfx/components/example_gen/driver.py) does. It does not use that driver's resolution:
TFX globs `<snapshot>/<files glob>` and stats every match, so a link loop or a broken
link inside `train2017/` failed the whole ingestion with a traceback before the
project's listing ran. Here the snapshot is chosen by snapshot.resolve (every folder of
the data root gets a decision) and fingerprinted by its own listing
(sources.input_fingerprint: every file list_photos draws on, at any depth, by name,
size and modification time, by the tree rule, without reading a file). Entries of the
data root that are no snapshot are left to the executor (snapshot.PATTERN_KEY says why).

On Vertex AI / Kubeflow V2 the compiler runs TFX's own resolution as the step's
pre-cache check (tfx/orchestration/kubeflow/v2/file_based_example_gen/driver.py),
because CocoIngest is a FileBasedExampleGen; Cloud Storage has no links or special
files for its glob to trip on.
"""
from typing import Any, Dict

from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.ingest import snapshot
from components.ingest import sources


class Driver(example_gen_driver.FileBasedDriver):
  """Span/version resolution by snapshot.resolve, fingerprint by the snapshot's full listing."""

  def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info: data_types.PipelineInfo,
                              component_info: data_types.ComponentInfo) -> Dict[str, Any]:
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], config)
    folder_pattern, files = snapshot.split_pattern(config.splits[0].pattern)
    resolved = snapshot.resolve(input_base, folder_pattern, _pinned_span(exec_properties))
    config.splits[0].pattern = snapshot.pattern(resolved.folder, files)
    exec_properties[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(config)
    root = snapshot.root(input_base, exec_properties[standard_component_specs.INPUT_CONFIG_KEY])
    try:
      fingerprint = sources.input_fingerprint(root)
    except sources.SourceError as e:
      if not folder_pattern:
        raise
      raise snapshot.SnapshotError(f"{e} (the snapshot chosen by ingest.snapshot {folder_pattern!r}); "
                                   "fill it, remove it, or pin ingest.span") from e
    exec_properties[utils.SPAN_PROPERTY_NAME] = resolved.span
    exec_properties[utils.VERSION_PROPERTY_NAME] = resolved.version
    exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = "snapshot:" + fingerprint
    return exec_properties


def _pinned_span(exec_properties: Dict[str, Any]) -> int:
  """The span a static RangeConfig (snapshot.range_config) pins, or snapshot.NEWEST."""
  entry = exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY)
  if not entry:
    return snapshot.NEWEST
  range_config = range_config_pb2.RangeConfig()
  proto_utils.json_to_proto(entry, range_config)
  return range_config.static_range.start_span_number
