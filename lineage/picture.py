"""The lineage graph as a PNG, drawn with PIL: no Graphviz needed.

Layered: a node sits one layer after its deepest input (graph.lineage_nodes gives the same
nodes and edges as `--format dot`). A lineage is a long chain, so the layers wrap: bands of
k layers, left to right, stacked top to bottom, k chosen for an aspect ratio near 3:2.
Edges are routed orthogonally through the empty gaps between columns and the channels
between bands, never across a box; edges sharing a gap get lanes of their own, and the
edges of one node leave and enter it at separate heights. Artifacts are rounded boxes
(#N: artifact id), executions square boxes ([N]: execution id), the start artifact
highlighted.
"""
import dataclasses
from typing import Any, Dict, List, Tuple

from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from lineage import graph as graph_lib

_FONT_SIZE = 15
_PAD = 8                      # inside a box, around its text
_GAP_X, _GAP_Y, _BAND_GAP = 56, 18, 44
_TARGET_ASPECT = 1.5          # width / height the wrapping aims at
_HIGHLIGHT = "#ffe08a"
_ARTIFACT_FILL, _EXECUTION_FILL = "#eef3fb", "#f2f2f2"
_EDGE = "#3d5a80"
_ARROW = 7
_MAX_LABEL = 40               # characters of a label line

Box = Tuple[int, int, int, int]  # left, top, right, bottom
Point = Tuple[int, int]


@dataclasses.dataclass
class Layout:
  width: int
  height: int
  boxes: Dict[Any, Box]                       # node -> its box
  labels: Dict[Any, List[str]]
  routes: List[Tuple[Any, Any, List[Point]]]  # (source, target, polyline ending at the target's left side)


