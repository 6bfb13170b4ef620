"""Which split a photo belongs to: a pure function of its image id (and, for test, of the dataset).

The rule (also written into every skip report):
  test  the K usable colour photos with the smallest test key, where
        K = min(test_images, round(test_fraction * N)) and N is the number of usable
        colour photos. So a large dataset gets exactly test_images (1000 by default,
        the Evaluator's protocol) and a small one test_fraction of itself.
  eval  of the others, those whose eval draw is below eval_fraction.
  train the rest.
The test key and the eval draw are SHA-256 of the image id (two different salts), so the
same photo lands in the same split on every run and machine; a photo's eval/train
membership never changes, and test membership only changes when the dataset does.
Black-and-white photos kept with keep_grayscale never enter test: the test split
measures colour error against a colour ground truth.
"""
import hashlib
from typing import Sequence

from schemas import features

_TEST_SALT = b"colorize/test/"
_EVAL_SALT = b"colorize/eval/"
NO_TEST = -1  # threshold when the test split is empty


def _hash64(salt: bytes, image_id: int) -> int:
  return int.from_bytes(hashlib.sha256(salt + str(int(image_id)).encode()).digest()[:8], "big")


def test_key(image_id: int) -> int:
  """Uniform 64-bit key; the smallest keys make the test split."""
  return _hash64(_TEST_SALT, image_id)


def eval_draw(image_id: int) -> float:
  """Uniform in [0, 1); below eval_fraction means eval."""
  return _hash64(_EVAL_SALT, image_id) / 2.0 ** 64


def test_size(num_colour: int, test_images: int, test_fraction: float) -> int:
  return min(test_images, int(round(test_fraction * num_colour)))


def test_threshold(colour_keys: Sequence[int], test_images: int, test_fraction: float) -> int:
  """The largest test key in the test split (keys are distinct for distinct ids, barring 2^-64 luck)."""
  k = test_size(len(colour_keys), test_images, test_fraction)
  return sorted(colour_keys)[k - 1] if k else NO_TEST


def assign(image_id: int, colour: bool, threshold: int, eval_fraction: float) -> str:
  """The split of one photo, given the test threshold of its dataset."""
  if colour and test_key(image_id) <= threshold:
    return features.TEST_SPLIT
  return features.EVAL_SPLIT if eval_draw(image_id) < eval_fraction else features.TRAIN_SPLIT


RULE = ("test: the K usable colour photos with the smallest sha256('colorize/test/<id>') where "
        "K = min(test_images, round(test_fraction * N)), N = usable colour photos; "
        "eval: the others with sha256('colorize/eval/<id>') / 2^64 < eval_fraction; train: the rest. "
        "Black-and-white photos kept with keep_grayscale never enter test.")
