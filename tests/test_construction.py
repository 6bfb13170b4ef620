"""The pipeline and its custom components build as declared, without running anything.

In the style of TFX's own component_test.py files: construct with hand-made channels and
check specs, parameters and wiring. The slow end-to-end tests run what is built here.
"""
import dataclasses
import json

import pytest
from tfx import v1 as tfx
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.types import standard_artifacts

from components.ingest import component as ingest_component
from components.ingest import executor as ingest_executor
from components.ingest import spans
from components.report import component as report_component
from pipelines import config as config_lib
from pipelines import pipeline as pipeline_lib
from schemas import features

_GATE = ["ImportSchemaGen", "StatisticsGen", "ExampleValidator", "last_data_gate_verdict", "DataGate",
         "DataGateCheck"]
_IDS_BY_STAGE = {
    "ingest": ["CocoIngest"],
    "gate": ["CocoIngest", *_GATE],
    "embed": ["CocoIngest", *_GATE],  # the Embed step is there only with train.global_features: precomputed
    "train": ["CocoIngest", *_GATE, "Trainer"],
    "evaluate": ["CocoIngest", *_GATE, "Trainer", "latest_blessed_model_resolver", "NewModelCheck", "Evaluator",
                 "EvaluationReport"],
    "push": ["CocoIngest", *_GATE, "Trainer", "latest_blessed_model_resolver", "NewModelCheck", "Evaluator",
             "EvaluationReport", "ServingGate", "Pusher", "ModelCard"],
}


def _build(cfg, last_stage, **kwargs):
  return pipeline_lib.from_config(cfg, last_stage=last_stage, **kwargs)


def _by_id(pipeline):
  return {c.id: c for c in pipeline.components}


def test_stage_names_are_the_pipelines():
  assert tuple(_IDS_BY_STAGE) == config_lib.STAGES


@pytest.mark.parametrize("stage", config_lib.STAGES)
def test_each_stage_builds_exactly_its_components(tmp_path, stage):
  cfg = config_lib.from_dict({"output_root": str(tmp_path)})
  pipeline = _build(cfg, stage)
  assert sorted(c.id for c in pipeline.components) == sorted(_IDS_BY_STAGE[stage])
  assert pipeline.pipeline_info.pipeline_root == cfg.pipeline_root


def test_components_are_wired_to_each_other(tmp_path):
  cfg = config_lib.from_dict({"output_root": str(tmp_path), "train": {"epochs": 3}, "evaluate": {"grid_rows": 5}})
  parts = _by_id(_build(cfg, "push"))
  examples = parts["CocoIngest"].outputs["examples"]
  trainer, evaluator = parts["Trainer"], parts["Evaluator"]
  assert trainer.inputs["examples"] is examples
  assert trainer.inputs["schema"] is parts["ImportSchemaGen"].outputs["schema"]
  assert json.loads(trainer.exec_properties["custom_config"]) == {"train": dataclasses.asdict(cfg.train)}
  assert evaluator.inputs["examples"] is examples and evaluator.inputs["model"] is trainer.outputs["model"]
  assert evaluator.inputs["baseline_model"] is parts["latest_blessed_model_resolver"].outputs["model"]
  report = parts["EvaluationReport"]
  assert report.inputs["blessing"] is evaluator.outputs["blessing"] and report.exec_properties["grid_rows"] == 5
  pusher = parts["Pusher"]
  assert pusher.inputs["model_blessing"] is evaluator.outputs["blessing"]
  assert cfg.serving_model_dir in str(pusher.exec_properties["push_destination"])
  # The new-model check sits between the resolver and the Evaluator; the serving gate before the push.
  check = parts["NewModelCheck"]
  assert check.inputs["model"] is trainer.outputs["model"]
  assert check.inputs["baseline_model"] is parts["latest_blessed_model_resolver"].outputs["model"]
  gate = parts["ServingGate"]
  assert gate.inputs["model"] is trainer.outputs["model"]
  assert pusher.inputs["infra_blessing"] is gate.outputs["blessing"]
  assert {k: gate.exec_properties[k] for k in ("max_load_seconds", "max_request_seconds", "max_memory_mb")} == \
      dataclasses.asdict(cfg.serving_gate)
  assert parts["ModelCard"].inputs["pushed_model"] is pusher.outputs["pushed_model"]


