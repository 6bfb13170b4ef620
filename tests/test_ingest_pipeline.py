"""End to end: the real coco128 photos through the local pipeline (LocalDagRunner, SQLite ML Metadata)."""
import json
import os
import shutil

from click.testing import CliRunner
import image_files
from ml_metadata.proto import metadata_store_pb2
import numpy as np
import pytest
import tensorflow as tf

from cli import main as cli
from lineage import summary
from pipelines import config
from pipelines import local_runner
from schemas import features

COCO_BLACK_AND_WHITE = [86, 328, 359, 542, 634]


def _examples_of_latest_run(cfg):
  store = summary.open_store(cfg.metadata_path)
  run_id, outputs = summary.latest_run_outputs(store, cfg.pipeline_name)
  types = summary.artifact_type_names(store)
  examples = [a for _, a in outputs if types[a.type_id] == "Examples"]
  assert run_id and len(examples) == 1
  return examples[0]


@pytest.mark.slow
def test_coco128_ingestion_through_the_local_pipeline(coco128, tmp_path):
  cfg = config.from_dict({"output_root": str(tmp_path / "runs"), "ingest": {"data_root": str(coco128)}})
  local_runner.run(cfg, last_stage="ingest")

  examples = _examples_of_latest_run(cfg)
  props = examples.custom_properties
  counts = json.loads(props["split_counts"].string_value)
  assert counts == {"train": 88, "eval": 9, "test": 26}  # test = round(0.2 * 128): coco128 is < 5000 photos
  assert json.loads(props["skip_counts"].string_value) == {"grayscale": 5}
  assert props["payload_format"].string_value == "FORMAT_TF_EXAMPLE"
  report_path = props["skip_report"].string_value
  assert report_path.startswith(examples.uri)
  with tf.io.gfile.GFile(report_path) as f:
    report = json.load(f)
  assert sorted(s["image_id"] for s in report["skipped"]) == COCO_BLACK_AND_WHITE
  assert report["split_rule"] and report["listed"] == 128

  seen = set()
  for split, n in counts.items():
    files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    assert len(records) == n
    parsed = features.parse_examples(tf.constant(records))
    assert parsed[features.L_KEY].shape == (n,) + features.L_SHAPE
    assert parsed[features.AB_KEY].shape == (n,) + features.AB_SHAPE
    assert parsed[features.GRAY_KEY].shape == (n,) + features.GRAY_SHAPE
    for key in (features.L_KEY, features.AB_KEY, features.GRAY_KEY):
      values = parsed[key].numpy()
      assert -1 <= values.min() and values.max() <= 1, (split, key)
    # Colour photos: every example has real chroma (the B&W ones are out).
    ab = parsed[features.AB_KEY].numpy()
    assert (np.abs(ab).reshape(n, -1).max(axis=1) > 0.05).all(), split
    ids = set(parsed[features.IMAGE_ID_KEY].numpy().tolist())
    assert not ids & seen
    seen |= ids
  assert len(seen) == 123 and not seen & set(COCO_BLACK_AND_WHITE)


@pytest.mark.slow
def test_colorize_ingest_cli_with_multiprocessing_beam(coco128, tmp_path):
  """The CLI prints where the Examples are and what was skipped; Beam args reach the runner."""
  result = CliRunner().invoke(cli.main, [
      "ingest", "--data-root", str(coco128), "--output-root", str(tmp_path / "runs"), "--max-images", "40",
      "--beam-arg=--direct_running_mode=multi_processing", "--beam-arg=--direct_num_workers=2"],
      catch_exceptions=False)
  assert result.exit_code == 0, result.output
  cfg = config.from_dict({"output_root": str(tmp_path / "runs")})
  examples = _examples_of_latest_run(cfg)
  assert examples.uri in result.output
  assert "skipped: grayscale=1" in result.output  # 86 is among the 40 lowest ids
  assert examples.custom_properties["skip_report"].string_value in result.output
  counts = json.loads(examples.custom_properties["split_counts"].string_value)
  assert counts["test"] == 7 and sum(counts.values()) == 39


