"""The whole pipeline on real COCO photos: ingest -> train -> evaluate -> push, then lineage.

Three runs share one SQLite ML Metadata store (module-scoped fixtures, minutes each):
  1. `colorize run --cpu-replicas 2` (LocalDagRunner, the standard TFX Trainer calling
     trainer.task.run_fn under a 2-replica MirroredStrategy) is killed with kill -9 in the
     middle of training;
  2. run again, it closes the killed execution and resumes training in a new one (a third
     `colorize run` started meanwhile is refused at once); a generous MSE bound: the model
     is blessed and pushed;
  3. the same inputs again (with the bound tightened below any real MSE, which does not matter
     now): ingestion and training are cache hits (no new Examples or Model), the new-model check
     finds the Model is the latest blessed one, and the Evaluator, the serving gate, the Pusher
     and the model card are skipped: nothing is compared with itself, nothing is pushed twice.
"""
import base64
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.utils import path_utils

from cli import main as cli
from components import metrics
from components import model_card
from components import new_model
from components import report as report_lib
from components.report import grid
from lineage import summary
from pipelines import config as config_lib
from pipelines import local_runner
from schemas import artifact_files
from schemas import features
from schemas import gates
from schemas import signatures
from serving import photos
from trainer import task

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLORIZE = [sys.executable, "-c", "from cli.main import main; main()"]  # the console script's entry point
GRID_ROWS = 3
TRAIN = {"weights": "none", "epochs": 2, "steps_per_epoch": 3, "batch_size": 2, "eval_steps": 1,
         "checkpoint_steps": 1}
TOTAL_STEPS = TRAIN["epochs"] * TRAIN["steps_per_epoch"]


@dataclasses.dataclass
class Run:
  cfg: config_lib.PipelineConfig
  outputs: dict          # artifact type name -> the run's artifact of that type
  counts: dict           # artifact type name -> how many the store holds after the run
  summary: str           # what `colorize run` printed


@dataclasses.dataclass
class Interrupted:
  """The run killed during training, as the kill left it, and the runs started after it."""
  config_file: pathlib.Path
  killed: metadata_store_pb2.Execution   # its Trainer execution, read right after the kill
  killed_model_dir_existed: bool
  resumer_pid: int                       # the second `colorize run`
  refused: subprocess.CompletedProcess   # the third, started while the second ran
  resumed: Run


def _outputs(cfg, printed: str) -> Run:
  store = summary.open_store(cfg.metadata_path)
  types = summary.artifact_type_names(store)
  _, outputs = summary.latest_run_outputs(store, cfg.pipeline_name)
  counts = {}
  for artifact in store.get_artifacts():
    counts[types[artifact.type_id]] = counts.get(types[artifact.type_id], 0) + 1
  return Run(cfg, {types[a.type_id]: a for _, a in outputs}, counts, printed)


def _run(cfg) -> Run:
  local_runner.run(cfg)
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    summary.print_run_summary(cfg)
  return _outputs(cfg, printed.getvalue())


def _saved_steps(resume_root: pathlib.Path):
  return sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in resume_root.glob("*/ckpt-*.index"))


def _kill_at_first_checkpoint(process, resume_root, minutes):
  """kill -9 `process` as soon as it has saved resume state under resume_root."""
  deadline = time.monotonic() + 60 * minutes
  while not _saved_steps(resume_root):
    assert process.poll() is None, f"the first run ended before it could be killed:\n{process.stdout.read()[-3000:]}"
    assert time.monotonic() < deadline, f"no checkpoint within {minutes} minutes"
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.communicate()


@pytest.fixture(scope="module")
def interrupted(coco128, tmp_path_factory) -> Interrupted:
  root = tmp_path_factory.mktemp("e2e")
  config_file = root / "config.json"
  config_file.write_text(json.dumps({
      "output_root": str(root / "runs"),
      "pipeline_name": "e2e",
      "ingest": {"data_root": str(coco128)},
      "train": TRAIN,
      "evaluate": {"mse_upper_bound": 0.05, "grid_rows": GRID_ROWS},
  }))
  cfg = config_lib.load(str(config_file))
  command = [*COLORIZE, "run", "--config", str(config_file), "--cpu-replicas", "2"]
  trainer_dir = pathlib.Path(cfg.pipeline_root) / "Trainer"

  first = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  _kill_at_first_checkpoint(first, trainer_dir / "resume", minutes=15)
  store = summary.open_store(cfg.metadata_path)
  [killed] = [e for e in store.get_executions() if summary.component_id(store, e.id) == "Trainer"]
  killed_model_dir_existed = (trainer_dir / "model" / str(killed.id)).is_dir()

  second = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  while not local_runner.store_in_use(cfg.metadata_path):
    assert second.poll() is None, second.stdout.read()[-5000:]
    time.sleep(0.2)
  refused = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300, check=False)
  log, _ = second.communicate(timeout=1800)
  assert second.returncode == 0, log[-5000:]
  return Interrupted(config_file, killed, killed_model_dir_existed, second.pid, refused, _outputs(cfg, log))