def test_precomputed_global_features_put_embed_between_ingestion_and_training(tmp_path):
  cfg = config_lib.from_dict({"output_root": str(tmp_path),
                              "train": {"global_features": "precomputed", "weights": "none", "epochs": 3}})
  assert sorted(_by_id(_build(cfg, "embed"))) == sorted(["CocoIngest", *_GATE, "Embed"])
  parts = _by_id(_build(cfg, "push", embed_beam_pipeline_args=["--machine_type=n1-standard-8"]))
  embed = parts["Embed"]
  assert embed.inputs["examples"] is parts["CocoIngest"].outputs["examples"]
  assert parts["Trainer"].inputs["examples"] is embed.outputs["embedded_examples"]
  # The evaluation scores the served model on the ingested examples, as in live mode.
  assert parts["Evaluator"].inputs["examples"] is parts["CocoIngest"].outputs["examples"]
  # Only the weights reach the Embed step's parameters (its cache key), not the other training settings.
  assert embed.exec_properties == {"weights": "none", "batch_size": 32, "embedder_fn": "trainer.model.build_embedder"}
  assert embed.executor_spec.beam_pipeline_args == ["--machine_type=n1-standard-8"]
  assert "--machine_type=n1-standard-8" not in parts["CocoIngest"].executor_spec.beam_pipeline_args


def test_the_data_gate_checks_the_ingested_span_and_holds_back_embedding_and_training(tmp_path):
  cfg = config_lib.from_dict({"output_root": str(tmp_path), "train": {"global_features": "precomputed"},
                              "data_gate": {"max_mean_shift": 1.5, "accept": ["mean_b", "skip_share"]}})
  parts = _by_id(_build(cfg, "train"))
  examples, schema = parts["CocoIngest"].outputs["examples"], parts["ImportSchemaGen"].outputs["schema"]
  statistics = parts["StatisticsGen"].outputs["statistics"]
  assert parts["StatisticsGen"].inputs["examples"] is examples and parts["StatisticsGen"].inputs["schema"] is schema
  assert parts["ExampleValidator"].inputs == {"statistics": statistics, "schema": schema}
  gate, resolver = parts["DataGate"], parts["last_data_gate_verdict"]
  assert gate.inputs["examples"] is examples and gate.inputs["statistics"] is statistics
  assert gate.inputs["anomalies"] is parts["ExampleValidator"].outputs["anomalies"]
  assert gate.inputs["baseline"] is resolver.outputs["baseline"]
  assert resolver.exec_properties["resolver_class"] is tfx.dsl.experimental.LatestArtifactStrategy
  assert gate.exec_properties == {"max_mean_shift": 1.5, "max_spread_ratio": 2.5, "max_skip_share": 0.2,
                                  "max_bw_share": 0.25, "min_photos": 20, "accept": "mean_b,skip_share"}
  assert parts["DataGateCheck"].inputs["result"] is gate.outputs["result"]
  # An ordering, not an input: the gate's verdict is not part of their cache keys.
  for later in ("Embed", "Trainer"):
    assert parts["DataGateCheck"] in parts[later].upstream_nodes
    assert gate.outputs["result"] not in parts[later].inputs.values()


def test_vertex_training_swaps_in_the_cloud_trainer(tmp_path):
  cfg = config_lib.from_dict({"output_root": str(tmp_path)})
  ext = tfx.extensions.google_cloud_ai_platform
  args = {ext.ENABLE_VERTEX_KEY: True, ext.VERTEX_REGION_KEY: "us-central1", ext.TRAINING_ARGS_KEY: {"project": "p"}}
  trainer = _by_id(_build(cfg, "train", vertex_training_args=args))["Trainer"]
  assert isinstance(trainer, ext.Trainer)
  assert json.loads(trainer.exec_properties["custom_config"])[ext.VERTEX_REGION_KEY] == "us-central1"


def test_an_unknown_stage_is_refused(tmp_path):
  cfg = config_lib.from_dict({"output_root": str(tmp_path)})
  with pytest.raises(ValueError, match="last_stage must be one of"):
    _build(cfg, "deploy")


def test_coco_ingest_is_a_file_based_example_gen_over_one_snapshot():
  ingest = ingest_component.CocoIngest(
      input_base="/data/coco", snapshot_pattern="span-{SPAN}", snapshot_files="*/*", span=4, max_images=7,
      categories="dog,cat", test_fraction=0.2, eval_fraction=0.1, keep_grayscale=True)
  # What the Vertex / Kubeflow V2 compiler keys its pre-cache check on, and TFX's driver locally.
  assert isinstance(ingest, FileBasedExampleGen) and issubclass(ingest.driver_class, example_gen_driver.FileBasedDriver)
  properties = dict(ingest.exec_properties)
  # ExampleGen's protos as the drivers read them: JSON.
  assert json.loads(properties.pop("input_config")) == {"splits": [{"name": "photos", "pattern": "span-{SPAN}/*/*"}]}
  assert json.loads(properties.pop("range_config")) == {"static_range": {"start_span_number": 4, "end_span_number": 4}}
  assert properties == {"input_base": "/data/coco", "max_images": 7, "categories": "dog,cat", "test_fraction": 0.2,
                        "eval_fraction": 0.1, "keep_grayscale": 1, "feature_spec": features.spec_fingerprint(),
                        "snapshot_pattern": "span-{SPAN}"}
  assert ingest.outputs["examples"].type == standard_artifacts.Examples
  assert ingest.inputs == {}
  assert ingest.executor_spec.executor_class is ingest_executor.Executor
  assert "Beam" in type(ingest.executor_spec).__name__
  newest = ingest_component.CocoIngest(
      input_base="/data/coco", snapshot_pattern="", snapshot_files="*/*", span=-1, max_images=0, categories="",
      test_fraction=0.2, eval_fraction=0.1, keep_grayscale=False)
  assert newest.exec_properties["range_config"] is None
  with pytest.raises(ValueError, match="needs {SPAN}"):
    ingest_component.CocoIngest(
        input_base="/data/coco", snapshot_pattern="weekly", snapshot_files="*/*", span=-1, max_images=0,
        categories="", test_fraction=0.2, eval_fraction=0.1, keep_grayscale=False)


