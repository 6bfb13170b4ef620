"""The gates before a push, through the real TFX components on LocalDagRunner: the new-model
check (an unchanged model stops the run) and the serving gate (a model that does not serve
is not pushed), on small SavedModels that speak the project's signatures and on the real
photos the gate ships with. The trained model's pass is in test_evaluation_pipeline.py.
"""
import dataclasses
import os
import pathlib
import shutil

import pytest
import tensorflow as tf
import tfx
from tfx import v1 as tfx_v1

from components import new_model
from components.new_model import component as check_lib
from components.new_model.component import NewModelCheck
from components.serving_gate import component as gate_lib
from components.serving_gate.component import ServingGate
from lineage import summary
from pipelines import config as config_lib
from schemas import artifact_files
from schemas import features
from schemas import gates
from schemas import signatures

pytestmark = pytest.mark.slow
MAX_PIXELS = 1_000_000  # the small models' size limit: the gate's large photo is 1 megapixel


class _Small(tf.Module):
  """The four signatures with their documented keys and shapes: photos come back uncoloured,
  ab is zero. broken: the image signature fails, as a model with a bad export would."""

  def __init__(self, broken: bool):
    super().__init__()
    self.broken = broken
    self.max_pixels = tf.Variable(MAX_PIXELS, dtype=tf.int64, trainable=False, name=signatures.MAX_PIXELS)

  def _rgb(self, image_bytes):
    rgb = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    if self.broken:
      tf.debugging.assert_equal(tf.size(rgb), 0, message="deliberately broken export")
    return rgb

  @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
  def colorize_image(self, image_bytes):
    rgb = self._rgb(image_bytes)
    return {signatures.JPEG_OUTPUT: tf.io.encode_jpeg(rgb), signatures.RGB_OUTPUT: rgb}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def colorize_images(self, image_bytes):
    jpegs = tf.map_fn(lambda b: tf.io.encode_jpeg(self._rgb(b)), image_bytes,
                      fn_output_signature=tf.TensorSpec([], tf.string))
    return {signatures.REST_OUTPUT: jpegs}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def examples(self, examples):
    return {signatures.AB_OUTPUT: tf.zeros([tf.shape(examples)[0], *features.AB_SHAPE])}

  @tf.function(input_signature=[tf.TensorSpec([None, *features.L_SHAPE], tf.float32)])
  def l(self, l):  # noqa: E743 (the signature's input key)
    return {signatures.AB_OUTPUT: tf.zeros([tf.shape(l)[0], *features.AB_SHAPE])}


def _save(path: pathlib.Path, broken: bool) -> pathlib.Path:
  small = _Small(broken)
  tf.saved_model.save(small, str(path / "Format-Serving"), signatures={
      signatures.REST_SIGNATURE: small.colorize_images, signatures.IMAGE_SIGNATURE: small.colorize_image,
      signatures.EXAMPLES_SIGNATURE: small.examples, signatures.L_SIGNATURE: small.l})
  return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  root = tmp_path_factory.mktemp("models")
  good = _save(root / "good", broken=False)
  shutil.copytree(good, root / "good_copy")  # a retraining that reproduced the same bytes
  shutil.copytree(good, root / "recorded")
  artifact_files.record_model(str(root / "recorded" / "Format-Serving"))  # as the Trainer records its export
  return {"good": good, "good_copy": root / "good_copy", "broken": _save(root / "broken", broken=True),
          "recorded": root / "recorded"}


def _run(root: pathlib.Path, name: str, candidate: pathlib.Path, baseline: pathlib.Path):
  """Importer(candidate), Importer(baseline) -> NewModelCheck -> [ServingGate -> Pusher], as pipelines/pipeline.py
  wires them; returns {component: {type: artifact}} of the run and the serving folder."""
  def model(uri, node_id):
    return tfx_v1.dsl.Importer(source_uri=str(uri), artifact_type=tfx_v1.types.standard_artifacts.Model,
                               custom_properties={"tfx_version": tfx.__version__}).with_id(node_id)
  served = root / name / "serving"
  candidate_importer, baseline_importer = model(candidate, "candidate"), model(baseline, "baseline")
  check = NewModelCheck(model=candidate_importer.outputs["result"], baseline_model=baseline_importer.outputs["result"])
  with tfx_v1.dsl.Cond(check.outputs["verdict"].future()[0].custom_property(gates.PASSED) == 1):
    gate = ServingGate(model=candidate_importer.outputs["result"], **dataclasses.asdict(config_lib.ServingGateConfig()))
    pusher = tfx_v1.components.Pusher(
        model=candidate_importer.outputs["result"], infra_blessing=gate.outputs["blessing"],
        push_destination=tfx_v1.proto.PushDestination(
            filesystem=tfx_v1.proto.PushDestination.Filesystem(base_directory=str(served))))
  metadata = str(root / name / "metadata.db")
  tfx_v1.orchestration.LocalDagRunner().run(tfx_v1.dsl.Pipeline(
      pipeline_name=name, pipeline_root=str(root / name / "root"),
      components=[candidate_importer, baseline_importer, check, gate, pusher],
      metadata_connection_config=tfx_v1.orchestration.metadata.sqlite_metadata_connection_config(metadata)))
  store = summary.open_store(metadata)
  types = summary.artifact_type_names(store)
  _, outputs = summary.latest_run_outputs(store, name)
  found = {}
  for component, a in outputs:
    found.setdefault(component, {})[types[a.type_id]] = a
  return found, served, summary.run_lines(store, name, metadata)


