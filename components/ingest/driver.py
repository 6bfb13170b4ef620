"""CocoIngest's driver: keys TFX's cache on the state of the input, not only on its path.

Without it, the cache key of an ingestion is its parameters (input_base, filters, split
settings), so re-running after photos were added, rewritten or removed under the same
root would silently reuse the old Examples. Like ExampleGen's FileBasedDriver
(tfx/components/example_gen/driver.py), it runs in the orchestrator before the cache
lookup and adds an `input_fingerprint` execution property: the input's files by name,
size and modification time (sources.input_fingerprint, a listing, no file reads). Any
change makes a new cache key, hence a new execution; an unchanged input hits the cache.

Where it runs: TFX's IR launcher (LocalDagRunner, and any runner that executes the IR's
custom driver spec). The Kubeflow V2 / Vertex compiler runs no custom driver (its only
pre-cache hook is ExampleGen's own); see docs/vertex.md for caching there.
"""
from tfx.dsl.components.base import base_driver
from tfx.orchestration import metadata
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types as portable_data_types
from tfx.proto.orchestration import driver_output_pb2

from components.ingest import executor
from components.ingest import sources


class Driver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
  """Adds the input fingerprint to the execution properties, before the cache lookup."""

  def __init__(self, metadata_handle: metadata.Metadata):
    # TFX requires a component's DRIVER_CLASS to be a (legacy) base_driver.BaseDriver; the IR
    # launcher instantiates it with its MLMD connection and calls run().
    base_driver.BaseDriver.__init__(self, metadata_handle)
    ir_base_driver.BaseDriver.__init__(self, metadata_handle)

  def run(self, execution_info: portable_data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
    result = driver_output_pb2.DriverOutput()
    result.exec_properties[executor.INPUT_FINGERPRINT_PROPERTY].string_value = sources.input_fingerprint(
        execution_info.exec_properties["input_base"])
    return result
