"""One local run at a time per store, and the store tells the truth about runs that were killed.

The kill of a real `colorize run` is in test_evaluation_pipeline.py (slow); here the executions are
started the way TFX's launcher starts them (its own MLMD and output-folder functions), and
killed by never being finished.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

from click.testing import CliRunner
from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2
import pytest
from tfx.orchestration import metadata
from tfx.orchestration.portable import execution_publish_utils
from tfx.orchestration.portable import outputs_utils
from tfx.orchestration.portable.mlmd import context_lib
from tfx.proto.orchestration import pipeline_pb2
from tfx.types import standard_artifacts

from cli import main as cli
from lineage import summary
from pipelines import config as config_lib
from pipelines import local_runner

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
COLORIZE = [sys.executable, "-c", "from cli.main import main; main()"]
HOLD_LOCK = """
import sys, time
from pipelines import config, local_runner
with local_runner.exclusive_run(config.load(None, {"output_root": sys.argv[1]})):
  print("locked", flush=True)
  time.sleep(600)
"""


def _hold_lock(output_root):
  """Another process that holds the run lock of output_root until killed."""
  holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output_root)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  return holder


def test_second_run_is_refused_with_one_line_and_a_killed_run_leaves_no_lock(tmp_path, coco128):
  output_root = tmp_path / "runs"
  cfg = config_lib.load(None, {"output_root": str(output_root)})
  holder = _hold_lock(output_root)
  try:
    assert local_runner.store_in_use(cfg.metadata_path)
    for extra, what in (([], f"the ML Metadata store {cfg.metadata_path}"),
                        # Another store, the same pipeline root: the outputs would collide.
                        (["--metadata-file", str(tmp_path / "other.db")], f"the pipeline root {cfg.pipeline_root}")):
      second = subprocess.run([*COLORIZE, "run", "--output-root", str(output_root), "--data-root", str(coco128),
                               *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
      assert second.returncode == 1 and second.stdout == ""
      assert second.stderr.splitlines() == [
          f"Error: another colorize run (pid {holder.pid} on {os.uname().nodename}, started "
          f"{second.stderr.split('started ')[1].split(')')[0]}) is using {what} and holds it until it ends; "
          "wait for it, or give this run another --output-root; to take over, end that process (the lock goes "
          "with it; a killed run leaves none)"], second.stderr
    # Refused before any step ran: the pipeline root holds nothing but the lock.
    assert [p.name for p in pathlib.Path(cfg.pipeline_root).iterdir()] == [local_runner.PIPELINE_ROOT_LOCK]
    # A lock file that does not say who holds it: still said at once, with how to find out.
    lock = cfg.metadata_path + local_runner.LOCK_SUFFIX
    pathlib.Path(lock).write_bytes(b"\0junk")
    with pytest.raises(local_runner.RunLockError, match=f"which one {lock} does not say: `fuser {lock}`"):
      with local_runner.exclusive_run(cfg):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert not local_runner.store_in_use(cfg.metadata_path)
  with local_runner.exclusive_run(cfg):  # at once, nothing to wait for or clean by hand
    assert local_runner.store_in_use(cfg.metadata_path)


def _contexts(m, pipeline, run, node):
  return context_lib.prepare_contexts(m, text_format.Parse(f"""
      contexts {{ type {{ name: "pipeline" }} name {{ field_value {{ string_value: "{pipeline}" }} }} }}
      contexts {{ type {{ name: "pipeline_run" }} name {{ field_value {{ string_value: "{run}" }} }} }}
      contexts {{ type {{ name: "node" }} name {{ field_value {{ string_value: "{pipeline}.{node}" }} }} }}
      """, pipeline_pb2.NodeContexts()))


def _start(m, contexts, node_dir):
  """What TFX's launcher does before a Trainer's executor runs: register the execution
  (RUNNING), lay out its output, executor and stateful folders, and start writing."""
  execution = execution_publish_utils.register_execution(
      m, metadata_store_pb2.ExecutionType(name="tfx.components.trainer.component.Trainer"), contexts)
  outputs = {"model": [standard_artifacts.Model()], "model_run": [standard_artifacts.ModelRun()]}
  for key, [artifact] in outputs.items():
    artifact.uri = os.path.join(node_dir, key, str(execution.id))
  outputs_utils.make_output_dirs(outputs)
  outputs_utils.make_tmp_dir(node_dir, execution.id)
  stateful_dir = outputs_utils.get_stateful_working_directory(node_dir, execution)
  (pathlib.Path(outputs["model"][0].uri) / "saved_model.pb").write_bytes(b"half")
  return execution, outputs, stateful_dir


def _clean_up_after_success(node_dir, execution, stateful_dir):
  """What the launcher removes once an execution has published."""
  shutil.rmtree(outputs_utils.make_tmp_dir(node_dir, execution.id))
  outputs_utils.remove_stateful_working_dir(stateful_dir)


@pytest.fixture
def new_store(tmp_path):
  """(config, its Trainer's node folder, a TFX handle on its new, empty store)."""
  cfg = config_lib.load(None, {"output_root": str(tmp_path / "runs")})
  os.makedirs(os.path.dirname(cfg.metadata_path))
  with metadata.Metadata(metadata.sqlite_metadata_connection_config(cfg.metadata_path)) as m:
    yield cfg, os.path.join(cfg.pipeline_root, "Trainer"), m


def test_interrupted_executions_are_canceled_and_only_their_unpublished_folders_removed(new_store, tmp_path):
  cfg, trainer_dir, m = new_store
  done, done_outputs, done_stateful = _start(m, _contexts(m, "colorize", "run-1", "Trainer"), trainer_dir)
  execution_publish_utils.publish_succeeded_execution(m, done.id, _contexts(m, "colorize", "run-1", "Trainer"),
                                                      done_outputs)
  _clean_up_after_success(trainer_dir, done, done_stateful)
  killed, killed_outputs, _ = _start(m, _contexts(m, "colorize", "run-2", "Trainer"), trainer_dir)
  # Another pipeline's step in the same store, whose folders live under another root.
  other, _, _ = _start(m, _contexts(m, "other", "run-3", "Trainer"), str(tmp_path / "elsewhere" / "Trainer"))
  resume = pathlib.Path(trainer_dir, "resume", "0123456789abcdef")
  resume.mkdir(parents=True)
  (resume / "ckpt-2.index").write_bytes(b"state to resume from")

  def runs():
    result = CliRunner().invoke(cli.main, ["lineage", "--metadata-file", cfg.metadata_path, "runs", "--format", "json"])
    return {r["run"]: (r["status"], r["steps"]) for r in json.loads(result.output)}

  # No run holds the store: its RUNNING steps were interrupted, even before any run closes them.
  assert runs() == {"run-1": ("complete", {"COMPLETE": 1}), "run-2": ("interrupted", {"RUNNING": 1}),
                    "run-3": ("interrupted", {"RUNNING": 1})}
  with local_runner.exclusive_run(cfg):
    assert runs()["run-3"][0] == "running"  # the newest run of a store in use may still be going
    closed = local_runner.close_interrupted_executions(cfg)
    assert local_runner.close_interrupted_executions(cfg) == []  # once

  assert [(c["id"], c["component"], c["run"]) for c in closed] == [(killed.id, "Trainer", "run-2"),
                                                                    (other.id, "Trainer", "run-3")]
  store = summary.open_store(cfg.metadata_path)
  states = {e.id: e for e in store.get_executions()}
  assert states[done.id].last_known_state == metadata_store_pb2.Execution.COMPLETE
  for e in (killed.id, other.id):
    assert states[e].last_known_state == metadata_store_pb2.Execution.CANCELED
    result = json.loads(states[e].custom_properties["__execution_result__"].string_value)
    assert result["code"] == 1 and result["resultMessage"].startswith("interrupted:")
  assert runs() == {"run-1": ("complete", {"COMPLETE": 1}), "run-2": ("interrupted", {"CANCELED": 1}),
                    "run-3": ("interrupted", {"CANCELED": 1})}

  left = sorted(str(p.relative_to(trainer_dir)) for p in pathlib.Path(trainer_dir).rglob("*"))
  assert left == sorted([
      ".system", ".system/executor_execution", f".system/executor_execution/{done.id}", ".system/stateful_working_dir",
      "model", f"model/{done.id}", f"model/{done.id}/saved_model.pb", "model_run", f"model_run/{done.id}",
      "resume", "resume/0123456789abcdef", "resume/0123456789abcdef/ckpt-2.index"])
  assert not any(os.path.exists(a.uri) for a in killed_outputs["model"] + killed_outputs["model_run"])
  # The other pipeline's folders are not this run's to judge.
  assert (tmp_path / "elsewhere" / "Trainer" / "model" / str(other.id) / "saved_model.pb").exists()


def test_a_folder_a_published_artifact_points_at_is_never_removed(new_store):
  # TFX never publishes into a running execution's folder; the rule holds whatever the store says.
  cfg, trainer_dir, m = new_store
  killed, outputs, _ = _start(m, _contexts(m, "colorize", "run-1", "Trainer"), trainer_dir)
  adopted = standard_artifacts.Model()
  adopted.uri = outputs["model"][0].uri
  importer = execution_publish_utils.register_execution(
      m, metadata_store_pb2.ExecutionType(name="Importer"), _contexts(m, "colorize", "run-0", "Importer"))
  execution_publish_utils.publish_succeeded_execution(
      m, importer.id, _contexts(m, "colorize", "run-0", "Importer"), {"result": [adopted]})
  with local_runner.exclusive_run(cfg):
    [closed] = [c for c in local_runner.close_interrupted_executions(cfg) if c["id"] == killed.id]
  assert (pathlib.Path(outputs["model"][0].uri) / "saved_model.pb").read_bytes() == b"half"
  assert not os.path.exists(outputs["model_run"][0].uri)
  assert outputs["model"][0].uri not in closed["removed"]


def test_a_link_planted_as_the_lock_is_refused_not_truncated(tmp_path):
  cfg = config_lib.load(None, {"output_root": str(tmp_path / "runs")})
  victim = tmp_path / "precious.txt"
  victim.write_text("keep me")
  os.makedirs(os.path.dirname(cfg.metadata_path))
  os.symlink(victim, cfg.metadata_path + local_runner.LOCK_SUFFIX)
  with pytest.raises(local_runner.RunLockError, match="cannot make the run lock .*symbolic links"):
    with local_runner.exclusive_run(cfg):
      pass
  assert victim.read_text() == "keep me"
