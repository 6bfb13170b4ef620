"""Test set-up shared by every test.

The CPU is split into two logical devices before TensorFlow initialises, so
MirroredStrategy tests really train two replicas (LocalDagRunner runs components in
this process, so it cannot be done later).
"""
import pathlib

import pytest

from cli import quiet

quiet.install()  # before TensorFlow is imported, so its start-up chatter is filtered

from trainer import strategy  # noqa: E402

strategy.split_cpu(2)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
COCO128 = SHARED_DATA / "coco128"
HISTORICAL = SHARED_DATA / "historical"


@pytest.fixture(autouse=True)
def no_crash_reports(tmp_path_factory, monkeypatch):
  """Fails a test in which a command reached the CLI's last line of defence (cli/crash.py), in this
  process or in one it started: every known failure must be its own one-line error."""
  from cli import crash
  folder = tmp_path_factory.mktemp("crash_reports")
  monkeypatch.setenv(crash.CRASH_DIR_VARIABLE, str(folder))
  yield folder
  reports = sorted(folder.iterdir())
  assert not reports, f"a command crashed:\n{reports[0].read_text()[-3000:]}"


def pytest_collection_modifyitems(items):
  """The slow end-to-end runs first: under `make test` (pytest-xdist, whole files a worker) the
  longest files then start at once, instead of one of them running alone at the end."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def coco128() -> pathlib.Path:
  if not (COCO128 / "train2017").is_dir():
    pytest.fail(f"real COCO sample missing: {COCO128} (shared/ must sit beside the repo)")
  return COCO128


@pytest.fixture(scope="session")
def historical() -> pathlib.Path:
  if not HISTORICAL.is_dir():
    pytest.fail(f"historical photos missing: {HISTORICAL} (shared/ must sit beside the repo)")
  return HISTORICAL


@pytest.fixture(scope="session")
def coco128_examples(coco128, tmp_path_factory):
  """The real coco128 photos ingested by CocoIngest's executor (in-process Beam): an Examples artifact.

  Splits with the default IngestConfig: train 88, eval 9, test 26 (the 5 black-and-white
  photos skipped). For tests of the stages that read examples.
  """
  from tfx.types import standard_artifacts

  from components.ingest import executor
  from pipelines import config

  ingest = config.IngestConfig()
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path_factory.mktemp("coco128_examples"))
  executor.Executor().Do({}, {executor.EXAMPLES_KEY: [examples]}, {
      "input_base": str(coco128),
      "max_images": ingest.max_images,
      "categories": ",".join(ingest.categories),
      "test_fraction": ingest.test_fraction,
      "eval_fraction": ingest.eval_fraction,
      "keep_grayscale": int(ingest.keep_grayscale),
  })
  return examples