def _prop(artifact, key):
  return summary.value_of(artifact.custom_properties[key])


def _model(path: pathlib.Path, artifact_id: int):
  model = tfx_v1.types.standard_artifacts.Model()
  model.uri, model.id = str(path), artifact_id
  return model


def test_a_copy_of_the_latest_blessed_model_stops_the_run_before_the_serving_gate(models, tmp_path):
  files = {name: check_lib.checked_files(_model(models[name], 1), "the candidate", "")[0]
           for name in ("good", "good_copy", "recorded")}
  assert check_lib.fingerprint(files["good"]) == check_lib.fingerprint(files["good_copy"])
  assert files["recorded"] == files["good"]  # verified against its manifest, and read once for the fingerprint
  found, served, lines = _run(tmp_path, "copy", models["good_copy"], models["good"])
  verdict = found["NewModelCheck"][new_model.ARTIFACT_TYPE]
  assert _prop(verdict, gates.PASSED) == 0
  assert "unchanged" in _prop(verdict, gates.VERDICT) and "the same bytes as Model #" in _prop(verdict, gates.VERDICT)
  # Models exported before the Trainer recorded manifests: accepted, and the verdict says they were not checked.
  assert "has no file manifest (written before the Trainer recorded them)" in _prop(verdict, gates.VERDICT)
  assert "report:" not in "\n".join(lines)  # the check writes no report: no empty line for one
  assert "ServingGate" not in found and "Pusher" not in found and not served.exists()
  assert any(l.split()[:2] == ["Pusher", "skipped"] for l in lines), lines
  assert lines[-1].startswith("Nothing pushed: NewModelCheck: unchanged"), lines


def test_a_model_whose_signature_fails_is_not_pushed_and_the_blessing_says_why(models, tmp_path):
  found, served, lines = _run(tmp_path, "broken", models["broken"], models["good"])
  assert _prop(found["NewModelCheck"][new_model.ARTIFACT_TYPE], gates.PASSED) == 1
  blessing = found["ServingGate"]["InfraBlessing"]
  assert _prop(blessing, "blessed") == 0 and _prop(blessing, gates.PASSED) == 0
  verdict = _prop(blessing, gates.VERDICT)
  assert verdict.startswith(f"stopped: {signatures.REST_SIGNATURE}: ") and "deliberately broken export" in verdict
  assert os.path.isfile(_prop(blessing, gates.REPORT))
  assert _prop(found["Pusher"]["PushedModel"], "pushed") == 0 and not served.exists()
  assert any("ServingGate" in l and "STOPPED" in l for l in lines), lines


def test_a_model_that_serves_within_budget_passes_and_is_pushed(models, tmp_path):
  found, served, _ = _run(tmp_path, "good", models["good"], models["broken"])
  blessing = found["ServingGate"]["InfraBlessing"]
  assert _prop(blessing, "blessed") == 1, _prop(blessing, gates.VERDICT)
  assert _prop(blessing, gates.VERDICT).startswith("passed: a clean TensorFlow process answered 6 requests on 4 ")
  assert _prop(found["Pusher"]["PushedModel"], "pushed") == 1 and len(os.listdir(served)) == 1


def test_a_model_over_the_memory_budget_is_stopped(models):
  report = gate_lib.check(str(models["good"] / "Format-Serving"), max_load_seconds=120, max_request_seconds=120,
                          max_memory_mb=1)
  assert not report["passed"]
  assert report["verdict"].startswith("stopped: the serving process peaked at ")
  assert "over the budget of 1 MB" in report["verdict"]
  # Everything else was fine, and the probe imported nothing of the project.
  assert len(report["problems"]) == 1 and all("seconds" in r for r in report["requests"])



def test_a_model_damaged_after_it_was_written_is_named_before_anything_loads_it(models, tmp_path):
  damaged = tmp_path / "damaged"
  shutil.copytree(models["recorded"], damaged)
  variables = next((damaged / "Format-Serving" / "variables").glob("variables.data-*"))
  written = variables.read_bytes()
  variables.write_bytes(written[:len(written) // 2])  # a copy cut short
  relative = variables.relative_to(damaged)
  with pytest.raises(artifact_files.DamagedArtifactError, match=(
      rf"^the candidate Model #7 at {damaged} is damaged: {relative} holds {len(written) // 2} bytes, "
      rf"{len(written)} were written; rebuild it with `colorize run --no-cache`")):
    check_lib.checked_files(_model(damaged, 7), "the candidate", artifact_files.REBUILD)
  variables.write_bytes(written)
  (damaged / "Format-Serving" / "saved_model.pb").unlink()
  # The baseline the resolver hands the check, through TFX: retraining would not replace it, restoring does.
  with pytest.raises(artifact_files.DamagedArtifactError, match=(
      rf"^the latest blessed Model #\d+ at {damaged} is damaged: Format-Serving/saved_model.pb is missing; "
      r"restore its files from the copy the Pusher made")):
    _run(tmp_path, "damaged", models["good"], damaged)
  # Without a manifest, a SavedModel folder without its graph is still refused.
  unrecorded = tmp_path / "unrecorded"
  shutil.copytree(models["good"], unrecorded)
  (unrecorded / "Format-Serving" / "saved_model.pb").unlink()
  with pytest.raises(artifact_files.DamagedArtifactError, match="Format-Serving/ holds no saved_model.pb"):
    check_lib.checked_files(_model(unrecorded, 3), "the latest blessed", check_lib.RESTORE_BASELINE)