@pytest.fixture(scope="module")
def runs(interrupted):
  first = interrupted.resumed
  tightened = dataclasses.replace(first.cfg, evaluate=dataclasses.replace(first.cfg.evaluate, mse_upper_bound=1e-6))
  return first, _run(tightened)


def _report(run: Run) -> dict:
  with open(os.path.join(run.outputs[report_lib.ARTIFACT_TYPE].uri, report_lib.REPORT_FILE)) as f:
    return json.load(f)


def _split(examples, split):
  uri = os.path.join(examples.uri, f"Split-{split}")
  files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_each_step_says_when_it_starts_and_how_it_ended(interrupted):
  # The resumed run: the killed run's finished steps come from the cache, the Trainer runs again.
  log = interrupted.resumed.summary
  steps = re.findall(r"^\[ *(\d+)/(\d+)\] (\w+): (.*)$", log, flags=re.MULTILINE)
  started = [name for _, _, name, what in steps if what == "started"]
  ended = {name: what for _, _, name, what in steps if re.match(r"(ran|from the cache|done) in ", what)}
  assert started and set(started) == set(ended), log[-3000:]
  assert ended["CocoIngest"].startswith("from the cache in "), ended
  assert re.match(r"ran in .* \(execution \d+\)$", ended["Trainer"]), ended
  assert int(steps[-1][0]) == int(steps[-1][1])  # numbered to the last step
  assert re.search(r"\] Trainer: Resuming from .* at step \d+", log)  # the Trainer's own line


def test_a_run_started_while_another_runs_is_refused_at_once(interrupted):
  refused = interrupted.refused
  assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr[-3000:]
  assert refused.stderr.startswith(f"Error: another colorize run (pid {interrupted.resumer_pid} on ")


def test_killed_training_is_closed_and_resumed_in_a_new_execution(interrupted):
  assert interrupted.killed.last_known_state == metadata_store_pb2.Execution.RUNNING  # what TFX leaves behind
  assert interrupted.killed_model_dir_existed
  resumed = interrupted.resumed
  model_run = pathlib.Path(resumed.outputs["ModelRun"].uri)
  trained = json.loads((model_run / task.SUMMARY_FILE).read_text())
  assert trained["strategy"] == "MirroredStrategy" and trained["replicas"] == 2 and trained["global_batch"] == 4
  assert 1 <= trained["resumed_from_step"] < trained["final_step"] == TOTAL_STEPS
  saved_model = photos.resolve_model_dir(pathlib.Path(resumed.outputs["Model"].uri))
  assert "colorize_image" in tf.saved_model.load(str(saved_model)).signatures
  # TensorBoard: the resumed run logged the epochs it ran, with the image triplets.
  tags = {v.tag for events in model_run.rglob("events.out.tfevents.*")
          for event in tf.compat.v1.train.summary_iterator(str(events)) for v in event.summary.value}
  assert {"epoch_loss", "train_loss_running_mean", "gray | predicted | truth"} <= tags, tags

  # The killed execution is closed, not left RUNNING; only the published folders remain.
  store = summary.open_store(resumed.cfg.metadata_path)
  [killed] = store.get_executions_by_id([interrupted.killed.id])
  assert killed.last_known_state == metadata_store_pb2.Execution.CANCELED
  assert "interrupted" in killed.custom_properties["__execution_result__"].string_value
  trainer_dir = pathlib.Path(resumed.cfg.pipeline_root) / "Trainer"
  assert [p.name for p in (trainer_dir / "model").iterdir()] == [model_run.name]
  assert [p.name for p in (trainer_dir / "model_run").iterdir()] == [model_run.name]
  assert str(killed.id) not in [p.name for p in (trainer_dir / ".system" / "executor_execution").iterdir()]
  assert not any((trainer_dir / ".system" / "stateful_working_dir").iterdir())
  assert not any((trainer_dir / "resume").iterdir())
  runs = subprocess.run([*COLORIZE, "lineage", "--config", str(interrupted.config_file), "runs", "--format", "json"],
                        capture_output=True, text=True, check=True)
  assert [r["status"] for r in json.loads(runs.stdout)][:2] == ["interrupted", "complete"]


