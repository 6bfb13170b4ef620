"""Which split a photo belongs to: a pure function of its image id and of the photo list.

The rule (also written into every skip report):
  test  the K usable colour photos with the smallest test key, where
        K = min(test_images, round(test_fraction * listed photos)). A large dataset
        gets exactly test_images (1000 by default, the Evaluator's protocol), a small
        one test_fraction of itself.
  eval  of the others, those whose eval draw is below eval_fraction.
  train the rest.
The test key and the eval draw are SHA-256 of the image id (two different salts), so the
same photo lands in the same split on every run and machine; a photo's eval/train
membership never changes, and test membership only changes when the photo list does.
Black-and-white photos kept with keep_grayscale never enter test: the test split
measures colour error against a colour ground truth.

Streaming: which photos are usable is only known after decoding them, yet holding
every example until the test split is settled would need memory for the whole dataset.
So photos are ranked by test key up front: ranks below K are test if usable (nothing of
lower rank can push them out), ranks from K + MARGIN on are never test, and only the
MARGIN photos in between (the boundary) wait for the count of usable test photos before
they are placed. The test split comes out short only if more than MARGIN of the first
K + MARGIN photos are unusable; the report then says so.
"""
import hashlib
from typing import List, Sequence, Tuple

from schemas import features

_TEST_SALT = b"colorize/test/"
_EVAL_SALT = b"colorize/eval/"

TEST = "test"          # route: the test split (if usable and colour)
BOUNDARY = "boundary"  # route: decided once the number of usable test photos is known
DRAW = "draw"          # route: train or eval, by the eval draw


def _hash64(salt: bytes, image_id: int) -> int:
  return int.from_bytes(hashlib.sha256(salt + str(int(image_id)).encode()).digest()[:8], "big")


def test_key(image_id: int) -> int:
  """Uniform 64-bit key; the smallest keys make the test split."""
  return _hash64(_TEST_SALT, image_id)


def eval_draw(image_id: int) -> float:
  """Uniform in [0, 1); below eval_fraction means eval."""
  return _hash64(_EVAL_SALT, image_id) / 2.0 ** 64


def test_size(num_listed: int, test_images: int, test_fraction: float) -> int:
  return min(test_images, int(round(test_fraction * num_listed)))


def margin(k: int) -> int:
  """Boundary photos held back to replace unusable ones among the first k."""
  return max(32, k // 10)


def test_ranks(image_ids: Sequence[int]) -> dict:
  """Image id -> rank by test key (0 = smallest); ties, at 2^-64 odds, broken by id."""
  return {image_id: rank for rank, image_id in enumerate(sorted(image_ids, key=lambda i: (test_key(i), i)))}


def route(rank: int, colour: bool, k: int) -> str:
  if not colour or rank >= k + margin(k):
    return DRAW
  return TEST if rank < k else BOUNDARY


def train_or_eval(image_id: int, eval_fraction: float) -> str:
  return features.EVAL_SPLIT if eval_draw(image_id) < eval_fraction else features.TRAIN_SPLIT


def settle_boundary(boundary: List[Tuple[int, int]], test_count: int, k: int,
                    eval_fraction: float) -> List[Tuple[int, str]]:
  """(rank, image id) of usable colour boundary photos -> (image id, split).

  The lowest ranks fill the test split up to k; the rest go by the eval draw.
  """
  free = max(0, k - test_count)
  placed = []
  for i, (_, image_id) in enumerate(sorted(boundary)):
    placed.append((image_id, features.TEST_SPLIT if i < free else train_or_eval(image_id, eval_fraction)))
  return placed


RULE = ("test: the K usable colour photos with the smallest sha256('colorize/test/<id>'), "
        "K = min(test_images, round(test_fraction * listed photos)); "
        "eval: the others with sha256('colorize/eval/<id>') / 2^64 < eval_fraction; train: the rest. "
        "Black-and-white photos kept with keep_grayscale never enter test.")
