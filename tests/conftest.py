"""Test set-up shared by every test.

The CPU is split into two logical devices before TensorFlow initialises, so
MirroredStrategy tests really train two replicas (LocalDagRunner runs components in
this process, so it cannot be done later).
"""
import os
import pathlib

import pytest

from pipelines import quiet

quiet.install()

from trainer import strategy  # pylint: disable=g-import-not-at-top,wrong-import-position

strategy.split_cpu(2)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
COCO128 = SHARED_DATA / "coco128"
HISTORICAL = SHARED_DATA / "historical"


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
