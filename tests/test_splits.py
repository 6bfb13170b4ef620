"""components/ingest/splits.py: the split rule is deterministic, stable across machines and exact."""
import json
import subprocess
import sys

import pytest

from components.ingest import splits
from schemas import features

COCO_IDS = list(range(1, 20001))


def _assign_all(image_ids, test_images, test_fraction, eval_fraction):
  """The split rule applied to photos that are all usable colour photos."""
  ranks = splits.test_ranks(image_ids)
  k = splits.test_size(len(image_ids), test_images, test_fraction)
  result, boundary = {}, []
  for image_id in image_ids:
    route = splits.route(ranks[image_id], True, k)
    if route == splits.TEST:
      result[image_id] = features.TEST_SPLIT
    elif route == splits.BOUNDARY:
      boundary.append((ranks[image_id], image_id))
    else:
      result[image_id] = splits.train_or_eval(image_id, eval_fraction)
  test_count = sum(1 for s in result.values() if s == features.TEST_SPLIT)
  result.update(splits.settle_boundary(boundary, test_count, k, eval_fraction))
  return result


def test_same_split_in_a_fresh_interpreter_with_another_hash_seed():
  here = {str(i): s for i, s in _assign_all(COCO_IDS[:3000], 1000, 0.2, 0.1).items()}
  code = ("import json, sys; sys.path.insert(0, 'tests'); import test_splits; "
          "print(json.dumps({str(i): s for i, s in test_splits._assign_all(test_splits.COCO_IDS[:3000], 1000, 0.2, "
          "0.1).items()}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": "12345", "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""})
  assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_keys_are_sha256_of_the_id_so_every_machine_agrees():
  # Pinned values: a change here would move photos between splits for existing users.
  assert splits.test_key(9) == 762735088861097746
  assert splits.test_key(25) == 16845971822966856191
  assert splits.eval_draw(9) == pytest.approx(0.6464914432851727, abs=1e-15)


@pytest.mark.parametrize("n, expected_test", [(128, 26), (1000, 200), (4999, 1000), (20000, 1000)])
def test_test_split_is_1000_or_the_fraction_for_small_datasets(n, expected_test):
  assigned = _assign_all(COCO_IDS[:n], 1000, 0.2, 0.1)
  counts = {s: list(assigned.values()).count(s) for s in features.SPLITS}
  assert counts[features.TEST_SPLIT] == expected_test
  assert sum(counts.values()) == n
  eval_share = counts[features.EVAL_SPLIT] / (n - expected_test)
  assert abs(eval_share - 0.1) < (0.1 if n < 1000 else 0.02)


def test_test_split_is_the_smallest_keys():
  ids = COCO_IDS[:5000]
  assigned = _assign_all(ids, 1000, 0.2, 0.1)
  by_key = sorted(ids, key=splits.test_key)
  assert {i for i, s in assigned.items() if s == features.TEST_SPLIT} == set(by_key[:1000])


def test_eval_membership_does_not_depend_on_the_rest_of_the_dataset():
  small = _assign_all(COCO_IDS[:2000], 1000, 0.2, 0.1)
  large = _assign_all(COCO_IDS, 1000, 0.2, 0.1)
  for image_id, split in small.items():
    if split != features.TEST_SPLIT and large[image_id] != features.TEST_SPLIT:
      assert split == large[image_id]


def test_boundary_replaces_unusable_test_photos_in_rank_order():
  k = 10
  boundary = [(k + 5, 105), (k + 1, 101), (k + 3, 103)]
  placed = dict(splits.settle_boundary(boundary, test_count=8, k=k, eval_fraction=0.1))
  assert placed[101] == features.TEST_SPLIT and placed[103] == features.TEST_SPLIT
  assert placed[105] == splits.train_or_eval(105, 0.1)


def test_black_and_white_photos_never_route_to_test():
  assert splits.route(0, colour=False, k=10) == splits.DRAW
  assert splits.route(0, colour=True, k=10) == splits.TEST
  assert splits.route(10, colour=True, k=10) == splits.BOUNDARY
  assert splits.route(10 + splits.margin(10), colour=True, k=10) == splits.DRAW
