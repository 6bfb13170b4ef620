"""A model card's facts -> Markdown and HTML (pure functions: no TFX, no TensorFlow).

`facts` is the plain dict components/model_card/component.py gathers from the run's artifacts.
"""
import base64
import html
from typing import Any, Dict, List, Optional

from components.model_card import GRID_FILE

INTENDED_USE = (
    "Colorizing black-and-white photographs (L of CIELAB in, a*b* out), as a starting point for a person "
    "who checks the result. Not for restoring historically accurate colours: the model guesses plausible "
    "colours from what it learned, and a confident colour may simply be wrong.")
LIMITATIONS = [
    "A model trained briefly, on few photos or with random Inception weights (`weights: none`, as `make demo` "
    "does) mostly tints every photo with an average colour; its test MSE is then close to the mean-colour "
    "baseline, which the metrics below show.",
    "A useful model needs the full COCO train2017 (118k photos) or similar, ImageNet weights for "
    "Inception-ResNet-v2 (`weights: imagenet`) and many epochs, ideally on a GPU (README: Train a real model).",
    "It learned from COCO's everyday photos: scenes, subjects, lighting and film of other kinds (portraits "
    "from the 1900s, sepia or toned scans) may be coloured poorly.",
    "Colour is predicted at 224x224 and enlarged: fine colour detail is lost; the photo's own lightness is kept.",
]


def markdown(facts: Dict[str, Any]) -> str:
  lines = [f"# Model card: {facts['title']}", ""]
  for title, rows in _sections(facts):
    lines += [f"## {title}", ""]
    for i, row in enumerate(rows):
      if i and rows[i - 1].startswith("|") and not row.startswith("|"):
        lines.append("")  # a table ends with a blank line
      lines.append(row if row.startswith("|") or row.startswith("![") else f"- {row}")
    lines.append("")
  return "\n".join(lines)


def html_page(facts: Dict[str, Any], grid_png: Optional[bytes]) -> str:
  """The same card as one self-contained HTML page (the grid embedded as a data URI)."""
  body = [f"<h1>Model card: {html.escape(facts['title'])}</h1>"]
  for title, rows in _sections(facts, grid_png):
    body.append(f"<h2>{html.escape(title)}</h2>")
    table = [r for r in rows if r.startswith("|")]
    if table:
      body.append(_html_table(table))
    items = [r for r in rows if not r.startswith("|") and not r.startswith("<img") and not r.startswith("![")]
    if items:
      body.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in items) + "</ul>")
    body += [r for r in rows if r.startswith("<img")]
  return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Model card: "
          f"{html.escape(facts['title'])}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
          "td,th{border:1px solid #ccc;padding:.2em .5em}table{border-collapse:collapse}img{max-width:100%}"
          "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _sections(facts: Dict[str, Any], grid_png: Optional[bytes] = None) -> List:
  m = facts["metrics"]
  metrics = [
      "| | pixelwise ab MSE (lower is better) |",
      "| --- | --- |",
      f"| this model | {m['mse']:.5f} |",
      f"| no colour (the grey photo) | {m['no_colour_mse']:.5f} |",
      f"| the training split's mean colour | {m['mean_ab_mse']:.5f} |",
      f"On the fixed held-out test split ({m['test_images']} photos; a photo's split depends on its image id only, "
      "so it is the same photos in every span)",
      f"PSNR {m['psnr']:.2f} dB and SSIM {m['ssim']:.4f} (the grey photo: {m['no_colour_psnr']:.2f} dB, "
      f"{m['no_colour_ssim']:.4f}); colorfulness {m['colorfulness_prediction']:.1f} (ground truth "
      f"{m['colorfulness_truth']:.1f})",
  ]
  grid = ([f"<img alt=\"test photos: grayscale input | prediction | ground truth\" "
           f"src=\"data:image/png;base64,{base64.b64encode(grid_png).decode()}\">"] if grid_png else
          [f"![test photos: grayscale input | prediction | ground truth]({GRID_FILE})"])
  return [
      ("Model", facts["model"]),
      ("Intended use", [INTENDED_USE]),
      ("Known limitations", LIMITATIONS),
      ("Data", facts["data"]),
      ("Metrics against both baselines", metrics),
      ("Test photos: grayscale input | prediction | ground truth", grid),
      ("Training", facts["training"]),
      ("Gates", facts["gates"]),
      ("Lineage (ML Metadata ids)", facts["lineage"]),
  ]


def _html_table(rows: List[str]) -> str:
  cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows if not set(r) <= set("|- ")]
  head, *rest = cells
  return ("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
          + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest) + "</table>")