def draw(graph: Dict[str, Any], start_id: int) -> Image.Image:
  """The upstream graph of graph.upstream_graph as an RGB image."""
  font = _font()
  plan = layout(graph, font)
  image = Image.new("RGB", (plan.width, plan.height), "white")
  pen = ImageDraw.Draw(image)
  for node, box in plan.boxes.items():
    kind = node[0]
    fill = _HIGHLIGHT if node == ("a", start_id) else (_ARTIFACT_FILL if kind == "a" else _EXECUTION_FILL)
    if kind == "a":
      pen.rounded_rectangle(box, radius=12, fill=fill, outline="#333333", width=1)
    else:
      pen.rectangle(box, fill=fill, outline="#333333", width=2)
    left, top, right, bottom = box
    lines = plan.labels[node]
    step = (bottom - top) / (len(lines) + 1)
    for i, line in enumerate(lines):
      pen.text(((left + right) // 2, round(top + step * (i + 1))), line, fill="black", font=font, anchor="mm")
  # Edges last: routed around every box, so nothing covers them.
  for _, _, points in plan.routes:
    pen.line(points, fill=_EDGE, width=2, joint="curve")
    x, y = points[-1]
    pen.polygon([(x, y), (x - _ARROW - 3, y - _ARROW // 2 - 1), (x - _ARROW - 3, y + _ARROW // 2 + 1)], fill=_EDGE)
  return image


def layout(graph: Dict[str, Any], font=None) -> Layout:
  """Where every box and edge goes (see the module doc)."""
  font = font or _font()
  nodes, edges = graph_lib.lineage_nodes(graph)
  labels = {n: [_clip(line) for line in lines] for n, (_, lines) in nodes.items()}
  layers = _layers(list(nodes), [(s, t) for s, t, _ in edges])
  width = max((font.getlength(line) for lines in labels.values() for line in lines), default=60)
  node_w = int(width) + 2 * _PAD
  line_h = sum(font.getmetrics())
  node_h = 2 * line_h + 2 * _PAD

  per_band = _layers_per_band(layers, node_w, node_h)
  bands = [layers[i:i + per_band] for i in range(0, len(layers), per_band)]
  band_top, top = [], _BAND_GAP
  for band in bands:
    band_top.append(top)
    rows = max(len(layer) for layer in band)
    top += rows * node_h + (rows - 1) * _GAP_Y + _BAND_GAP
  image_w = _GAP_X + per_band * (node_w + _GAP_X)
  image_h = top

  place = {}  # node -> (band, column)
  boxes = {}
  for b, band in enumerate(bands):
    for c, layer in enumerate(band):
      for r, node in enumerate(layer):
        left, y = _GAP_X + c * (node_w + _GAP_X), band_top[b] + r * (node_h + _GAP_Y)
        boxes[node] = (left, y, left + node_w, y + node_h)
        place[node] = (b, c)

  # Each edge's way: through which column gaps (gap g is left of column g) and band channel.
  ways = []
  for source, target, _ in edges:
    (bs, cs), (bt, ct) = place[source], place[target]
    if bs == bt and ct == cs + 1:
      ways.append((source, target, [ct], None))
    else:
      ways.append((source, target, [cs + 1, ct], bt))
  lanes = _Lanes()
  for source, target, gaps, channel in ways:
    for g in gaps:
      lanes.add(("gap", g), (source, target))
    if channel is not None:
      lanes.add(("channel", channel), (source, target))
  exits = _Lanes()
  entries = _Lanes()
  for source, target, _, _ in ways:
    exits.add(source, target)
    entries.add(target, source)

  routes = []
  for source, target, gaps, channel in ways:
    s, t = boxes[source], boxes[target]
    sy = exits.position(source, target, s[1], s[3])
    ty = entries.position(target, source, t[1], t[3])
    xs = [lanes.position(("gap", g), (source, target), _GAP_X + g * (node_w + _GAP_X) - _GAP_X,
                         _GAP_X + g * (node_w + _GAP_X)) for g in gaps]
    if channel is None:
      points = [(s[2], sy), (xs[0], sy), (xs[0], ty), (t[0], ty)]
    else:
      yc = lanes.position(("channel", channel), (source, target), band_top[channel] - _BAND_GAP, band_top[channel])
      points = [(s[2], sy), (xs[0], sy), (xs[0], yc), (xs[1], yc), (xs[1], ty), (t[0], ty)]
    routes.append((source, target, points))
  return Layout(image_w, image_h, boxes, labels, routes)


class _Lanes:
  """Spreads the users of one gap (or one box side) evenly across it, in order of arrival."""

  def __init__(self):
    self.users: Dict[Any, List[Any]] = {}

  def add(self, place, user) -> None:
    self.users.setdefault(place, [])
    if user not in self.users[place]:
      self.users[place].append(user)

  def position(self, place, user, low: int, high: int) -> int:
    users = self.users[place]
    return round(low + (high - low) * (users.index(user) + 1) / (len(users) + 1))


def _layers_per_band(layers: List[List], node_w: int, node_h: int) -> int:
  """How many layers a band holds: the count whose picture is nearest the target aspect ratio."""
  def aspect(k):
    bands = [layers[i:i + k] for i in range(0, len(layers), k)]
    height = _BAND_GAP + sum(max(len(l) for l in band) * (node_h + _GAP_Y) - _GAP_Y + _BAND_GAP for band in bands)
    return (_GAP_X + k * (node_w + _GAP_X)) / height

  def distance(k):
    ratio = aspect(k) / _TARGET_ASPECT
    return max(ratio, 1 / ratio)

  return min(range(1, len(layers) + 1), key=distance, default=1)


def _layers(nodes: List, edges: List) -> List[List]:
  """Nodes grouped by longest-path depth (lineage graphs are acyclic), each layer ordered by its
  inputs' positions so that edges cross as little as possible.
  """
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
  layers: List[List] = [[] for _ in range(max(depth.values(), default=0) + 1)]
  for node in sorted(nodes):
    layers[depth[node]].append(node)
  row = {node: i for i, node in enumerate(layers[0])}
  for layer in layers[1:]:
    layer.sort(key=lambda n: sum(row[i] for i in inputs[n]) / len(inputs[n]) if inputs[n] else 0.0)
    row.update({node: i for i, node in enumerate(layer)})
  return layers


def _font():
  return ImageFont.load_default(size=_FONT_SIZE)


def _clip(text: str) -> str:
  return text if len(text) <= _MAX_LABEL else "..." + text[-(_MAX_LABEL - 3):]
