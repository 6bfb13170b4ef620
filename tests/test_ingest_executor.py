"""CocoIngest's executor with hand-built artifacts: real photos mixed with every kind of bad file."""
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import apache_beam as beam
from apache_beam.metrics import monitoring_infos
from google.protobuf import text_format
import image_files
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.util import tfxio_utils
from tfx.types import standard_artifacts
from tfx_bsl.tfxio import dataset_options

from components.ingest import executor
from components.ingest import shard_writer
from components.ingest import sources
from components.ingest import splits
from imaging import images
from schemas import features

BLACK_AND_WHITE = ("000000000086.jpg", "000000000328.jpg")
BAD_FILES = {  # file -> expected skip reason
    "truncated.jpg": "truncated",
    "not_a_photo.txt": "not_an_image",
    "empty.jpg": "not_an_image",
    "tiny.png": "too_small",
    "corrupt.png": "corrupt",
    "bomb.png": "too_large",
    "float.tif": "unsupported_mode",
    BLACK_AND_WHITE[0]: "grayscale",
    BLACK_AND_WHITE[1]: "grayscale",
    "gray16.png": "grayscale",  # decoded fine (16-bit), then recognised as a grey picture
}
REFUSED_UNREAD = {".DS_Store": "hidden"}  # reported from the listing, never opened
ODD_BUT_FINE = ("cmyk.jpg", "rgba.png", "palette.png", "rotated.jpg", "more/000000000030.jpg")


def _colour_photos(coco128, n):
  names = sorted(p.name for p in (coco128 / "train2017").glob("*.jpg"))
  return [n_ for n_ in names if int(n_[:-4]) not in (86, 328, 359, 542, 634, 30)][:n]