def test_first_run_blesses_and_pushes_a_versioned_copy(runs):
  first, _ = runs
  assert first.outputs["ModelBlessing"].custom_properties["blessed"].int_value == 1
  pushed = first.outputs["PushedModel"]
  assert pushed.custom_properties["pushed"].int_value == 1
  destination = pushed.custom_properties["pushed_destination"].string_value
  assert os.path.dirname(destination) == first.cfg.serving_model_dir
  assert os.path.isfile(os.path.join(destination, "saved_model.pb"))
  assert "pushed to " + destination in first.summary
  # The Trainer recorded its model's files; the pushed copy holds them (what restores a damaged baseline), beside
  # the model card.
  model = first.outputs["Model"]
  recorded = artifact_files.check(model.uri, "the Model", artifact_files.model_files("Format-Serving"))
  pushed = artifact_files.digests(destination, "**")
  assert recorded and all(pushed[name[len("Format-Serving/"):]] == digest for name, digest in recorded.items())


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


def test_unchanged_rerun_is_not_evaluated_against_itself_and_pushes_nothing(runs):
  first, second = runs
  model_id = first.outputs["Model"].id
  check = second.outputs[new_model.ARTIFACT_TYPE]
  assert check.custom_properties[gates.PASSED].int_value == 0
  assert check.custom_properties[gates.VERDICT].string_value.startswith(
      f"unchanged: Model #{model_id} is the latest blessed model itself")
  # Skipped, not run: no blessing, serving verdict, push or card of this run.
  assert not {"ModelBlessing", "InfraBlessing", "PushedModel", model_card.ARTIFACT_TYPE} & set(second.outputs)
  assert second.counts["PushedModel"] == 1 and second.counts["ModelBlessing"] == 1
  assert os.listdir(first.cfg.serving_model_dir) == [
      os.path.basename(first.outputs["PushedModel"].custom_properties["pushed_destination"].string_value)]
  lines = second.summary.splitlines()
  for step in ("CocoIngest", "Trainer"):
    assert any(l.split()[:2] == [step, "cached"] for l in lines), second.summary
  for step in ("Evaluator", "ServingGate", "Pusher", "ModelCard"):
    assert any(l.split()[:2] == [step, "skipped"] and "unchanged" in l for l in lines), second.summary
  assert any(l.split()[:2] == ["latest_blessed_model_resolver", "resolved"] and f"Model #{model_id}" in l
             for l in lines), second.summary
  assert lines[-1] == ("Nothing pushed: NewModelCheck: " + check.custom_properties[gates.VERDICT].string_value)


def test_no_evaluation_ever_took_its_candidate_as_baseline(runs):
  _, second = runs
  store = summary.open_store(second.cfg.metadata_path)
  evaluations = [e for e in store.get_executions() if summary.component_id(store, e.id) == "Evaluator"]
  assert evaluations
  for e in evaluations:
    inputs = {}
    for ev in store.get_events_by_execution_ids([e.id]):
      if ev.type == metadata_store_pb2.Event.INPUT:
        inputs.setdefault(ev.path.steps[0].key, set()).add(ev.artifact_id)
    assert not inputs["model"] & inputs.get("baseline_model", set()), inputs


def test_serving_gate_served_the_model_in_a_clean_process_before_the_push(runs):
  first, _ = runs
  blessing = first.outputs["InfraBlessing"]
  props = {k: summary.value_of(v) for k, v in blessing.custom_properties.items()}
  assert props["blessed"] == 1 and props[gates.PASSED] == 1, props[gates.VERDICT]
  assert props[gates.VERDICT].startswith("passed: a clean TensorFlow process answered 6 requests on 4 signatures")
  with open(props[gates.REPORT]) as f:
    report = json.load(f)
  budget = report["budget"]
  assert budget == dataclasses.asdict(config_lib.ServingGateConfig())
  assert report["load_seconds"] < budget["max_load_seconds"] and report["peak_memory_mb"] < budget["max_memory_mb"]
  assert {r["signature"] for r in report["requests"]} == {
      signatures.REST_SIGNATURE, signatures.IMAGE_SIGNATURE, signatures.EXAMPLES_SIGNATURE, signatures.L_SIGNATURE}
  assert all(r["seconds"] < budget["max_request_seconds"] for r in report["requests"])
  assert any("megapixels, the model's limit 100" in r["name"] for r in report["requests"])
  assert "ServingGate" in first.summary and props[gates.VERDICT] in first.summary


