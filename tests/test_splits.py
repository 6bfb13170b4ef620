"""components/ingest/splits.py: the split of a photo is a function of its id alone, stable as data accumulates."""
import json
import subprocess
import sys

import pytest

from components.ingest import splits
from schemas import features

COCO_IDS = list(range(1, 20001))


def _assign_all(image_ids, test_fraction=0.2, eval_fraction=0.1):
  return {image_id: splits.split_of(image_id, True, test_fraction, eval_fraction) for image_id in image_ids}


def test_same_split_in_a_fresh_interpreter_with_another_hash_seed():
  here = {str(i): s for i, s in _assign_all(COCO_IDS[:3000]).items()}
  code = ("import json, sys; sys.path.insert(0, 'tests'); import test_splits; "
          "print(json.dumps({str(i): s for i, s in test_splits._assign_all(test_splits.COCO_IDS[:3000]).items()}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": "12345", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""})
  assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_draws_are_sha256_of_the_id_so_every_machine_agrees():
  # Pinned values: a change here would move photos between splits for existing users.
  assert splits.test_draw(9) == 762735088861097746 / 2 ** 64
  assert splits.test_draw(25) == 16845971822966856191 / 2 ** 64
  assert splits.eval_draw(9) == pytest.approx(0.6464914432851727, abs=1e-15)


@pytest.mark.parametrize("n", [128, 1000, 20000])
def test_shares_follow_the_fractions(n):
  assigned = _assign_all(COCO_IDS[:n])
  counts = {s: list(assigned.values()).count(s) for s in features.SPLITS}
  assert sum(counts.values()) == n
  tolerance = 4 / n ** 0.5  # four standard deviations of a share, at most
  assert abs(counts[features.TEST_SPLIT] / n - 0.2) < tolerance
  assert abs(counts[features.EVAL_SPLIT] / (n - counts[features.TEST_SPLIT]) - 0.1) < tolerance


def test_accumulating_data_never_moves_a_photo_between_splits():
  """Span after span holds more photos: every photo keeps its split, in particular test stays test."""
  spans = [COCO_IDS[:500], COCO_IDS[:2000], COCO_IDS[:2000:3] + COCO_IDS[5000:9000], COCO_IDS]
  seen = {}
  for ids in spans:
    for image_id, split in _assign_all(ids).items():
      assert seen.setdefault(image_id, split) == split, image_id
  tested = {i for i, s in seen.items() if s == features.TEST_SPLIT}
  assert tested and all(splits.test_draw(i) < 0.2 for i in tested)
  assert all(splits.test_draw(i) >= 0.2 for i, s in seen.items() if s != features.TEST_SPLIT)


def test_black_and_white_photos_never_go_to_test():
  low = next(i for i in COCO_IDS if splits.test_draw(i) < 0.2)
  assert splits.split_of(low, True, 0.2, 0.1) == features.TEST_SPLIT
  assert splits.split_of(low, False, 0.2, 0.1) == (
      features.EVAL_SPLIT if splits.eval_draw(low) < 0.1 else features.TRAIN_SPLIT)
