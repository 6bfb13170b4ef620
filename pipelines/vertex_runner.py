"""Compiles the pipeline for Vertex AI Pipelines or Kubeflow Pipelines v2 (KubeflowV2DagRunner).

Compiling is offline: no credentials, no network, nothing uploaded. Code is referenced by
import path (run_fn, executor classes) and baked into the project image, so TFX has no
module file to package. The JSON names the image, Dataflow for the Beam steps, the Vertex
Training job for the Trainer, each step's resources and the Vertex AI Endpoint blessed models
are deployed to, all from pipelines/cloud_config.py.
"""
import json
import os
from typing import Any, Dict

from pipelines import cloud_config
from pipelines import config as config_lib

TARGETS = ("vertex", "kubeflow")
KFP_MISSING = ("compiling for Vertex AI / Kubeflow needs the `kfp` extra "
               "(TFX's KubeflowV2DagRunner exists only with kfp installed): "
               "pip install 'tfx-colorize[kfp]' (make setup installs it)")


class KfpMissingError(RuntimeError):
  pass


def build_pipeline(cfg: config_lib.PipelineConfig, runtime_parameters: bool = True):
  """The one pipeline definition, configured for the cloud (Dataflow, Vertex Training, resources).

  runtime_parameters: not for Kubeflow Pipelines, whose SDK (kfp 2.5) cannot load the runtime
  parameters of the PipelineSpec 2.0 that TFX writes.
  """
  cloud = cloud_config.require(cfg)
  from kfp.pipeline_spec import pipeline_spec_pb2
  from tfx.dsl.components.base import base_component

  from pipelines import pipeline as pipeline_lib

  pipeline = pipeline_lib.from_config(
      cfg,
      # Vertex AI keeps ML Metadata itself; none is configured here.
      metadata_connection_config=None,
      beam_pipeline_args=cloud_config.beam_pipeline_args(cfg),
      vertex_training_args=cloud_config.vertex_training_args(cfg),
      embed_beam_pipeline_args=cloud_config.embed_beam_pipeline_args(cfg),
      vertex_serving_args=cloud_config.vertex_serving_args(cfg),
      runtime_parameters=runtime_parameters,
  )
  ids = {c.id for c in pipeline.components}
  unknown = sorted(set(cloud.step_resources) - ids)
  if unknown:
    raise config_lib.ConfigError(
        f"cloud.step_resources names steps the pipeline does not have: {unknown}; steps: {sorted(ids)}")
  resource_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
  for component in pipeline.components:
    if not isinstance(component, base_component.BaseComponent):
      continue  # resolvers run inside the orchestrator, not in a container
    _to_image_paths(component)
    r = cloud_config.resources_for(cloud, component.id)
    component.with_platform_config(resource_spec(cpu_limit=r.cpu, memory_limit=r.memory_gb))
  return pipeline


def compile_pipeline(cfg: config_lib.PipelineConfig, target: str, output: str,
                     allow_default_service_account: bool = False) -> Dict[str, Any]:
  """Writes the pipeline JSON for `target` to `output` and returns it.

  Without cloud.service_account the job would run as the Compute Engine default service account,
  which holds Editor on the whole project; that is refused unless allowed explicitly.

  vertex: a PipelineJob (what aiplatform.PipelineJob(template_path=...) reads).
  kubeflow: its pipelineSpec, the IR a Kubeflow Pipelines v2 backend runs.
  """
  if target not in TARGETS:
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
  from tfx.orchestration import data_types
  try:
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
  except ImportError as e:
    raise KfpMissingError(KFP_MISSING) from e
  cloud = cloud_config.require(cfg)
  if not cloud.service_account and not allow_default_service_account:
    raise config_lib.ConfigError(
        "cloud.service_account is not set: the pipeline, its Dataflow workers and training job would run as the "
        "Compute Engine default service account (Editor on the whole project). Set --service-account (docs/"
        "vertex.md step 1 creates one) or pass --allow-default-service-account")
  pipeline = build_pipeline(cfg, runtime_parameters=target == "vertex")
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
          display_name=cfg.pipeline_name, default_image=cloud.image))
  # Each runtime parameter's default is the configured value (a parameter without one fails the job).
  defaults = {value.name: value.default for component in pipeline.components
              for value in getattr(component, "exec_properties", {}).values()
              if isinstance(value, data_types.RuntimeParameter)}
  job = runner.run(pipeline, parameter_values=defaults, write_out=False)
  _keep_example_gen_resources(job["pipelineSpec"], pipeline)
  job.setdefault("labels", {}).update(cloud.labels)
  document = job if target == "vertex" else job["pipelineSpec"]
  with open(output, "w") as f:
    json.dump(document, f, indent=2, sort_keys=True)
  return document


def _keep_example_gen_resources(spec: Dict[str, Any], pipeline) -> None:
  """TFX's step builder gives a FileBasedExampleGen (CocoIngest) its pre-cache check but drops its
  platform_config (tfx/orchestration/kubeflow/v2/step_builder.py); put the step's resources back.
  """
  from google.protobuf import json_format
  from tfx.components.example_gen.component import FileBasedExampleGen
  for component in pipeline.components:
    if isinstance(component, FileBasedExampleGen) and component.platform_config:
      label = spec["components"][spec["root"]["dag"]["tasks"][component.id]["componentRef"]["name"]]["executorLabel"]
      spec["deploymentSpec"]["executors"][label]["container"].setdefault(
          "resources", json_format.MessageToDict(component.platform_config))


def _to_image_paths(component) -> None:
  """Rewrites exec properties that point into this project tree (the schema file, the
  bundled demo data) to where the image holds the same files.
  """
  for key, value in list(component.exec_properties.items()):
    if isinstance(value, str) and os.path.isabs(value) and cloud_config.in_project(value):
      component.exec_properties[key] = _image_path(value)
    elif (isinstance(getattr(value, "default", None), str) and os.path.isabs(value.default)
          and cloud_config.in_project(value.default)):
      value.default = _image_path(value.default)  # a runtime parameter's default


def _image_path(path: str) -> str:
  relative = os.path.relpath(os.path.abspath(path), cloud_config.LOCAL_PROJECT_ROOT).replace(os.sep, "/")
  return f"{cloud_config.IMAGE_PROJECT_ROOT}/{relative}"
