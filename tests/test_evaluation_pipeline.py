"""The whole pipeline on real COCO photos: ingest -> train -> evaluate -> push, then lineage.

Two LocalDagRunner runs share one SQLite ML Metadata store (module-scoped, minutes each):
  1. a generous MSE bound: the model is blessed and pushed;
  2. the same inputs with the bound tightened below any real MSE: ingestion and training
     are cache hits (no new Examples or Model), the model is not blessed, nothing is pushed.
"""
import contextlib
import dataclasses
import io
import json
import os

from click.testing import CliRunner
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.utils import path_utils

from cli import main as cli
from components import metrics
from components import report as report_lib
from components.report import grid
from lineage import summary
from pipelines import config as config_lib
from pipelines import local_runner
from schemas import features
from schemas import signatures

pytestmark = pytest.mark.slow

GRID_ROWS = 3


@dataclasses.dataclass
class Run:
  cfg: config_lib.PipelineConfig
  outputs: dict          # artifact type name -> the run's artifact of that type
  counts: dict           # artifact type name -> how many the store holds after the run
  summary: str           # what `colorize run` printed


def _run(cfg) -> Run:
  local_runner.run(cfg)
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    summary.print_run_summary(cfg)
  store = summary.open_store(cfg.metadata_path)
  types = summary.artifact_type_names(store)
  _, outputs = summary.latest_run_outputs(store, cfg.pipeline_name)
  counts = {}
  for artifact in store.get_artifacts():
    counts[types[artifact.type_id]] = counts.get(types[artifact.type_id], 0) + 1
  return Run(cfg, {types[a.type_id]: a for _, a in outputs}, counts, printed.getvalue())


@pytest.fixture(scope="module")
def runs(coco128, tmp_path_factory):
  root = tmp_path_factory.mktemp("e2e")
  cfg = config_lib.from_dict({
      "output_root": str(root),
      "pipeline_name": "e2e",
      "ingest": {"data_root": str(coco128)},
      "train": {"epochs": 1, "steps_per_epoch": 12, "eval_steps": 1, "batch_size": 4, "weights": "none"},
      "evaluate": {"mse_upper_bound": 0.05, "grid_rows": GRID_ROWS},
  })
  first = _run(cfg)
  tightened = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, mse_upper_bound=1e-6))
  second = _run(tightened)
  return first, second


def _report(run: Run) -> dict:
  with open(os.path.join(run.outputs[report_lib.ARTIFACT_TYPE].uri, report_lib.REPORT_FILE)) as f:
    return json.load(f)


def _split(examples, split):
  uri = os.path.join(examples.uri, f"Split-{split}")
  files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_first_run_blesses_and_pushes_a_versioned_copy(runs):
  first, _ = runs
  assert first.outputs["ModelBlessing"].custom_properties["blessed"].int_value == 1
  pushed = first.outputs["PushedModel"]
  assert pushed.custom_properties["pushed"].int_value == 1
  destination = pushed.custom_properties["pushed_destination"].string_value
  assert os.path.dirname(destination) == first.cfg.serving_model_dir
  assert os.path.isfile(os.path.join(destination, "saved_model.pb"))
  assert "pushed to " + destination in first.summary


def test_evaluator_mse_and_baselines_equal_numpy_reference(runs):
  first, _ = runs
  examples, model = first.outputs["Examples"], first.outputs["Model"]
  test, train = _split(examples, features.TEST_SPLIT), _split(examples, features.TRAIN_SPLIT)
  loaded = tf.saved_model.load(path_utils.serving_model_path(model.uri))
  predict = loaded.signatures[signatures.EXAMPLES_SIGNATURE]
  predicted = np.concatenate([
      predict(**{signatures.EXAMPLES_INPUT: tf.constant(test[i:i + 8])})[signatures.AB_OUTPUT].numpy()
      for i in range(0, len(test), 8)]).astype(np.float64)

  def ab(records):
    return np.stack([features.decode_ab_numpy(
        tf.train.Example.FromString(r).features.feature[features.AB_KEY].bytes_list.value[0]) for r in records]
    ) / features.AB_SCALE

  truth, train_ab = ab(test), ab(train)
  mse = np.mean((truth - predicted) ** 2)
  no_colour = np.mean(truth ** 2)
  mean_ab = np.mean((truth - train_ab.reshape(-1, 2).mean(axis=0)) ** 2)

  tfma_values = {kv.key.name: kv.value.double_value.value
                 for m in tfma.load_metrics(first.outputs["ModelEvaluation"].uri)
                 for kv in m.metric_keys_and_values if not kv.key.is_diff and kv.key.model_name in ("", "candidate")}
  assert tfma_values[metrics.AB_MSE] == pytest.approx(mse, rel=1e-4)
  assert tfma_values[metrics.NO_COLOUR_MSE] == pytest.approx(no_colour, rel=1e-4)
  assert tfma_values[metrics.GAIN_OVER_NO_COLOUR] == pytest.approx(no_colour - mse, rel=1e-3)

  report = _report(first)
  assert report["test_images"] == len(test)
  assert report["mse"] == pytest.approx(mse, rel=1e-4)
  assert report["no_colour_mse"] == pytest.approx(no_colour, rel=1e-4)
  assert report["mean_ab_mse"] == pytest.approx(mean_ab, rel=1e-4)
  assert report["tfma"][metrics.AB_MSE] == pytest.approx(report["mse"], rel=1e-4)
  assert 0 < report["ssim"] <= 1 and report["psnr"] > 10
  assert report["colorfulness_truth"] > 10
  for line in (f"test MSE {mse:.5f}", f"no-colour baseline {no_colour:.5f}", f"mean-ab baseline {mean_ab:.5f}",
               "PSNR", "SSIM", "colorfulness", "colorize lineage"):
    assert line in first.summary