@pytest.fixture(scope="module")
def mixed_folder(coco128, tmp_path_factory):
  """24 real colour photos, 2 real black-and-white ones, odd-but-fine files and bad files."""
  folder = tmp_path_factory.mktemp("mixed")
  train = coco128 / "train2017"
  for name in _colour_photos(coco128, 24) + list(BLACK_AND_WHITE):
    shutil.copy(train / name, folder / name)
  jpg = (train / "000000000009.jpg").read_bytes()
  photo = Image.open(io.BytesIO(jpg)).convert("RGB")
  files = {
      "truncated.jpg": jpg[:len(jpg) // 2],
      "not_a_photo.txt": b"these are notes, not a photo\n",
      "empty.jpg": b"",
      "tiny.png": image_files.encode(photo.resize((20, 15)), "PNG"),
      "corrupt.png": image_files.corrupt_png(photo),
      "bomb.png": image_files.decompression_bomb(),
      "float.tif": image_files.float_tiff(photo),
      "cmyk.jpg": image_files.encode(photo.convert("CMYK"), "JPEG"),
      "rgba.png": image_files.rgba_half_transparent(photo),
      "palette.png": image_files.palette_with_transparency(photo),
      "gray16.png": image_files.gray16(photo),
      "rotated.jpg": image_files.rotated_with_exif(photo),
      ".DS_Store": b"hidden files are reported, not read",
  }
  for name, data in files.items():
    (folder / name).write_bytes(data)
  (folder / "more").mkdir()
  shutil.copy(train / "000000000030.jpg", folder / "more" / "000000000030.jpg")
  return folder


def _props(input_base, **overrides):
  props = {"input_base": str(input_base), "max_images": 0, "categories": "", "test_fraction": 0.2,
           "eval_fraction": 0.25, "keep_grayscale": 0}
  props.update(overrides)
  return props


def _ingest(tmp_path, input_base, runner=None, **overrides):
  """Runs Do() with hand-built artifacts; returns (examples artifact, Beam pipeline result)."""
  pipelines = []

  def make_pipeline():
    pipelines.append(beam.Pipeline(runner=runner))
    return pipelines[-1]

  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  context = executor.Executor.Context(tmp_dir=str(tmp_path / "tmp"), make_beam_pipeline_fn=make_pipeline)
  executor.Executor(context).Do({}, {executor.EXAMPLES_KEY: [examples]}, _props(input_base, **overrides))
  return examples, pipelines[0].result


def _records(examples, split):
  pattern = os.path.join(examples.uri, f"Split-{split}", "*.gz")
  return list(tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP").as_numpy_iterator())


def _read_split(examples, split):
  records = _records(examples, split)
  return features.parse_examples(tf.constant(records)) if records else None


def _split_ids(examples):
  return {split: set(parsed[features.IMAGE_ID_KEY].numpy().tolist()) if parsed else set()
          for split, parsed in ((s, _read_split(examples, s)) for s in features.SPLITS)}


@pytest.fixture(scope="module")
def mixed_run(mixed_folder, tmp_path_factory):
  return _ingest(tmp_path_factory.mktemp("mixed_run"), mixed_folder)


def test_bad_files_are_skipped_counted_and_reported(mixed_run):
  examples, result = mixed_run
  report = json.loads(tf.io.gfile.GFile(examples.get_string_custom_property("skip_report")).read())
  assert {s["file"]: s["reason"] for s in report["skipped"]} == BAD_FILES | REFUSED_UNREAD
  assert all(s["detail"] for s in report["skipped"])
  expected_counts = {}
  for reason in (BAD_FILES | REFUSED_UNREAD).values():
    expected_counts[reason] = expected_counts.get(reason, 0) + 1
  assert report["skip_counts"] == expected_counts
  assert json.loads(examples.get_string_custom_property("skip_counts")) == expected_counts
  metrics = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(executor.METRICS_NAMESPACE))
  counters = {c.key.metric.name: c.committed for c in metrics["counters"]}
  assert {k[len("skipped_"):]: v for k, v in counters.items() if k.startswith("skipped_")} == expected_counts
  assert counters["examples"] == 24 + len(ODD_BUT_FINE)


def test_splits_hold_every_usable_photo_once_by_the_rule(mixed_run):
  examples, _ = mixed_run
  listed = 24 + len(BAD_FILES) + len(ODD_BUT_FINE)
  counts = json.loads(examples.get_string_custom_property("split_counts"))
  assert sum(counts.values()) == 24 + len(ODD_BUT_FINE)
  ids = _split_ids(examples)
  assert {s: len(v) for s, v in ids.items()} == counts
  for split, members in ids.items():
    assert all(splits.split_of(i, True, 0.2, 0.25) == split for i in members), split
  assert counts[features.TEST_SPLIT] == 6  # of 29 usable colour photos, at test_fraction 0.2
  assert not (ids["train"] & ids["eval"]) and not (ids["train"] & ids["test"]) and not (ids["eval"] & ids["test"])
  assert not {86, 328} & set().union(*ids.values())
  assert listed == 39


def test_examples_are_a_standard_artifact_with_model_ready_features(mixed_run):
  examples, _ = mixed_run
  assert json.loads(examples.split_names) == list(features.SPLITS)
  assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
  assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"
  parsed = _read_split(examples, "train")
  n = parsed[features.L_KEY].shape[0]
  assert parsed[features.L_KEY].shape == (n,) + features.L_SHAPE
  assert parsed[features.AB_KEY].shape == (n,) + features.AB_SHAPE
  assert parsed[features.GRAY_KEY].shape == (n,) + features.GRAY_SHAPE
  for key, low, high in ((features.L_KEY, -1, 1), (features.AB_KEY, -1, 1), (features.GRAY_KEY, -1, 1)):
    values = parsed[key].numpy()
    assert low <= values.min() and values.max() <= high, key
    assert values.std() > 0.01, key
  assert all(not s.startswith(b"/") for s in parsed[features.SOURCE_KEY].numpy())  # relative to the input root
  # What the standard Trainer/Evaluator use to read an Examples artifact.
  schema = text_format.Parse(open(features.SCHEMA_FILE).read(), schema_pb2.Schema())
  factory = tfxio_utils.get_tfxio_factory_from_artifact([examples], ["test"], schema=schema)
  split_files = os.path.join(examples.uri, "Split-test", "*")
  dataset = factory(split_files).TensorFlowDataset(dataset_options.TensorFlowDatasetOptions(batch_size=4, num_epochs=1))
  assert sum(int(batch[features.IMAGE_ID_KEY].shape[0]) for batch in dataset) == len(_split_ids(examples)["test"])


def test_odd_files_are_decoded_upright_and_flattened(mixed_run):
  examples, _ = mixed_run
  by_source = {}
  for split in features.SPLITS:
    parsed = _read_split(examples, split)
    if parsed:
      for source, gray in zip(parsed[features.SOURCE_KEY].numpy(), parsed[features.GRAY_KEY].numpy(), strict=True):
        by_source[source.decode()] = gray
  assert set(ODD_BUT_FINE) <= set(by_source)
  # The EXIF-rotated file is the same upright photo as the CMYK one (both from 000000000009).
  assert np.abs(by_source["rotated.jpg"] - by_source["cmyk.jpg"]).mean() < 0.05
  # The left half of rgba.png is transparent: white after compositing.
  assert by_source["rgba.png"][:, :100].min() > 0.99


def test_same_photos_same_splits_on_a_second_run(mixed_folder, mixed_run, tmp_path):
  again, _ = _ingest(tmp_path, mixed_folder)
  assert _split_ids(again) == _split_ids(mixed_run[0])


def test_keep_grayscale_keeps_black_and_white_out_of_test(mixed_folder, mixed_run, tmp_path):
  examples, _ = _ingest(tmp_path, mixed_folder, keep_grayscale=1)
  report = json.loads(tf.io.gfile.GFile(examples.get_string_custom_property("skip_report")).read())
  assert report["grayscale_kept"] == sorted(BLACK_AND_WHITE + ("gray16.png",))
  assert "grayscale" not in report["skip_counts"]
  ids = _split_ids(examples)
  assert {86, 328} <= ids["train"] | ids["eval"]
  assert ids["test"] == _split_ids(mixed_run[0])["test"]


@pytest.fixture(scope="module")
def small_coco(coco128, tmp_path_factory):
  """A COCO root: 30 coco128 photos, their annotations, plus one annotated photo missing on disk."""
  root = tmp_path_factory.mktemp("small_coco")
  ids = image_files.coco_ids(coco128)
  return root, image_files.coco_root(coco128, root, ids[:30], missing=ids[30:31])


def test_coco_root_uses_annotations_licences_and_reports_missing_files(small_coco, tmp_path):
  root, annotations = small_coco
  examples, _ = _ingest(tmp_path, root)
  report = json.loads(tf.io.gfile.GFile(examples.get_string_custom_property("skip_report")).read())
  missing = annotations["images"][30]["file_name"]
  absent = [s for s in report["skipped"] if s["reason"] == "missing"]
  assert [(s["file"], s["image_id"]) for s in absent] == [(f"train2017/{missing}", annotations["images"][30]["id"])]
  assert report["layout"] == "coco" and report["listed"] == 30
  licence_of = {i["id"]: i["license"] for i in annotations["images"]}
  parsed = tf.io.parse_example(tf.constant(_records(examples, "train")), features.feature_spec())
  image_ids, licences = parsed[features.IMAGE_ID_KEY].numpy(), parsed[features.LICENSE_KEY].numpy()
  assert len(image_ids) > 10
  assert licences.tolist() == [licence_of[int(i)] for i in image_ids]


def test_category_filter_and_max_images(small_coco, tmp_path):
  root, annotations = small_coco
  dogs = {c["id"] for c in annotations["categories"] if c["name"] == "dog"}
  with_dog = {a["image_id"] for a in annotations["annotations"] if a["category_id"] in dogs}
  listing = sources.list_photos(str(root), ["dog"])
  assert {p.image_id for p in listing.photos} == with_dog and with_dog
  limited = sources.list_photos(str(root), max_images=10)
  assert [p.image_id for p in limited.photos] == sorted(i["id"] for i in annotations["images"])[:10]
  examples, _ = _ingest(tmp_path, root, categories="dog")
  assert sum(json.loads(examples.get_string_custom_property("split_counts")).values()) == len(with_dog)


def test_input_fingerprint_follows_photos_and_annotations_only(small_coco, tmp_path):
  root = tmp_path / "coco"
  shutil.copytree(small_coco[0], root)
  seen = [sources.input_fingerprint(str(root))]
  assert sources.input_fingerprint(str(root) + "/") == seen[0]
  # Beside the COCO folders, and hidden files: not part of the input.
  (root / "labels").mkdir()
  (root / "labels" / "x.txt").write_text("yolo labels")
  (root / "train2017" / ".DS_Store").write_bytes(b"finder")
  assert sources.input_fingerprint(str(root)) == seen[0]
  photos = sorted((root / "train2017").glob("*.jpg"))
  stat = photos[0].stat()

  def changes(what):
    seen.append(sources.input_fingerprint(str(root)))
    assert seen[-1] not in seen[:-1], what

  os.utime(photos[0], (stat.st_atime, stat.st_mtime + 10))  # rewritten, same size
  changes("photo rewritten")
  photos[1].unlink()
  changes("photo removed")
  shutil.copy(photos[2], root / "train2017" / "000000999999.jpg")
  changes("photo added")
  annotations = root / "annotations" / "instances_train2017.json"
  annotations.write_text(annotations.read_text().replace('"license"', '"license" ', 1))
  changes("annotations changed")
  assert seen[-1].startswith("files:31,")  # 30 photos - 1 + 1, and the annotations file


def test_input_errors_name_the_path(tmp_path, small_coco):
  with pytest.raises(sources.SourceError, match=str(tmp_path / "nowhere")):
    _ingest(tmp_path, tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(sources.SourceError, match=f"no images found under {tmp_path / 'empty'}"):
    _ingest(tmp_path, tmp_path / "empty")
  (tmp_path / "junk").mkdir()
  (tmp_path / "junk" / "a.txt").write_text("not a photo")
  with pytest.raises(executor.EmptyDatasetError, match=str(tmp_path / "junk")):
    _ingest(tmp_path, tmp_path / "junk")
  with pytest.raises(sources.SourceError, match="needs COCO annotations"):
    _ingest(tmp_path, tmp_path / "junk", categories="dog")
  with pytest.raises(sources.SourceError, match="unknown COCO categories"):
    _ingest(tmp_path, small_coco[0], categories="unicorn")


def test_real_coco128_fixture(coco128_examples):
  counts = json.loads(coco128_examples.get_string_custom_property("split_counts"))
  assert counts == {"train": 88, "eval": 9, "test": 26}
  report = json.loads(tf.io.gfile.GFile(coco128_examples.get_string_custom_property("skip_report")).read())
  assert sorted(s["image_id"] for s in report["skipped"]) == [86, 328, 359, 542, 634]
  assert {s["reason"] for s in report["skipped"]} == {"grayscale"}


# Hostile inputs: every entry of the data root is ingested or reported, and nothing outside it is read.
SECRET = b"SECRET-do-not-copy-" * 8
ODD_NAMES = ("br[a]ck.jpg", "st*r.jpg", "q?.jpg", "sp ace.jpg", "\u00fcn\u00ef.jpg", "new\nline.jpg",
             os.fsdecode(b"\xff\xfe-not-utf8.jpg"))
# Distinct photos whose names clash as COCO ids, stems or (on some disks) case.
CLASHING_NAMES = ("a/000000000777.jpg", "b/000000000777.jpg", "9.jpg", "09.jpg", "p.jpg", "p.JPG")
HOSTILE_REFUSALS = {
    "x.jpg": "not_a_file",          # a FIFO: opening it would block forever
    "loop1.jpg": "broken_link", "loop2.jpg": "broken_link", "broken.jpg": "broken_link",
    "escape.jpg": "outside_root",   # a link to a file outside the root (SECRET)
    "outside": "outside_root",      # a link to a folder outside the root
    "inside.jpg": "duplicate",      # a link to a photo of the root
    "hard.jpg": "duplicate",        # a hard link to another photo
    "again": "duplicate",           # a link to a folder of the root
    ".hidden.jpg": "hidden",
}
# The same at depth 1 and 2 (the rule holds at any depth).
for _folder in ("deep", "deep/er"):
  HOSTILE_REFUSALS.update({f"{_folder}/x.jpg": "not_a_file", f"{_folder}/loop.jpg": "broken_link",
                           f"{_folder}/broken.jpg": "broken_link", f"{_folder}/escape.jpg": "outside_root",
                           f"{_folder}/up": "duplicate"})


class Hung(BaseException):
  """Not an Exception: no `except Exception` in the code under test may turn a hang into a skip."""


class _Watchdog:
  """Fails the test instead of hanging it forever (a FIFO opened for reading blocks)."""

  def __enter__(self):
    signal.signal(signal.SIGALRM, self._fail)
    signal.alarm(300)  # generous: the machine is shared; a FIFO hang is forever

  def __exit__(self, *unused):
    signal.alarm(0)

  @staticmethod
  def _fail(*unused):
    raise Hung("hung (a FIFO opened for reading?)")


@pytest.fixture(scope="module")
def hostile_run(coco128, tmp_path_factory):
  """A data root whose own name is a glob pattern, with real photos under hostile names, special files and links."""
  base = tmp_path_factory.mktemp("hostile")
  root = base / "da[t]a *?"
  root.mkdir()
  photos = _colour_photos(coco128, len(ODD_NAMES) + len(CLASHING_NAMES) + 1)
  names = ODD_NAMES + CLASHING_NAMES
  for name, photo in zip(names, photos, strict=False):
    (root / name).parent.mkdir(exist_ok=True)
    shutil.copy(coco128 / "train2017" / photo, root / name)
  (base / "secret.jpg").write_bytes(SECRET)
  (base / "elsewhere").mkdir()
  shutil.copy(coco128 / "train2017" / photos[-1], base / "elsewhere" / "photo.jpg")
  os.mkfifo(root / "x.jpg")
  os.symlink("loop2.jpg", root / "loop1.jpg")
  os.symlink("loop1.jpg", root / "loop2.jpg")
  os.symlink("gone.jpg", root / "broken.jpg")
  os.symlink(base / "secret.jpg", root / "escape.jpg")
  os.symlink(base / "elsewhere", root / "outside")
  os.symlink("sp ace.jpg", root / "inside.jpg")
  os.link(root / "9.jpg", root / "hard.jpg")
  os.symlink("a", root / "again")
  shutil.copy(coco128 / "train2017" / photos[0], root / ".hidden.jpg")
  for folder in (root / "deep", root / "deep" / "er"):
    folder.mkdir()
    os.mkfifo(folder / "x.jpg")
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("gone.jpg", folder / "broken.jpg")
    os.symlink(base / "secret.jpg", folder / "escape.jpg")
    os.symlink(root, folder / "up")  # a cycle back to the root
  with _Watchdog():
    return _ingest(base, root)


def _report(examples):
  with open(examples.get_string_custom_property("skip_report"), "rb") as f:
    return f.read()


def _sources(examples):
  return {s.decode("utf-8", "surrogateescape")
          for split in features.SPLITS for s in (_read_split(examples, split) or {features.SOURCE_KEY: tf.constant(
              [], tf.string)})[features.SOURCE_KEY].numpy()}


def test_special_files_and_links_are_reported_never_followed_out(hostile_run):
  examples, _ = hostile_run
  report = json.loads(_report(examples))
  assert {s["file"]: s["reason"] for s in report["skipped"]} == HOSTILE_REFUSALS
  assert SECRET[:10] not in _report(examples)
  assert "elsewhere/photo.jpg" not in _sources(examples) and "outside/photo.jpg" not in _sources(examples)


def test_paths_are_literal_and_clashing_names_all_ingested(hostile_run):
  examples, _ = hostile_run
  assert _sources(examples) == set(ODD_NAMES + CLASHING_NAMES)
  ids = _split_ids(examples)
  assert sum(len(v) for v in ids.values()) == len(ODD_NAMES + CLASHING_NAMES)  # one id each


def test_special_files_are_listed_as_refusals_and_never_opened(coco128, tmp_path):
  shutil.copy(coco128 / "train2017" / _colour_photos(coco128, 1)[0], tmp_path / "photo.jpg")
  os.mkfifo(tmp_path / "x.jpg")
  with _Watchdog():
    listing = sources.list_photos(str(tmp_path))
    with pytest.raises(images.Skip, match="FIFO"):  # also when a file becomes a FIFO after the listing
      sources.read_bytes(str(tmp_path / "x.jpg"))
  assert [p.source for p in listing.photos] == ["photo.jpg"]
  assert [(p.source, p.refused) for p in listing.refused] == [("x.jpg", "not_a_file")]


def test_every_link_is_followed_inside_the_root_or_reported(coco128, tmp_path):
  root = tmp_path / "root"
  (root / "sub").mkdir(parents=True)
  shutil.copy(coco128 / "train2017" / _colour_photos(coco128, 1)[0], root / "sub" / "photo.jpg")
  (tmp_path / "secret.jpg").write_bytes(SECRET)
  os.symlink("loop2.jpg", root / "loop1.jpg")
  os.symlink("loop1.jpg", root / "loop2.jpg")
  os.symlink("gone.jpg", root / "broken.jpg")
  os.symlink(tmp_path / "secret.jpg", root / "escape.jpg")
  os.symlink("sub", root / "linked")
  os.symlink("..", root / "sub" / "up")
  listing = sources.list_photos(str(root))
  assert [p.source for p in listing.photos] == ["sub/photo.jpg"]
  assert {p.source: p.refused for p in listing.refused} == {
      "broken.jpg": "broken_link", "loop1.jpg": "broken_link", "loop2.jpg": "broken_link",
      "escape.jpg": "outside_root", "linked": "duplicate", "sub/up": "duplicate"}


def test_a_data_root_named_like_a_pattern_is_literal(coco128, tmp_path):
  root = tmp_path / "da[t]a *?"
  root.mkdir()
  (tmp_path / "data _x").mkdir()  # what the pattern would match
  for name, photo in zip(ODD_NAMES, _colour_photos(coco128, len(ODD_NAMES)), strict=True):
    shutil.copy(coco128 / "train2017" / photo, root / name)
  assert sorted(p.source for p in sources.list_photos(str(root)).photos) == sorted(ODD_NAMES)


def test_image_ids_are_unique_and_stable(tmp_path):
  for name in ("a/000000000777.jpg", "b/000000000777.jpg", "9.jpg", "09.jpg", "10.jpg"):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_bytes(b"x")
  ids = {p.source: p.image_id for p in sources.list_photos(str(tmp_path)).photos}
  assert len(set(ids.values())) == 5 and ids["10.jpg"] == 10  # an unclaimed COCO-style number stays the id
  assert ids == {p.source: p.image_id for p in sources.list_photos(str(tmp_path)).photos}
  # The same image id in two COCO annotation files: both photos listed, with distinct ids.
  coco = tmp_path / "coco"
  for subset in sources.COCO_SUBSETS:
    (coco / subset).mkdir(parents=True)
    (coco / subset / "x.jpg").write_bytes(b"x")
    (coco / "annotations").mkdir(exist_ok=True)
    (coco / "annotations" / f"instances_{subset}.json").write_text(
        json.dumps({"images": [{"id": 5, "file_name": "x.jpg"}]}))
  listed = sources.list_photos(str(coco)).photos
  assert len({p.image_id for p in listed}) == 2 and {p.source for p in listed} == {"train2017/x.jpg", "val2017/x.jpg"}


def test_coco_file_names_outside_the_root_are_refused_unread(small_coco, coco128, tmp_path):
  base = tmp_path / "base"
  root = base / "coco"
  shutil.copytree(small_coco[0], root)
  (base / "secret.jpg").write_bytes(SECRET)
  annotations = json.loads((root / "annotations" / "instances_train2017.json").read_text())
  images_ = annotations["images"]
  outside_photo = coco128 / "train2017" / _colour_photos(coco128, 40)[-1]
  for image, name in zip(images_[:2], ("../../secret.jpg", str(outside_photo)), strict=True):
    (root / "train2017" / image["file_name"]).unlink()
    image["file_name"] = name
  (root / "train2017" / images_[2]["file_name"]).rename(root / "train2017" / "unlisted.jpg")
  images_[2]["file_name"] = "pipe.jpg"
  os.mkfifo(root / "train2017" / "pipe.jpg")
  (root / "annotations" / "instances_train2017.json").write_text(json.dumps(annotations))
  with _Watchdog():
    examples, _ = _ingest(tmp_path, root)
  skipped = {s["file"]: (s["reason"], s["image_id"]) for s in json.loads(_report(examples))["skipped"]}
  assert skipped["train2017/../../secret.jpg"] == ("outside_root", images_[0]["id"])
  assert skipped[str(outside_photo)] == ("outside_root", images_[1]["id"])
  assert skipped["train2017/pipe.jpg"][0] == "not_a_file"
  assert skipped["train2017/unlisted.jpg"][0] == "not_annotated"  # on disk, not in the annotations
  assert SECRET[:10] not in _report(examples)
  assert not {i["id"] for i in images_[:3]} & set().union(*_split_ids(examples).values())


def test_missing_data_root_is_one_line_before_any_heavy_import(tmp_path):
  """`colorize ingest` and `colorize run`: exit 1, one line, no traceback, neither TensorFlow nor Beam imported."""
  for command in ("ingest", "run"):
    result = subprocess.run(
        [sys.executable, "-c", "import atexit, sys; atexit.register(lambda: print('tensorflow' in sys.modules "
         "or 'apache_beam' in sys.modules)); "
         "from cli.main import main; main()", command, "--data-root", str(tmp_path / "nowhere"),
         "--output-root", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: data root does not exist: {tmp_path / 'nowhere'} "
                                                  "(No such file or directory)"]
    assert result.stdout.strip() == "False"


def test_no_example_bytes_cross_the_runner(mixed_run):
  """Beam's sampled element sizes of every PCollection: ids, counts, skips and shard names only."""
  _, result = mixed_run
  largest = [monitoring_infos.extract_distribution(info)[3] for info in result.monitoring_infos()
             if info.urn == monitoring_infos.SAMPLED_BYTE_SIZE_URN]
  assert len(largest) > 5
  assert max(largest) < 5_000  # an example is ~240 KB


def test_failed_attempts_leave_no_duplicate_or_partial_examples(mixed_folder, mixed_run, tmp_path, monkeypatch):
  """The BundleBasedDirectRunner retries failed bundles; two attempts die on purpose, halfway.

  One attempt of the example-making bundle dies after writing examples to its shard files,
  and the commit dies after moving the first split's shards. The output is exactly that of
  the clean run: every photo once, nothing of the failed attempt, no temp files.
  """
  failed = {}
  write, commit_shards = shard_writer.BundleShards.write, shard_writer.commit

  def write_then_die_once(self, key, image_id, record):
    write(self, key, image_id, record)
    if len(self._shards[key].image_ids) == 2 and "write" not in failed:
      failed["write"] = self._shards[key]
      raise RuntimeError("worker lost (injected)")

  def commit_then_die_once(shards, folder, prefix):
    finals = commit_shards(shards, folder, prefix)
    if finals and "commit" not in failed:
      failed["commit"] = finals
      raise RuntimeError("commit interrupted (injected)")
    return finals

  monkeypatch.setattr(shard_writer.BundleShards, "write", write_then_die_once)
  monkeypatch.setattr(shard_writer, "commit", commit_then_die_once)
  examples, _ = _ingest(tmp_path, mixed_folder, runner="BundleBasedDirectRunner")
  assert set(failed) == {"write", "commit"}
  clean_ids = _split_ids(mixed_run[0])
  for split in features.SPLITS:
    parsed = _read_split(examples, split)
    ids = parsed[features.IMAGE_ID_KEY].numpy().tolist() if parsed else []
    assert sorted(ids) == sorted(clean_ids[split]), split
  assert examples.get_string_custom_property("split_counts") == mixed_run[0].get_string_custom_property("split_counts")
  assert all(os.path.exists(final) for final in failed["commit"])
  assert not list((tmp_path / "examples").glob(".temp-*"))



def test_the_beam_graph_does_not_grow_with_the_listing(mixed_folder, tmp_path, monkeypatch):
  """Dataflow refuses a job graph over 10 MB (a listing of a million photos in beam.Create is
  ~18 MB). With 20,000 and with 40,000 more entries (refused, so cheap to run), the graph is
  the same size but for a few file names (with beam.Create of the entries: 206 KB and 382 KB):
  the listing reaches the workers as files. Every entry is still reported."""
  listed = sources.list_photos
  graphs = []
  run = beam.Pipeline.run

  def run_and_measure(pipeline, *args, **kwargs):
    graphs.append(len(pipeline.to_runner_api().SerializeToString()))
    return run(pipeline, *args, **kwargs)

  monkeypatch.setattr(beam.Pipeline, "run", run_and_measure)
  for extra in (20_000, 40_000):
    planted = [sources.Photo(10 ** 12 + i, f"/nowhere/{i:08d}-{'x' * 60}.jpg", f"{i:08d}-{'x' * 60}.jpg",
                             sources.UNKNOWN_LICENSE, images.SkipReason.HIDDEN.value, "planted")
               for i in range(extra)]
    monkeypatch.setattr(sources, "list_photos", lambda *args, planted=planted: dataclasses.replace(
        listed(*args), refused=listed(*args).refused + planted))
    examples, _ = _ingest(tmp_path / str(extra), mixed_folder)
    assert json.loads(examples.get_string_custom_property("skip_counts"))["hidden"] == 1 + extra
  assert abs(graphs[1] - graphs[0]) < 2_000, graphs
