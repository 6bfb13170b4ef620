"""gs:// against gcp-storage-emulator (a GCS JSON API server on loopback, started here).

`colorize upload` puts the real COCO sample in a bucket (parallel, resumable), the
ingestion reads a COCO root from a bucket (listing, annotations, photos, input
fingerprint: all through Beam's FileSystems), and its Examples writer writes gzip
TFRecords to a bucket through Beam. What TensorFlow itself reads and writes on gs://
(tf.io.gfile) cannot be tested here: see tests/gcs_fixtures.py.
"""
import base64
import json
import os
import shutil

from click.testing import CliRunner
from gcs_fixtures import BUCKET
from gcs_fixtures import Emulator
from gcs_fixtures import free_port
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
import google_crc32c
import image_files
import pytest

from cli import main as cli
from cloud import gcs_upload


@pytest.fixture(scope="module")
def emulator():
  server = Emulator()
  previous = os.environ.get("STORAGE_EMULATOR_HOST")
  os.environ["STORAGE_EMULATOR_HOST"] = server.url
  yield server
  server.stop()
  if previous is None:
    os.environ.pop("STORAGE_EMULATOR_HOST")
  else:
    os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="module")
def client(emulator):
  return storage.Client(project="colorize-test", credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": emulator.url})


@pytest.fixture(scope="module")
def uploaded(emulator, client, coco128):
  """The real COCO sample, uploaded once by the CLI."""
  result = CliRunner().invoke(cli.main, ["upload", str(coco128), f"gs://{BUCKET}/coco128", "--workers", "4"])
  assert result.exit_code == 0, result.output
  return result.output


@pytest.fixture
def anonymous_beam_gcs(emulator, monkeypatch):
  # No login and no metadata server: Beam falls back to an anonymous client at once.
  monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
  # google-auth reads NO_GCE_CHECK once, at import; this is that setting for this process.
  monkeypatch.setattr("google.auth.compute_engine._metadata._NO_GCE_CHECK", True)


def _crc(data: bytes) -> str:
  return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def test_upload_copies_every_file_with_its_checksum(uploaded, client, coco128):
  local = [entry.relative for entry in gcs_upload.local_files(str(coco128)).files]
  assert f"uploaded {len(local)} files" in uploaded and "skipped 0" in uploaded
  blobs = {b.name: b for b in client.list_blobs(BUCKET, prefix="coco128/")}
  assert sorted(blobs) == sorted(f"coco128/{f}" for f in local)
  for relative in local:
    data = (coco128 / relative).read_bytes()
    assert (blobs[f"coco128/{relative}"].size, blobs[f"coco128/{relative}"].crc32c) == (len(data), _crc(data))
  sample = local[len(local) // 2]
  assert client.bucket(BUCKET).blob(f"coco128/{sample}").download_as_bytes() == (coco128 / sample).read_bytes()


def test_upload_resumes_by_content(uploaded, client, coco128, tmp_path):
  copy = tmp_path / "coco"
  shutil.copytree(coco128, copy)
  destination = f"gs://{BUCKET}/resume"
  first = gcs_upload.upload(str(copy), destination, workers=4, progress=False)
  assert not first.skipped and not first.failed and len(first.uploaded) == len(gcs_upload.local_files(str(copy)).files)
  again = gcs_upload.upload(str(copy), destination, workers=4, progress=False)
  assert again.uploaded == [] and len(again.skipped) == len(first.uploaded)
  # One object lost (an interrupted run) and one photo changed locally: exactly these two go again.
  photos = sorted(os.listdir(copy / "train2017"))
  client.bucket(BUCKET).blob(f"resume/train2017/{photos[0]}").delete()
  changed = copy / "train2017" / photos[1]
  changed.write_bytes(changed.read_bytes()[:-100])
  third = gcs_upload.upload(str(copy), destination, workers=4, progress=False)
  assert third.uploaded == [f"train2017/{photos[0]}", f"train2017/{photos[1]}"]
  assert third.bytes_uploaded == sum((copy / "train2017" / p).stat().st_size for p in photos[:2])
  blob = client.bucket(BUCKET).get_blob(f"resume/train2017/{photos[1]}")
  assert blob.size == changed.stat().st_size


def test_upload_never_leaves_its_folder_and_lists_what_it_does_not_upload(emulator, client, coco128, historical,
                                                                       tmp_path):
  source = tmp_path / "coco"
  (source / "train2017").mkdir(parents=True)
  photos = sorted((coco128 / "train2017").iterdir())[:3]
  for photo in photos:
    shutil.copy(photo, source / "train2017" / photo.name)
  (source / "val2017").symlink_to(source / "train2017", target_is_directory=True)  # inside: followed
  (source / "hostname").symlink_to("/etc/hostname")                               # a system file: never
  (source / "outside").symlink_to(historical, target_is_directory=True)
  (source / "broken.jpg").symlink_to(source / "gone.jpg")
  os.mkfifo(source / "pipe.jpg")
  result = CliRunner().invoke(cli.main, ["upload", str(source), f"gs://{BUCKET}/links", "--workers", "2"])
  assert result.exit_code == 0, result.output
  names = sorted(b.name for b in client.list_blobs(BUCKET, prefix="links/"))
  assert names == sorted(f"links/{split}/{p.name}" for split in ("train2017", "val2017") for p in photos)
  assert "uploaded 6 files" in result.output and "not uploaded 4" in result.output
  for name, reason in (("hostname", "link leads outside"), ("outside", "link leads outside"),
                       ("broken.jpg", "broken link"), ("pipe.jpg", "named pipe (FIFO)")):
    assert any(line.startswith(f"  not uploaded: {source / name}: ") and reason in line
               for line in result.output.splitlines()), (name, result.output)


@pytest.mark.parametrize("args, message", [
    (["/no/such/folder", f"gs://{BUCKET}/x"], "not a folder"),
    ([".", "s3://bucket/x"], "destination must be gs://BUCKET"),
    ([".", "gs://no-such-bucket/x"], "bucket gs://no-such-bucket does not exist"),
])
def test_upload_errors_are_clear(emulator, args, message):
  result = CliRunner().invoke(cli.main, ["upload", *args])
  assert result.exit_code == 1
  assert message in result.output


def test_ingestion_writes_its_examples_to_gs(anonymous_beam_gcs, client, coco128, tmp_path):
  """Shard files, their commit (a rename is a copy and a delete on GCS) and the report, all on gs://."""
  import tensorflow as tf

  folder = tmp_path / "photos"
  folder.mkdir()
  for photo in sorted((coco128 / "train2017").glob("*.jpg"))[:12]:
    shutil.copy(photo, folder / photo.name)
  counts = _ingest_split_counts(str(folder), f"gs://{BUCKET}/examples")
  blobs = list(client.list_blobs(BUCKET, prefix="examples/"))
  names = sorted(b.name for b in blobs)
  assert "examples/skip_report.json" in names
  assert not [n for n in names if "/.temp-" in n]  # temp files committed or deleted
  ids = {}
  for blob in blobs:
    if blob.name.startswith("examples/Split-"):
      data = blob.download_as_bytes()
      assert data[:2] == b"\x1f\x8b"  # ordinary gzip, as the Examples format requires
      path = tmp_path / blob.name.replace("/", "_")
      path.write_bytes(data)
      split = blob.name.split("/")[1][len("Split-"):]
      for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        ids.setdefault(split, []).append(example.features.feature["image_id"].int64_list.value[0])
  assert {split: len(v) for split, v in ids.items()} == {s: n for s, n in counts.items() if n}
  assert sorted(sum(ids.values(), [])) == sorted(int(p.stem) for p in folder.iterdir())


def _ingest_split_counts(input_base: str, output_uri: str) -> dict:
  """CocoIngest's executor with the default IngestConfig, in-process Beam; the artifact's split counts."""
  from tfx.types import standard_artifacts

  from components.ingest import executor
  from pipelines import config
  ingest = config.IngestConfig()
  examples = standard_artifacts.Examples()
  examples.uri = output_uri
  executor.Executor().Do({}, {executor.EXAMPLES_KEY: [examples]}, {
      "input_base": input_base, "max_images": 0, "categories": "",
      "test_fraction": ingest.test_fraction, "eval_fraction": ingest.eval_fraction, "keep_grayscale": 0})
  return json.loads(examples.get_string_custom_property("split_counts"))


def test_ingestion_reads_a_coco_root_from_gs(anonymous_beam_gcs, client, coco128, tmp_path):
  """Listing, annotations and photos from gs://; the same Examples split counts as from the local copy."""
  from components.ingest import sources
  root = tmp_path / "coco"
  # 11 real colour photos, black-and-white 86 (a skip), and one annotated photo missing (another).
  ids = image_files.coco_ids(coco128)
  annotations = image_files.coco_root(coco128, root, ids[:11] + [86], missing=ids[11:12])
  bucket = client.bucket(BUCKET)
  for path in sorted(p for p in root.rglob("*") if p.is_file()):
    bucket.blob(f"small_coco/{path.relative_to(root).as_posix()}").upload_from_filename(str(path))
  gs_root = f"gs://{BUCKET}/small_coco"

  local = _ingest_split_counts(str(root), str(tmp_path / "local"))
  from_gs = _ingest_split_counts(gs_root, str(tmp_path / "from_gs"))
  assert from_gs == local and sum(local.values()) == 11
  report = json.loads((tmp_path / "from_gs" / "skip_report.json").read_text())
  assert {s["reason"] for s in report["skipped"]} == {"grayscale", "missing"}
  assert report["annotations"] == [f"{gs_root}/annotations/instances_train2017.json"]

  # The driver's fingerprint works on gs:// too: stable, and a rewritten photo changes it.
  fingerprint = sources.input_fingerprint(gs_root)
  assert fingerprint == sources.input_fingerprint(gs_root) and fingerprint.startswith("files:13,")
  first = annotations["images"][0]["file_name"]
  other = sorted((coco128 / "train2017").glob("*.jpg"))[-1]  # a real photo not among the 13
  bucket.blob(f"small_coco/train2017/{first}").upload_from_filename(str(other))
  assert sources.input_fingerprint(gs_root) != fingerprint


def test_unusable_gs_roots_fail_at_once_saying_what_is_missing(emulator, monkeypatch, tmp_path):
  """`colorize ingest` on a missing bucket, an empty prefix, a closed port, no credentials: one line, exit 1."""
  def ingest(root: str) -> str:
    result = CliRunner().invoke(cli.main, ["ingest", "--data-root", root, "--output-root", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return [line for line in result.output.splitlines() if line.startswith("Error: ")][0]

  assert "bucket gs://no-such-bucket does not exist" in ingest("gs://no-such-bucket/coco")
  assert f"data root does not exist: gs://{BUCKET}/nothing-here" in ingest(f"gs://{BUCKET}/nothing-here")
  closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", closed)
  assert f"Cloud Storage at {closed} cannot be reached (network" in ingest(f"gs://{BUCKET}/coco")
  # The real endpoint, without any login: no key file, an empty gcloud config, and (offline) no network.
  monkeypatch.delenv("STORAGE_EMULATOR_HOST")
  monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
  monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
  monkeypatch.setenv("HTTPS_PROXY", closed)
  assert "no Google Cloud credentials found" in ingest(f"gs://{BUCKET}/coco")
