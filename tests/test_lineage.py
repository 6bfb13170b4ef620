"""`colorize lineage` fails clearly when there is nothing to read. Its lineage output on a real
pipeline's store is tested in test_evaluation_pipeline.py."""
import json
import pathlib
import socket

from click.testing import CliRunner
from PIL import ImageColor

from cli import main as cli
from lineage import graph as graph_lib
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
  assert "file is not a database" in result.output and "CREATE TABLE" not in result.output  # no SQL dumped
  assert path.read_bytes() == b"not a database"  # read-only: never rewritten
  (tmp_path / "empty.db").touch()
  result = _lineage("--metadata-file", str(tmp_path / "empty.db"), "runs")
  assert result.exit_code == 1 and "CREATE TABLE" not in result.output and len(result.output.splitlines()) == 1


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


def _crosses(segment, box) -> bool:
  """Whether an axis-parallel segment passes through the inside of a box."""
  (x1, y1), (x2, y2) = segment
  left, top, right, bottom = box
  if y1 == y2:
    return top < y1 < bottom and max(min(x1, x2), left) < min(max(x1, x2), right)
  return left < x1 < right and max(min(y1, y2), top) < min(max(y1, y2), bottom)


def test_lineage_picture_wraps_and_hides_no_edge(tmp_path):
  graph = json.loads((pathlib.Path(__file__).parent / "data" / "demo_lineage.json").read_text())
  plan = picture.layout(graph)
  nodes, edges = graph_lib.lineage_nodes(graph)
  assert set(plan.boxes) == set(nodes) and len(plan.routes) == len(edges)
  assert 1.0 <= plan.width / plan.height <= 2.5, (plan.width, plan.height)
  for source, target, points in plan.routes:
    assert points[0][0] == plan.boxes[source][2] and points[-1][0] == plan.boxes[target][0]
    for segment in zip(points, points[1:], strict=False):
      assert segment[0][0] == segment[1][0] or segment[0][1] == segment[1][1]  # orthogonal
      hidden = [n for n, box in plan.boxes.items() if _crosses(segment, box)]
      assert not hidden, f"edge {source} -> {target} runs under {hidden}"
  boxes = sorted(plan.boxes.values())
  for a, b in zip(boxes, boxes[1:], strict=False):
    assert a[2] <= b[0] or a[3] <= b[1] or b[3] <= a[1]  # no two boxes overlap
  image = picture.draw(graph, graph["start"])
  assert image.size == (plan.width, plan.height)
  x, y = plan.boxes[("a", graph["start"])][:2]
  assert image.getpixel((x + 14, y + 4)) == ImageColor.getrgb(picture._HIGHLIGHT)
  image.save(tmp_path / "lineage.png")


def test_lineage_table_keeps_one_artifact_a_line_and_names_what_made_each_examples():
  # A real run's lineage (demo config, 24 photos, 1 epoch): its Examples carry a multi-line
  # input_fingerprint, and the Embed step makes Examples from Examples.
  graph = json.loads((pathlib.Path(__file__).parent / "data" / "demo_lineage.json").read_text())
  table = graph_lib.render_table(graph, graph["start"])
  embed = next(e for e in graph["executions"] if e["component"] == "Embed")
  [embedded] = embed["outputs"]["embedded_examples"]
  [source] = embed["inputs"]["examples"]
  assert f"Examples #{embedded} made by Embed [{embed['id']}] from Examples #{source}" in table
  assert "from ?" not in table
  # The fingerprint's line breaks would start lines of their own ("snapshot:files:...").
  for line in table.splitlines():
    assert line.startswith(("  ", "Executions", graph_lib.PUSHED_MODEL)) or not line, line
  assert any(f"Examples #{source}  " in line and "input_fingerprint=split:photos" in line
             for line in table.splitlines())
  assert graph_lib.ID_LEGEND in table


def test_lineage_dot_is_the_pictures_graph():
  graph = json.loads((pathlib.Path(__file__).parent / "data" / "demo_lineage.json").read_text())
  dot = graph_lib.render_dot(graph, graph["start"])
  _, edges = graph_lib.lineage_nodes(graph)
  assert sum(" -> " in line for line in dot.splitlines()) == len(edges)
  for source, target, key in edges:
    assert f'{source[0]}{source[1]} -> {target[0]}{target[1]} [label="{key}"];' in dot
