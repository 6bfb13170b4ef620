"""TFX's Vertex Pusher executor, with the rollout of rollout.py in place of its upload-and-deploy.

Same exec properties and custom_config (the compiled template and the rehearsal read them as
before), the same blessing checks and copy of the SavedModel into the pushed_model artifact.
"""
from typing import Any, Dict, List

from tfx import types
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.extensions.google_cloud_ai_platform.pusher import executor as vertex_pusher
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import json_utils
from tfx.utils import name_utils
from tfx.utils import telemetry_utils

from components import endpoint_rollout
from components.endpoint_rollout import rollout


class Executor(vertex_pusher.Executor):
  """Deploys a blessed model to a Vertex AI Endpoint once it answered, and keeps the newest models."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],  # noqa: N802 (TFX's name)
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    custom_config = json_utils.loads(exec_properties.get("custom_config", "null")) or {}
    plan = custom_config.get(endpoint_rollout.ROLLOUT_KEY)
    if not (custom_config.get(constants.ENABLE_VERTEX_KEY) and isinstance(plan, dict)):
      raise ValueError(f"custom_config needs {constants.ENABLE_VERTEX_KEY} and {endpoint_rollout.ROLLOUT_KEY} "
                       "(pipelines/cloud_config.py vertex_serving_args writes both)")
    pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(pushed)
      return
    io_utils.copy_dir(src=self.GetModelPath(input_dict), dst=pushed.uri)
    with telemetry_utils.scoped_labels({telemetry_utils.LABEL_TFX_EXECUTOR: name_utils.get_full_name(self.__class__)}):
      job_labels = telemetry_utils.make_labels_dict()
    model = rollout.roll_out(
        serving_args=custom_config[constants.SERVING_ARGS_KEY],
        region=custom_config[constants.VERTEX_REGION_KEY],
        image=custom_config[constants.VERTEX_CONTAINER_IMAGE_URI_KEY],
        model_uri=pushed.uri,
        keep_models=int(plan["keep_models"]),
        owner=plan["owner"],
        job_labels=job_labels,
    )
    self._MarkPushed(pushed, pushed_destination=model)
