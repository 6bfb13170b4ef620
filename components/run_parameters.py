"""The Trainer's per-run settings (epochs, batch size, learning rate, weights) as typed runtime parameters.

A compiled Vertex / Kubeflow v2 template can make only a whole exec property a runtime parameter,
and the Trainer keeps these inside custom_config["train"]. So a compiled Trainer gets one exec
property each, typed INT / DOUBLE in the template, and an executor that writes their values into
custom_config["train"] before TFX's own executor (local, or the Vertex AI Training job) runs.
trainer/task.py then checks them as it checks every training setting.
"""
import json
from typing import Any, Dict

from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor

# weights: "none" lets a rehearsal run offline (colorize rehearse); the Embed step reads the same parameter.
TYPES = {"epochs": int, "batch_size": int, "learning_rate": float, "weights": str}
_CUSTOM_CONFIG = "custom_config"


def fold(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  """exec_properties with the run parameters moved into custom_config["train"]."""
  properties = {k: v for k, v in exec_properties.items() if k not in TYPES}
  custom = json.loads(properties.get(_CUSTOM_CONFIG) or "{}")
  custom["train"] = {**custom.get("train", {}),
                     **{k: exec_properties[k] for k in TYPES if exec_properties.get(k) is not None}}
  properties[_CUSTOM_CONFIG] = json.dumps(custom, sort_keys=True)
  return properties


class Executor(trainer_executor.GenericExecutor):
  def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
    return super().Do(input_dict, output_dict, fold(exec_properties))


class VertexExecutor(vertex_executor.GenericExecutor):
  def Do(self, input_dict, output_dict, exec_properties):  # noqa: N802 (TFX's name)
    return super().Do(input_dict, output_dict, fold(exec_properties))


def parameters(train) -> Dict[str, Any]:
  """A runtime parameter for each of TYPES, defaulting to `train`'s (a TrainConfig) value."""
  return {name: tfx.dsl.experimental.RuntimeParameter(name=name, ptype=ptype, default=ptype(getattr(train, name)))
          for name, ptype in TYPES.items()}


def add(trainer, run: Dict[str, Any]) -> None:
  """Gives `trainer` (TFX's Trainer or its Vertex variant) the run parameters `run` (from parameters())."""
  vertex = isinstance(trainer, tfx.extensions.google_cloud_ai_platform.Trainer)
  trainer.executor_spec = executor_spec.ExecutorClassSpec(VertexExecutor if vertex else Executor)
  # TFX's Trainer builds its own spec; the extra properties ride on it and the executor above takes them off.
  trainer.exec_properties.update(run)