@pytest.mark.slow
def test_cache_reuses_examples_only_while_the_photos_are_unchanged(coco128, tmp_path):
  """The driver's input fingerprint: same photos -> cached Examples; one photo rewritten -> new Examples."""
  photos = tmp_path / "photos"
  photos.mkdir()
  names = sorted(p.name for p in (coco128 / "train2017").glob("*.jpg")
                 if int(p.stem) not in COCO_BLACK_AND_WHITE)[:7]
  for name in names[:6]:
    shutil.copy(coco128 / "train2017" / name, photos / name)
  cfg = config.from_dict({"output_root": str(tmp_path / "runs"), "ingest": {"data_root": str(photos)}})

  def run_and_list_examples():
    local_runner.run(cfg, last_stage="ingest")
    store = summary.open_store(cfg.metadata_path)
    return _examples_of_latest_run(cfg), store.get_artifacts_by_type("Examples")

  first, stored = run_and_list_examples()
  # The driver's full listing of the snapshot (not TFX's glob, which would see nothing in a flat folder with "*/*").
  assert len(stored) == 1 and first.custom_properties["input_fingerprint"].string_value.startswith("snapshot:files:6,")
  again, stored = run_and_list_examples()
  assert again.id == first.id and len(stored) == 1  # cache hit: no new execution output

  # Same file name, other content (another real photo): the cache must not hand back the old Examples.
  shutil.copy(coco128 / "train2017" / names[6], photos / names[0])
  changed, stored = run_and_list_examples()
  assert changed.id != first.id and len(stored) == 2
  assert (changed.custom_properties["input_fingerprint"].string_value
          != first.custom_properties["input_fingerprint"].string_value)
  assert sum(json.loads(changed.custom_properties["split_counts"].string_value).values()) == 6


def _split_ids(examples):
  ids = {}
  for split in features.SPLITS:
    files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    records = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    ids[split] = set(features.parse_examples(tf.constant(records))[features.IMAGE_ID_KEY].numpy().tolist()
                     if records else ())
  return ids