def test_model_card_sits_inside_the_pushed_version(runs):
  first, _ = runs
  destination = first.outputs["PushedModel"].custom_properties["pushed_destination"].string_value
  folder = pathlib.Path(destination) / model_card.PUSHED_FOLDER
  card = first.outputs[model_card.ARTIFACT_TYPE]
  assert card.custom_properties[model_card.LOCATION].string_value == str(folder)
  markdown = (folder / model_card.MARKDOWN_FILE).read_text()
  report = _report(first)
  for fact in (f"{report['mse']:.5f}", f"{report['no_colour_mse']:.5f}", f"{report['mean_ab_mse']:.5f}",
               f"Model #{first.outputs['Model'].id}", f"Examples (evaluated) #{first.outputs['Examples'].id}",
               "(span 0)", "left out at ingestion: grayscale", "Intended use", "Known limitations", "tints",
               f"epochs={TRAIN['epochs']}", "new model check: new: ", "serving gate: passed: ", "evaluation: blessed",
               f"![test photos: grayscale input | prediction | ground truth]({model_card.GRID_FILE})"):
    assert fact in markdown, fact
  with open(report["grid"], "rb") as f:
    grid_png = f.read()
  assert (folder / model_card.GRID_FILE).read_bytes() == grid_png
  page = (folder / model_card.HTML_FILE).read_text()
  assert page.startswith("<!DOCTYPE html>") and base64.b64encode(grid_png).decode() in page
  # The pushed folder is still a SavedModel that serving reads.
  assert "colorize_image" in tf.saved_model.load(destination).signatures


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
  assert "(ModelBlessing #" in table and "compared with no earlier blessed model" in table  # the first blessing
  assert f"ServingGate passed (InfraBlessing #{first.outputs['InfraBlessing'].id}): passed: " in table

  # `colorize lineage run` is the summary `colorize run` ends with.
  assert _lineage(second.cfg, "run").strip().splitlines()[-1] == second.summary.strip().splitlines()[-1]

  dot = _lineage(second.cfg, "model", "--format", "dot")
  assert dot.startswith("digraph lineage {") and f"a{first.outputs['Examples'].id} -> e" in dot


def test_lineage_lists_runs_and_artifacts(runs):
  _, second = runs
  assert len(_lineage(second.cfg, "runs").strip().splitlines()) == 3  # interrupted, complete, complete
  models = _lineage(second.cfg, "artifacts", "Model").strip().splitlines()
  assert len(models) == 1 and models[0].startswith(f"#{second.outputs['Model'].id} ")
  counts = json.loads(_lineage(second.cfg, "artifacts", "--format", "json"))
  assert counts["PushedModel"] == 1 and counts["Examples"] == 1


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


def test_the_same_lineage_read_from_vertex_ml_metadata_gives_the_same_output(runs, monkeypatch, tmp_path):
  """These runs' store, as Vertex AI Pipelines would record them (tests/vertex_metadata.py): `lineage
  --vertex-job` gives what the local store gives, in every format (a run is a job there)."""
  import vertex_metadata

  from lineage import graph as graph_lib
  from lineage import vertex
  _, second = runs
  local = json.loads(_lineage(second.cfg, "--format", "json"))
  local["reports"] = {int(k): r for k, r in local["reports"].items()}
  jobs, events = vertex_metadata.translate(local)
  server = vertex_metadata.Server(jobs, events)
  monkeypatch.setattr(vertex, "API", server.url)
  monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", server.credentials_file(tmp_path))
  # The job that pushed the model (the third run's cache hits are upstream of it too).
  pusher = next(e for e in local["executions"] if any(local["start"] in ids for ids in e["outputs"].values()))
  job = f"{vertex_metadata.PARENT}/pipelineJobs/{vertex_metadata.job_id(pusher['run'])}"

  def vertex_lineage(*args):
    result = CliRunner().invoke(cli.main, ["lineage", "--vertex-job", job, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output

  try:
    table, graph = vertex_lineage(), json.loads(vertex_lineage("--format", "json"))
  finally:
    server.close()
  runs_seen = {e["run"] for e in local["executions"]}
  expected = _lineage(second.cfg)
  for run in runs_seen:
    expected = expected.replace(f"run {run}", f"run {vertex_metadata.job_id(run)}")
  assert table == expected
  for e in local["executions"]:
    e.update(type="system.ContainerExecution", run=vertex_metadata.job_id(e["run"]))
  assert graph == json.loads(json.dumps(local))
  assert graph_lib.render_dot(graph, graph["start"]) == graph_lib.render_dot(local, local["start"])
