"""The colorization pipeline: ingest -> data gate -> [embed] -> train -> new model? -> evaluate -> serving gate ->
push -> card.

With train.global_features: precomputed, an Embed step between ingestion and training
adds Inception-ResNet-v2's class vector to the examples once, and the Trainer reads
those; the Evaluator and the report keep scoring the ingested test examples with the
full served model, so their numbers mean the same in both modes.

One `create_pipeline` serves every runner (local, Kubeflow, Vertex AI): runners only
build configuration and call it. Code is referenced by import path (`run_fn`,
executor classes), never by `module_file`, so the same definition runs from the
installed package locally and from the project image in the cloud.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence

from tfx import v1 as tfx

from components import run_parameters
from components.embed.component import Embed
from components.endpoint_rollout.component import EndpointPusher
from components.ingest import spans
from components.ingest.component import CocoIngest
from components.model_card.component import ModelCard
from components.new_model.component import NewModelCheck
from components.report.component import EvaluationReport
from components.serving_gate.component import ServingGate
from pipelines import config as config_lib
from pipelines import data_gate as data_gate_lib
from pipelines import evaluation
from schemas import features
from schemas import gates
from trainer import settings

ENDPOINT_PUSHER = "EndpointPusher"
# Runtime parameters of a compiled template (`submit --param`, schedules, `rehearse --param`).
RUNTIME_PARAMETERS = ("data_root", *run_parameters.TYPES)


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    ingest: config_lib.IngestConfig,
    train: settings.TrainConfig,
    evaluate: config_lib.EvalConfig,
    data_gate: config_lib.DataGateConfig,
    serving_gate: config_lib.ServingGateConfig,
    serving_model_dir: str,
    metadata_connection_config=None,
    beam_pipeline_args: Sequence[str] = (),
    enable_cache: bool = True,
    last_stage: str = "push",
    vertex_training_args: Optional[Dict[str, Any]] = None,
    embed_beam_pipeline_args: Sequence[str] = (),
    vertex_serving_args: Optional[Dict[str, Any]] = None,
    runtime_parameters: bool = False,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline up to and including `last_stage` (one of config_lib.STAGES).

  vertex_training_args: custom_config entries (built by pipelines/cloud_config.py) that run
  the Trainer as a Vertex AI Training job on the project image (GPUs, worker pools), as
  TFX's penguin example does; None trains inside the pipeline's own process/container.
  embed_beam_pipeline_args: Beam arguments added for the Embed step only (Dataflow GPU
  workers: pipelines/cloud_config.py).
  vertex_serving_args: custom_config (pipelines/cloud_config.py) of the EndpointPusher (TFX's Vertex
  Pusher with components/endpoint_rollout's rollout), which then also deploys each blessed model to a
  Vertex AI Endpoint once it answered there; None deploys nowhere.
  runtime_parameters: what changes from run to run (RUNTIME_PARAMETERS) becomes a typed runtime
  parameter of the compiled template, defaulting to the configured value (Vertex / Kubeflow v2 only).
  """
  if last_stage not in config_lib.STAGES:
    raise ValueError(f"last_stage must be one of {config_lib.STAGES}, got {last_stage!r}")
  stages = config_lib.STAGES[:config_lib.STAGES.index(last_stage) + 1]

  run = run_parameters.parameters(train) if runtime_parameters else {}
  if runtime_parameters:
    data_root = tfx.dsl.experimental.RuntimeParameter(name="data_root", ptype=str, default=data_root)
  ingest_component = CocoIngest(
      input_base=data_root,
      snapshot_pattern=ingest.snapshot,
      snapshot_files=ingest.snapshot_files,
      span=ingest.span,
      max_images=ingest.max_images,
      categories=",".join(ingest.categories),
      test_fraction=ingest.test_fraction,
      eval_fraction=ingest.eval_fraction,
      keep_grayscale=ingest.keep_grayscale,
  )
  components: List = [ingest_component]

  train_examples = ingest_component.outputs["examples"]
  if "gate" in stages:
    schema_importer = tfx.components.ImportSchemaGen(schema_file=features.SCHEMA_FILE)
    gate_steps, gate_check = data_gate_lib.steps(train_examples, schema_importer.outputs["schema"], data_gate)
    components += [schema_importer, *gate_steps]

  if "embed" in stages and train.global_features == settings.PRECOMPUTED:
    # Only the weights reach the Embed step: other training settings leave its cache key alone.
    embed = Embed(examples=train_examples, weights=run.get("weights", train.weights))
    embed.add_upstream_node(gate_check)
    if embed_beam_pipeline_args:
      embed = embed.with_beam_pipeline_args(list(embed_beam_pipeline_args))
    train_examples = embed.outputs["embedded_examples"]
    components.append(embed)

  if "train" in stages:
    if ingest.train_spans > 1:
      if train.global_features == settings.PRECOMPUTED:
        raise ValueError("train.global_features: precomputed embeds the newest span only; "
                         "use ingest.train_spans: 1 or train.global_features: live")
      # Accumulating data: every ingested span so far (this run's included), the newest N of them.
      spans_resolver = tfx.dsl.Resolver(
          strategy_class=spans.LatestSpansStrategy,
          config={"range_config": tfx.proto.RangeConfig(
              rolling_range=tfx.proto.RollingRange(num_spans=ingest.train_spans))},
          examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                   producer_component_id=ingest_component.id),
      ).with_id("latest_spans_resolver")
      spans_resolver.add_upstream_node(ingest_component)
      train_examples = spans_resolver.outputs["examples"]
      components.append(spans_resolver)
    trainer_cls = (tfx.extensions.google_cloud_ai_platform.Trainer if vertex_training_args
                   else tfx.components.Trainer)
    trainer = trainer_cls(
        run_fn="trainer.task.run_fn",
        examples=train_examples,
        schema=schema_importer.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config={"train": dataclasses.asdict(train), **(vertex_training_args or {})},
    )
    if run:
      run_parameters.add(trainer, run)
    trainer.add_upstream_node(gate_check)  # an order, not an input: the Trainer's cache key is unchanged
    components.append(trainer)

  if "evaluate" in stages:
    # The last blessed model is the baseline the candidate must not fall behind.
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    # An unchanged candidate (that very model, or its bytes) stops here: it is neither compared
    # with itself nor pushed again (components/new_model/component.py says why a gate).
    new_model_check = NewModelCheck(model=trainer.outputs["model"], baseline_model=baseline_resolver.outputs["model"])
    components += [baseline_resolver, new_model_check]
    with tfx.dsl.Cond(new_model_check.outputs["verdict"].future()[0].custom_property(gates.PASSED) == 1):
      components += _evaluate_and_push(
          stages, ingest_component, train_examples, schema_importer, trainer,
          baseline_resolver.outputs["model"], new_model_check, evaluate, serving_gate,
          serving_model_dir, vertex_serving_args)

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args),
  )


