"""CocoIngest's driver: TFX's file-based ExampleGen driver, plus a complete listing of the snapshot.

It runs in the orchestrator before the cache lookup. TFX's FileBasedDriver
(tfx/components/example_gen/driver.py) resolves the span and version of the input
pattern (snapshot.py), fingerprints the files the pattern matches and records span,
version and `input_fingerprint` on the Examples artifact; on Vertex AI / Kubeflow V2 the
compiler runs the same resolution as the step's pre-cache check
(tfx/orchestration/kubeflow/v2/file_based_example_gen/driver.py), because CocoIngest is
a FileBasedExampleGen.

Where this driver runs (TFX's IR launcher: LocalDagRunner and any runner that executes
the IR's custom driver spec) it appends the snapshot's own listing
(sources.input_fingerprint: every file list_photos draws on, at any depth, by name, size
and modification time, in one listing without reading a file), so a change below the
depth the files glob covers also makes a new cache key there.
"""
from typing import Any, Dict

from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils
from tfx.orchestration import data_types
from tfx.types import standard_component_specs

from components.ingest import snapshot
from components.ingest import sources


class Driver(example_gen_driver.FileBasedDriver):
  """TFX's span/version resolution and fingerprint, then the full listing of the resolved snapshot."""

  def resolve_exec_properties(self, exec_properties: Dict[str, Any], pipeline_info: data_types.PipelineInfo,
                              component_info: data_types.ComponentInfo) -> Dict[str, Any]:
    exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
    root = snapshot.root(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                         exec_properties[standard_component_specs.INPUT_CONFIG_KEY])
    exec_properties[utils.FINGERPRINT_PROPERTY_NAME] += "\nsnapshot:" + sources.input_fingerprint(root)
    return exec_properties