def test_the_ingestion_cache_key_follows_the_feature_spec(monkeypatch, tmp_path):
  """After an upgrade that changes what an example holds, cached Examples are not reused; else they are."""
  import tensorflow as tf
  from tfx.orchestration import metadata
  from tfx.orchestration.portable import cache_utils
  from tfx.proto.orchestration import pipeline_pb2

  store = metadata.Metadata(metadata.sqlite_metadata_connection_config(str(tmp_path / "mlmd.sqlite")))

  def cache_key():  # TFX's own (local orchestrators); Vertex's also covers every parameter
    ingest = ingest_component.CocoIngest(
        input_base="/data/coco", snapshot_pattern="", snapshot_files="*/*", span=-1, max_images=0, categories="",
        test_fraction=0.2, eval_fraction=0.1, keep_grayscale=False)
    return cache_utils.get_cache_context(store, pipeline_pb2.PipelineNode(), pipeline_pb2.PipelineInfo(id="p"),
                                         parameters=ingest.exec_properties).name

  with store:
    keys = [cache_key(), cache_key()]
    spec = features.feature_spec
    monkeypatch.setattr(features, "feature_spec", lambda: {**spec(), "noise": tf.io.FixedLenFeature([], tf.float32)})
    keys.append(cache_key())
    monkeypatch.undo()
    monkeypatch.setattr(features, "AB_OFFSET", 127.0)  # an encoding, same keys
    keys.append(cache_key())
  assert keys[0] == keys[1] and len(set(keys)) == 3


def test_trainer_reads_the_latest_spans_and_the_evaluator_this_run_s_test_split(tmp_path):
  cfg = config_lib.from_dict({"output_root": str(tmp_path), "ingest": {"snapshot": "span-{SPAN}", "train_spans": 3}})
  parts = _by_id(_build(cfg, "evaluate"))
  resolver = parts["latest_spans_resolver"]
  assert resolver.exec_properties["resolver_class"] is spans.LatestSpansStrategy
  assert resolver.exec_properties["source_uri"]["range_config"].rolling_range.num_spans == 3
  assert parts["CocoIngest"] in resolver.upstream_nodes
  assert parts["Trainer"].inputs["examples"] is resolver.outputs["examples"]
  assert parts["Evaluator"].inputs["examples"] is parts["CocoIngest"].outputs["examples"]


def test_evaluation_report_spec_with_hand_made_channels():
  channel = lambda artifact_type: tfx.dsl.Channel(type=artifact_type)  # noqa: E731
  report = report_component.EvaluationReport(
      examples=channel(standard_artifacts.Examples), model=channel(standard_artifacts.Model),
      evaluation=channel(standard_artifacts.ModelEvaluation), blessing=channel(standard_artifacts.ModelBlessing),
      grid_rows=3)
  assert report.exec_properties == {"grid_rows": 3}
  assert report.outputs["report"].type == report_component.ColorizationReport
  assert set(report.inputs) == {"examples", "model", "evaluation", "blessing"}
  with pytest.raises(TypeError):
    report_component.EvaluationReport(
        examples=channel(standard_artifacts.Model), model=channel(standard_artifacts.Model),
        evaluation=channel(standard_artifacts.ModelEvaluation), blessing=channel(standard_artifacts.ModelBlessing))


def test_every_custom_artifact_type_is_importable_by_its_type_name(tmp_path):
  # TFX's Vertex AI entrypoint imports an artifact class by its TYPE_NAME: a name that is no
  # import path fails the step on Vertex, after the run has started.
  import importlib
  cfg = config_lib.from_dict({"output_root": str(tmp_path), "train": {"global_features": "precomputed"}})
  types = {channel.type for component in _build(cfg, "push").components
           for channel in component.outputs.values()}
  custom = [t for t in types if not t.__module__.startswith("tfx.")]
  assert custom
  for artifact_type in custom:
    module, _, name = artifact_type.TYPE_NAME.rpartition(".")
    assert getattr(importlib.import_module(module), name) is artifact_type, artifact_type.TYPE_NAME
