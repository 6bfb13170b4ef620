"""The lineage graph as a PNG, drawn with PIL: no Graphviz needed.

Left to right in columns by depth (a node sits one column right of its deepest
input), artifacts as ellipses, executions as boxes, the start artifact highlighted.
"""
from typing import Any, Dict, List, Tuple

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

_NODE_W, _NODE_H = 210, 46
_GAP_X, _GAP_Y, _MARGIN = 70, 22, 20
_HIGHLIGHT = "#ffe08a"
_ARROW = 7


def draw(graph: Dict[str, Any], start_id: int) -> Image.Image:
  """The upstream graph of lineage.graph.upstream_graph as an RGB image."""
  labels, edges = _nodes_and_edges(graph)
  columns = _columns(list(labels), edges)
  width = len(columns) * (_NODE_W + _GAP_X) - _GAP_X + 2 * _MARGIN
  height = max(len(c) for c in columns) * (_NODE_H + _GAP_Y) - _GAP_Y + 2 * _MARGIN
  box = {}
  for x, column in enumerate(columns):
    for y, node in enumerate(column):
      left, top = _MARGIN + x * (_NODE_W + _GAP_X), _MARGIN + y * (_NODE_H + _GAP_Y)
      box[node] = (left, top, left + _NODE_W, top + _NODE_H)

  image = Image.new("RGB", (width, height), "white")
  pen = ImageDraw.Draw(image)
  font = ImageFont.load_default()
  for source, target in edges:
    (_, s_top, s_right, s_bottom), (t_left, t_top, _, t_bottom) = box[source], box[target]
    start, end = (s_right, (s_top + s_bottom) // 2), (t_left, (t_top + t_bottom) // 2)
    pen.line([start, end], fill="#555555", width=1)
    pen.polygon([end, (end[0] - _ARROW, end[1] - _ARROW // 2), (end[0] - _ARROW, end[1] + _ARROW // 2)],
                fill="#555555")
  for node, (kind, lines) in labels.items():
    fill = _HIGHLIGHT if node == ("a", start_id) else ("#eef3fb" if kind == "a" else "#f2f2f2")
    shape = pen.ellipse if kind == "a" else pen.rectangle
    shape(box[node], fill=fill, outline="#333333")
    left, top, right, bottom = box[node]
    for i, line in enumerate(lines):
      pen.text(((left + right) // 2, top + (bottom - top) * (i + 1) // (len(lines) + 1)), line,
               fill="black", font=font, anchor="mm")
  return image


def _nodes_and_edges(graph: Dict[str, Any]) -> Tuple[Dict[Tuple[str, int], Tuple[str, List[str]]], List]:
  labels = {("a", a["id"]): ("a", [f"{a['type']} #{a['id']}", _tail(a["uri"])]) for a in graph["artifacts"]}
  edges = []
  for e in graph["executions"]:
    labels[("e", e["id"])] = ("e", [f"{e['component']} [{e['id']}]", e["state"].lower()])
    edges += [(("a", i), ("e", e["id"])) for ids in e["inputs"].values() for i in ids if ("a", i) in labels]
    edges += [(("e", e["id"]), ("a", i)) for ids in e["outputs"].values() for i in ids if ("a", i) in labels]
  return labels, edges


def _columns(nodes: List, edges: List) -> List[List]:
  """Nodes grouped by longest-path depth; lineage graphs are acyclic."""
  inputs = {n: [] for n in nodes}
  for source, target in edges:
    inputs[target].append(source)
  depth: Dict[Any, int] = {}

  def depth_of(node, seen=()):
    if node not in depth:
      depth[node] = 1 + max((depth_of(i, seen + (node,)) for i in inputs[node] if i not in seen), default=-1)
    return depth[node]

  for node in sorted(nodes):
    depth_of(node)
  columns: List[List] = [[] for _ in range(max(depth.values(), default=0) + 1)]
  for node in sorted(nodes):
    columns[depth[node]].append(node)
  # Each node level with the mean row of its inputs, so that arrows cross as little as possible.
  row = {node: i for i, node in enumerate(columns[0])}
  for column in columns[1:]:
    column.sort(key=lambda n: sum(row[i] for i in inputs[n]) / len(inputs[n]) if inputs[n] else 0.0)
    row.update({node: i for i, node in enumerate(column)})
  return columns


def _tail(uri: str, parts: int = 2, limit: int = 34) -> str:
  text = "/".join(uri.rstrip("/").split("/")[-parts:])
  return text if len(text) <= limit else "..." + text[-(limit - 3):]