@pytest.mark.slow
def test_weekly_spans_newest_ingested_cached_until_a_photo_changes_with_a_fixed_test_set(coco128, tmp_path):
  """Snapshots span-1, then span-2 (more photos) in one bucket-like folder, through the local pipeline."""
  ids = image_files.coco_ids(coco128)
  bucket = tmp_path / "coco"
  image_files.coco_root(coco128, bucket / "span-1", ids[:24])
  cfg = config.from_dict({"output_root": str(tmp_path / "runs"),
                          "ingest": {"data_root": str(bucket), "snapshot": "span-{SPAN}"}})

  def run():
    local_runner.run(cfg, last_stage="ingest")
    return _examples_of_latest_run(cfg), summary.open_store(cfg.metadata_path).get_artifacts_by_type("Examples")

  def span(examples):
    return examples.custom_properties["span"].int_value

  first, stored = run()
  assert span(first) == 1 and len(stored) == 1
  image_files.coco_root(coco128, bucket / "span-2", ids[:40])
  # The tree rule at depth 1 and 2, where TFX's own driver globs and stats ("*/*"), and a folder that is no span.
  (tmp_path / "secret.jpg").write_bytes(b"SECRET")
  for folder in (bucket / "span-2", bucket / "span-2" / "train2017"):
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("gone.jpg", folder / "broken.jpg")
    os.symlink(tmp_path / "secret.jpg", folder / "escape.jpg")
    os.mkfifo(folder / "pipe.jpg")
  # Entries of the data root that are no span, hostile names among them: each gets a decision with its reason.
  (bucket / "notes").mkdir()
  (bucket / "odd\nname").mkdir()
  os.mkdir(os.fsencode(bucket) + b"/caf\xe9")  # not UTF-8
  for i in range(10):
    (bucket / f"zz-{i}").mkdir()
  second, stored = run()
  assert span(second) == 2 and len(stored) == 2
  report = json.loads(tf.io.gfile.GFile(second.custom_properties["skip_report"].string_value).read())
  assert report["snapshot"] == str(bucket / "span-2") and report["span"] == 2 and report["listed"] == 40
  no_span = "its name does not match ingest.snapshot 'span-{SPAN}'"
  assert report["ignored_folders"] == dict.fromkeys(
      ("caf\udce9", "notes", "odd\nname", *(f"zz-{i}" for i in range(10))), no_span)
  # The run summary (`colorize lineage run`, the end of `colorize run`) lists the first 10, one line each.
  result = CliRunner().invoke(cli.main, ["lineage", "--metadata-file", cfg.metadata_path, "run"])
  lines = result.output.splitlines()
  assert result.exit_code == 0 and f"  ingested: span 2 as Examples #{second.id}" in lines, result.output
  ignored = [line for line in lines if line.startswith("  not ingested, no snapshot: ")]
  assert len(ignored) == 10 and ignored[:3] == [f"  not ingested, no snapshot: {name} ({no_span})"
                                                for name in ("caf\\udce9", "notes", "odd\\nname")], result.output
  assert f"  \u2026 and 3 more, all in {second.custom_properties['skip_report'].string_value}" in lines
  assert {s["file"]: s["reason"] for s in report["skipped"] if s["reason"] != "grayscale"} == {
      f"{folder}{name}": reason for folder in ("", "train2017/")
      for name, reason in (("loop.jpg", "broken_link"), ("broken.jpg", "broken_link"), ("escape.jpg", "outside_root"),
                           ("pipe.jpg", "not_a_file"))}
  (bucket / "README.txt").write_text("one more entry that is no span")
  again, stored = run()
  # Unchanged photos, one more ignored entry: the cache hands back span 2's Examples.
  assert again.id == second.id and len(stored) == 2
  photo = bucket / "span-2" / "train2017" / f"{ids[30]:012d}.jpg"
  shutil.copy(coco128 / "train2017" / f"{ids[41]:012d}.jpg", photo)  # another real photo, same name
  changed, stored = run()
  assert changed.id not in (first.id, second.id) and span(changed) == 2 and len(stored) == 3

  # The lineage names the span each Examples artifact was ingested from.
  result = CliRunner().invoke(cli.main, ["lineage", "--metadata-file", cfg.metadata_path, "model", str(changed.id)])
  assert result.exit_code == 0, result.output
  assert f"Examples #{changed.id} ingested by CocoIngest" in result.output and "(span 2)" in result.output
  result = CliRunner().invoke(cli.main, ["lineage", "--metadata-file", cfg.metadata_path, "artifacts", "Examples",
                                         "--format", "json"])
  assert [a["properties"]["span"] for a in json.loads(result.output)] == [1, 2, 2]

  # A folder that looks like a span but is none: one line through the CLI, and no execution left RUNNING.
  (bucket / "span-old").mkdir()
  result = CliRunner().invoke(cli.main, ["ingest", "--data-root", str(bucket), "--snapshot", "span-{SPAN}",
                                         "--output-root", str(tmp_path / "runs")])
  # The step lines (stderr, mixed in here) come before it; the error is the one last line, no traceback.
  lines = result.output.splitlines()
  assert result.exit_code == 1 and "Traceback" not in result.output, result.output
  assert lines[-1].startswith(f"Error: {bucket / 'span-old'} looks like a snapshot but does not match"), lines
  assert sum(line.startswith("Error") for line in lines) == 1, lines
  store = summary.open_store(cfg.metadata_path)
  states = {e.last_known_state for e in store.get_executions()}
  assert metadata_store_pb2.Execution.RUNNING not in states and metadata_store_pb2.Execution.FAILED in states

  # The held-out photos of span 1 are held out in span 2, and no test photo of either is trained on.
  one, two = _split_ids(first), _split_ids(second)
  overlap = set().union(*one.values())
  assert one["test"] and two["test"] & overlap == one["test"]
  assert not (one["test"] | two["test"]) & (one["train"] | two["train"] | one["eval"] | two["eval"])
  assert two["test"] - overlap  # new photos joined the test set too
