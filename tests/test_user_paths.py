"""Paths users type, and the CLI's last line of defence: one line each, before anything else is printed."""
import shutil
import warnings

from click.testing import CliRunner
import pytest

from cli import crash
from cli import main as cli


def _one_line_error(args, exit_code):
  with warnings.catch_warnings(record=True) as shown:
    warnings.simplefilter("always")
    result = CliRunner().invoke(cli.main, [str(a) for a in args])
  shown_to_users = [str(w.message) for w in shown if not issubclass(w.category, DeprecationWarning)]
  assert not shown_to_users, "a library warning reached the user"
  assert result.exit_code == exit_code, result.output
  errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
  assert len(errors) == 1 and "Traceback" not in result.output, result.output
  return errors[0]


@pytest.mark.parametrize("destination, message", [
    ("gs://bucket/coco/../other", "must not hold empty, '.' or '..' segments"),
    ("gs://bucket//coco", "must not hold empty, '.' or '..' segments"),
    ("gs://bucket/coco//train", "must not hold empty, '.' or '..' segments"),
    ("gs://bucket/./coco", "must not hold empty, '.' or '..' segments"),
    ("gs://Not_A_Bucket/coco", "is not a bucket name"),
    ("gs:///coco", "is not a bucket name"),
    ("gs://bucket/co\nco", "must not hold control characters"),
])
def test_upload_destinations_that_are_no_plain_prefix_are_refused(historical, destination, message):
  assert message in _one_line_error(["upload", historical, destination], 1)


def test_a_junk_saved_model_is_one_line(historical, tmp_path):
  (tmp_path / "model").mkdir()
  (tmp_path / "model" / "saved_model.pb").write_bytes(b"this is not a SavedModel")
  line = _one_line_error(["photos", historical / "Detroit_circa_1915.jpg", "-o", tmp_path / "out",
                          "--model", tmp_path / "model"], 2)
  assert f"{tmp_path / 'model'} holds no SavedModel that loads" in line


def test_a_junk_weights_file_is_one_line_before_anything_runs(tmp_path):
  (tmp_path / "irv2.h5").write_bytes(b"not HDF5 at all")
  line = _one_line_error(["run", "--weights", tmp_path / "irv2.h5", "--output-root", tmp_path / "runs"], 2)
  assert f"train.weights {tmp_path / 'irv2.h5'} is not a Keras weights file" in line
  assert not (tmp_path / "runs").exists()


def test_an_unexpected_error_is_one_line_and_a_traceback_file(historical, tmp_path, monkeypatch, no_crash_reports):
  from serving import photos

  def broken_plan(*unused):
    raise RuntimeError("a bug\nover two lines")

  monkeypatch.setattr(photos, "plan", broken_plan)
  line = _one_line_error(["photos", historical / "Detroit_circa_1915.jpg", "-o", tmp_path / "out",
                          "--model", tmp_path], 1)
  [report] = no_crash_reports.iterdir()
  assert line == (f"Error: unexpected error (RuntimeError: a bug over two lines); the full traceback is in {report}: "
                  "please report it")
  assert report.name.startswith(crash.PREFIX) and "in broken_plan" in report.read_text()
  shutil.rmtree(no_crash_reports)  # seen: the fixture checks that no other command crashed
  no_crash_reports.mkdir()


@pytest.mark.parametrize("key, message", [
    ("folder", "names no readable key file (not a regular file: a folder)"),
    ("missing.json", "names no readable key file (cannot be read: No such file or directory)"),
    ("junk.json", "names no readable key file (Expecting value"),
    ("other.json", "is JSON but no Google credentials file"),
])
def test_a_credentials_variable_naming_no_key_file_is_one_line(historical, tmp_path, monkeypatch, key, message):
  (tmp_path / "folder").mkdir()
  (tmp_path / "junk.json").write_text("not json")
  (tmp_path / "other.json").write_text('{"name": "not a key"}')
  monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / key))
  job = "projects/p/locations/us-central1/pipelineJobs/colorize-1"
  for args in (["lineage", "--vertex-job", job, "runs"], ["upload", historical, "gs://bucket/coco"]):
    error = _one_line_error(args, 1)
    assert f"GOOGLE_APPLICATION_CREDENTIALS={str(tmp_path / key)!r} {message}" in error, (args, error)
  # The endpoint client, used without the CLI's check too (the rollout's probe), says why.
  from serving import endpoint
  with pytest.raises(endpoint.EndpointError, match="no Google Cloud credentials"):
    endpoint.connect("projects/p/locations/us-central1/endpoints/1")
