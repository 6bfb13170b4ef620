"""ModelCard: the Python-function component that writes the card and puts it beside the pushed model.

It runs after the Pusher and reads only the run's artifacts (no ML Metadata queries, so it
works the same on Vertex): the ingested and training Examples, the Model and its training
summary, the evaluation report, every gate's verdict (schemas/gates.py) and the PushedModel.
The card (Markdown, HTML with the grid embedded, the grid PNG) lands in its own artifact and,
when a version was pushed, in that version's folder: <serving_model_dir>/<version>/model_card/,
local or gs://, so each pushed version carries its own card.
"""
import json
import os
from typing import List

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact

from components import model_card
from components import report as report_lib
from components.model_card import render
from components.new_model.component import NewModelVerdict
from components.report.component import ColorizationReport
from schemas import gates
from schemas import training as training_summary

_Examples = tfx.types.standard_artifacts.Examples


class ModelCardArtifact(artifact.Artifact):
  """model_card.md, model_card.html and grid.png."""
  TYPE_NAME = model_card.ARTIFACT_TYPE


@tfx.dsl.components.component
def ModelCard(  # noqa: N802 (a TFX component: named as a class)
    examples: tfx.dsl.components.InputArtifact[_Examples],
    train_examples: tfx.dsl.components.InputArtifact[List[_Examples]],
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    report: tfx.dsl.components.InputArtifact[ColorizationReport],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    infra_blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    new_model: tfx.dsl.components.InputArtifact[NewModelVerdict],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    card: tfx.dsl.components.OutputArtifact[ModelCardArtifact],
) -> None:
  """Writes the card into `card` and, if the model was pushed, beside the pushed version."""
  with tf.io.gfile.GFile(os.path.join(report.uri, report_lib.REPORT_FILE)) as f:
    scores = json.load(f)
  with tf.io.gfile.GFile(scores["grid"], "rb") as f:
    grid_png = f.read()
  pushed = pushed_model.get_int_custom_property("pushed") == 1
  destination = pushed_model.get_string_custom_property("pushed_destination") if pushed else ""
  facts = {
      "title": f"colorize {_name('Model', model)}" + (f", version {os.path.basename(destination.rstrip('/'))}"
                                               if pushed else " (not pushed)"),
      "model": [f"pushed to {destination}" if pushed else "not pushed: " + _why_not_pushed(blessing, infra_blessing),
                f"SavedModel: {model.uri}",
                "serves: serving_default (REST, a batch of encoded photos), colorize_image, predict, predict_ab "
                "(schemas/signatures.py)"],
      "data": _data(examples, train_examples),
      "metrics": scores,
      "training": _training(model_run),
      "gates": [_gate("new model check", new_model),
                "evaluation: " + ("blessed" if blessing.get_int_custom_property("blessed") == 1 else
                                  "not blessed: " + "; ".join(scores.get("blessing_failures") or [])) +
                (f" (compared with the last blessed Model #{scores['baseline_model_id']})"
                 if scores.get("baseline_model_id") else " (no earlier blessed model to compare with)"),
                _gate("serving gate", infra_blessing)],
      "lineage": [f"{_name(name, a)}  {a.uri}" for name, a in (
          ("Examples (evaluated)", examples), *(("Examples (trained on)", x) for x in train_examples),
          ("Model", model), ("ModelRun", model_run), ("ModelBlessing", blessing), ("InfraBlessing", infra_blessing),
          ("ColorizationReport", report), ("NewModelCheck", new_model), ("PushedModel", pushed_model))],
  }
  files = {model_card.MARKDOWN_FILE: render.markdown(facts).encode(),
           model_card.HTML_FILE: render.html_page(facts, grid_png).encode(),
           model_card.GRID_FILE: grid_png}
  folders = [card.uri] + ([os.path.join(destination, model_card.PUSHED_FOLDER)] if pushed else [])
  for folder in folders:
    tf.io.gfile.makedirs(folder)
    for name, data in files.items():
      with tf.io.gfile.GFile(os.path.join(folder, name), "wb") as f:
        f.write(data)
  card.set_string_custom_property(model_card.LOCATION, folders[-1] if pushed else "")


def _name(type_name: str, a: artifact.Artifact) -> str:
  # The ML Metadata id; a runner that passes none (0) leaves the URI (listed beside it) to name it.
  return f"{type_name} #{a.id}" if a.id else f"{type_name} (no id)"


def _why_not_pushed(blessing: artifact.Artifact, infra_blessing: artifact.Artifact) -> str:
  reasons = []
  if blessing.get_int_custom_property("blessed") != 1:
    reasons.append("the Evaluator did not bless it")
  if infra_blessing.get_int_custom_property("blessed") != 1:
    reasons.append("the serving gate stopped it")
  return " and ".join(reasons) or "the Pusher did not push it"


def _gate(name: str, a: artifact.Artifact) -> str:
  verdict = a.get_string_custom_property(gates.VERDICT) if a.has_custom_property(gates.VERDICT) else "no verdict"
  return f"{name}: {verdict}"


def _span(examples: artifact.Artifact) -> str:
  found = [f"{key} {examples.get_int_custom_property(key)}" for key in ("span", "version")
           if examples.has_custom_property(key)]
  return ", ".join(found) or "no span recorded"


def _data(examples: artifact.Artifact, train_examples: List[artifact.Artifact]) -> List[str]:
  def prop(key):
    return examples.get_string_custom_property(key) if examples.has_custom_property(key) else ""
  skips = json.loads(prop("skip_counts") or "{}")
  return [
      f"evaluated on the test split of {_name('Examples', examples)} ({_span(examples)}): "
      f"{prop('split_counts') or '?'}",
      "left out at ingestion: " + (", ".join(f"{reason} {n}" for reason, n in sorted(skips.items())) or "nothing")
      + (f" (every file and why: {prop('skip_report')})" if prop("skip_report") else ""),
      "trained on the train split of " + ", ".join(f"{_name('Examples', x)} ({_span(x)})" for x in train_examples),
  ]


def _training(model_run: artifact.Artifact) -> List[str]:
  path = os.path.join(model_run.uri, training_summary.SUMMARY_FILE)
  if not tf.io.gfile.exists(path):
    return [f"no training summary in {model_run.uri}"]
  with tf.io.gfile.GFile(path) as f:
    summary = json.load(f)
  config = summary.get("config", {})
  return [
      f"{summary.get('final_step')} steps ({summary.get('steps_per_epoch')} an epoch, global batch "
      f"{summary.get('global_batch')}) under {summary.get('strategy')} with {summary.get('replicas')} replica(s), "
      f"{summary.get('dtype_policy')}",
      "settings: " + ", ".join(f"{k}={v}" for k, v in sorted(config.items())),
      f"TensorBoard logs: {model_run.uri}",
  ]