def _evaluate_and_push(stages, ingest_component, train_examples, schema_importer, trainer, baseline_model,
                       new_model_check, evaluate, serving_gate, serving_model_dir, vertex_serving_args) -> List:
  """The steps that run only for a new model: evaluate, and with "push", the serving gate, push, card."""
  evaluator = tfx.components.Evaluator(
      examples=ingest_component.outputs["examples"],
      model=trainer.outputs["model"],
      baseline_model=baseline_model,
      schema=schema_importer.outputs["schema"],
      example_splits=[features.TEST_SPLIT],
      eval_config=evaluation.eval_config(evaluate),
  )
  report = EvaluationReport(
      examples=ingest_component.outputs["examples"],
      model=trainer.outputs["model"],
      evaluation=evaluator.outputs["evaluation"],
      blessing=evaluator.outputs["blessing"],
      grid_rows=evaluate.grid_rows,
  )
  if "push" not in stages:
    return [evaluator, report]
  # InfraValidator's job: the SavedModel, loaded as serving loads it, answers real photos in budget.
  gate = ServingGate(
      model=trainer.outputs["model"],
      max_load_seconds=serving_gate.max_load_seconds,
      max_request_seconds=serving_gate.max_request_seconds,
      max_memory_mb=serving_gate.max_memory_mb,
  )
  # Blessed and servable models only, each in a new versioned subdirectory of serving_model_dir.
  pusher = tfx.components.Pusher(
      model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      infra_blessing=gate.outputs["blessing"],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
  )
  card = ModelCard(
      examples=ingest_component.outputs["examples"],
      train_examples=train_examples,
      model=trainer.outputs["model"],
      model_run=trainer.outputs["model_run"],
      report=report.outputs["report"],
      blessing=evaluator.outputs["blessing"],
      infra_blessing=gate.outputs["blessing"],
      new_model=new_model_check.outputs["verdict"],
      pushed_model=pusher.outputs["pushed_model"],
  )
  steps = [evaluator, report, gate, pusher, card]
  if vertex_serving_args:
    steps.append(EndpointPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=gate.outputs["blessing"],
        custom_config=vertex_serving_args,
    ).with_id(ENDPOINT_PUSHER))
  return steps


def from_config(cfg: config_lib.PipelineConfig, **runner_args) -> tfx.dsl.Pipeline:
  """create_pipeline with every input the config holds.

  A runner adds what only it knows: its metadata connection, Beam arguments, Vertex
  training, the last stage.
  """
  return create_pipeline(
      pipeline_name=cfg.pipeline_name,
      pipeline_root=cfg.pipeline_root,
      data_root=cfg.ingest.data_root,
      ingest=cfg.ingest,
      train=cfg.train,
      evaluate=cfg.evaluate,
      data_gate=cfg.data_gate,
      serving_gate=cfg.serving_gate,
      serving_model_dir=cfg.serving_model_dir,
      enable_cache=cfg.enable_cache,
      **runner_args,
  )
