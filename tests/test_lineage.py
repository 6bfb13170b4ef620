"""`colorize lineage` fails clearly when there is nothing to read. Its lineage output on a real
pipeline's store is tested in test_evaluation_pipeline.py."""
import json
import socket

from click.testing import CliRunner
from PIL import ImageColor

from cli import main as cli
from lineage import picture
from lineage import summary


def _lineage(*args):
  return CliRunner().invoke(cli.main, ["lineage", *args])


def test_missing_store_says_how_to_make_one(tmp_path):
  result = _lineage("--metadata-file", str(tmp_path / "none.db"))
  assert result.exit_code != 0
  assert f"no ML Metadata store at {tmp_path / 'none.db'}" in result.output
  assert "colorize run" in result.output


def test_default_store_comes_from_the_config(tmp_path):
  result = _lineage("--output-root", str(tmp_path), "--pipeline-name", "demo", "runs")
  assert result.exit_code != 0
  assert str(tmp_path / "metadata" / "demo" / "metadata.db") in result.output


def test_not_a_store_is_reported_not_raised(tmp_path):
  path = tmp_path / "metadata.db"
  path.write_bytes(b"not a database")
  result = _lineage("--metadata-file", str(path), "runs")
  assert result.exit_code == 1 and "cannot open the ML Metadata store" in result.output
  assert path.read_bytes() == b"not a database"  # read-only: never rewritten


def test_empty_store_has_no_runs_and_no_pushed_model(tmp_path):
  path = str(tmp_path / "metadata.db")
  summary.open_store(path, read_only=False)
  assert "No pipeline runs" in _lineage("--metadata-file", path, "runs").output
  assert "No artifacts" in _lineage("--metadata-file", path, "artifacts").output
  result = _lineage("--metadata-file", path)
  assert result.exit_code == 1 and "no pushed model" in result.output
  result = _lineage("--metadata-file", path, "model", "7")
  assert result.exit_code == 2 and "no artifact #7" in result.output
  result = _lineage("--metadata-file", path, "artifacts", "Model")
  assert result.exit_code == 2 and "no artifact type 'Model'" in result.output


def test_unreachable_mysql_store_is_reported():
  with socket.socket() as s:  # a loopback port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  result = _lineage("--mysql-host", "127.0.0.1", "--mysql-port", str(port), "runs")
  assert result.exit_code == 1
  assert f"cannot open the ML Metadata store at mysql://127.0.0.1:{port}/mlmd" in result.output


def test_group_options_reach_the_subcommand(tmp_path):
  path = str(tmp_path / "metadata.db")
  summary.open_store(path, read_only=False)
  assert json.loads(_lineage("--metadata-file", path, "--format", "json", "runs").output) == []
  result = _lineage("--metadata-file", path, "--format", "dot", "runs")
  assert result.exit_code == 2 and "--format dot is not available here" in result.output
  result = _lineage("--metadata-file", path, "--format", "png")
  assert result.exit_code == 2 and "--format png needs --output" in result.output


def test_lineage_picture_lays_out_every_node_by_depth():
  # ingest -> Examples -> train -> Model -> push -> PushedModel, plus a second input to train.
  graph = {
      "artifacts": [{"id": 1, "type": "Examples", "uri": "/r/CocoIngest/examples/1"},
                    {"id": 2, "type": "Schema", "uri": "/r/Schema/schema/2"},
                    {"id": 3, "type": "Model", "uri": "/r/Trainer/model/3"},
                    {"id": 4, "type": "PushedModel", "uri": "/r/Pusher/pushed_model/4"}],
      "executions": [
          {"id": 10, "component": "CocoIngest", "state": "COMPLETE", "inputs": {}, "outputs": {"examples": [1]}},
          {"id": 11, "component": "Trainer", "state": "COMPLETE", "inputs": {"examples": [1], "schema": [2]},
           "outputs": {"model": [3]}},
          {"id": 12, "component": "Pusher", "state": "RUNNING", "inputs": {"model": [3]},
           "outputs": {"pushed_model": [4]}}],
  }
  image = picture.draw(graph, start_id=4)
  columns = 6  # ingest, Examples, Trainer, Model, Pusher, PushedModel; the Schema (no inputs) shares ingest's
  assert image.width == columns * (picture._NODE_W + picture._GAP_X) - picture._GAP_X + 2 * picture._MARGIN
  assert image.height == 2 * (picture._NODE_H + picture._GAP_Y) - picture._GAP_Y + 2 * picture._MARGIN
  # The start artifact (last column, first row) is highlighted; the others are not.
  right = image.width - picture._MARGIN - picture._NODE_W // 2
  middle = picture._MARGIN + picture._NODE_H // 2
  highlight = ImageColor.getrgb(picture._HIGHLIGHT)
  assert image.getpixel((right - 40, middle)) == highlight
  assert image.getpixel((picture._MARGIN + 10, middle)) != highlight