def test_grid_png_decodes_with_one_row_per_test_image(runs):
  first, _ = runs
  path = _report(first)["grid"]
  assert path in first.summary
  with open(path, "rb") as f:
    image = Image.open(io.BytesIO(f.read()))
    image.load()
  assert image.format == "PNG"
  assert image.size == grid.expected_size(GRID_ROWS, features.IMAGE_SIZE)


def test_rerun_with_unchanged_inputs_reuses_examples_and_model(runs):
  first, second = runs
  assert second.counts["Examples"] == first.counts["Examples"] == 1
  assert second.counts["Model"] == first.counts["Model"] == 1
  assert second.outputs["Examples"].id == first.outputs["Examples"].id
  assert second.outputs["Model"].id == first.outputs["Model"].id


def test_tightened_bound_blocks_blessing_and_push(runs):
  first, second = runs
  assert second.outputs["ModelBlessing"].custom_properties["blessed"].int_value == 0
  assert second.outputs["PushedModel"].custom_properties["pushed"].int_value == 0
  assert os.listdir(first.cfg.serving_model_dir) == [
      os.path.basename(first.outputs["PushedModel"].custom_properties["pushed_destination"].string_value)]
  report = _report(second)
  assert not report["blessed"]
  assert report["baseline_model_id"] == first.outputs["Model"].id   # compared with the last blessed model
  assert any("above the bound 1e-06" in f for f in report["blessing_failures"])
  assert "nothing pushed" in second.summary and "above the bound" in second.summary


def _lineage(cfg, *args):
  result = CliRunner().invoke(cli.main, ["lineage", "--metadata-file", cfg.metadata_path, *args],
                              catch_exceptions=False)
  assert result.exit_code == 0, result.output
  return result.output


def test_lineage_of_pushed_model_reaches_examples_and_input(runs, coco128):
  first, second = runs
  graph = json.loads(_lineage(second.cfg, "model", "--format", "json"))
  assert graph["start"] == first.outputs["PushedModel"].id       # the latest PUSHED model, not run 2's
  by_id = {a["id"]: a for a in graph["artifacts"]}
  assert first.outputs["Examples"].id in by_id
  components = {e["component"]: e for e in graph["executions"]}
  assert components["Trainer"]["inputs"]["examples"] == [first.outputs["Examples"].id]
  assert components["CocoIngest"]["parameters"]["input_base"] == str(coco128)
  assert components["Evaluator"]["outputs"]["blessing"] == [first.outputs["ModelBlessing"].id]

  table = _lineage(second.cfg)
  assert f"Examples #{first.outputs['Examples'].id} ingested by CocoIngest" in table
  assert f"from {coco128}" in table
  assert f"Model #{first.outputs['Model'].id} trained by Trainer" in table
  assert f"test MSE {_report(first)['mse']:.5f}" in table

  dot = _lineage(second.cfg, "model", "--format", "dot")
  assert dot.startswith("digraph lineage {") and f"a{first.outputs['Examples'].id} -> e" in dot


def test_lineage_lists_runs_and_artifacts(runs):
  _, second = runs
  assert len(_lineage(second.cfg, "runs").strip().splitlines()) == 2
  models = _lineage(second.cfg, "artifacts", "Model").strip().splitlines()
  assert len(models) == 1 and models[0].startswith(f"#{second.outputs['Model'].id} ")
  counts = json.loads(_lineage(second.cfg, "artifacts", "--format", "json"))
  assert counts["PushedModel"] == 2 and counts["Examples"] == 1


def test_lineage_options_work_before_the_subcommand_too(runs, tmp_path):
  _, second = runs
  assert json.loads(_lineage(second.cfg, "--format", "json"))["start"] == json.loads(
      _lineage(second.cfg, "model", "--format", "json"))["start"]
  assert json.loads(_lineage(second.cfg, "--format", "json", "runs"))[-1]["run"]
  for args in (["--format", "png", "--output", str(tmp_path / "a.png")],
               ["model", "--format", "png", "--output", str(tmp_path / "b.png")]):
    _lineage(second.cfg, *args)
  a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
  assert a.format == "PNG" and a.size == b.size and a.tobytes() == b.tobytes()
  graph = json.loads(_lineage(second.cfg, "--format", "json"))
  # One box or ellipse a node, in columns by depth: the picture holds them all.
  assert a.width >= 4 * 200 and a.height >= 46
  assert len(graph["artifacts"]) + len(graph["executions"]) > 8
