"""Which split a photo belongs to: a pure function of its image id, whatever else is ingested.

The rule (also written into every skip report):
  test  usable colour photos whose test draw is below test_fraction;
  eval  of the others, those whose eval draw is below eval_fraction;
  train the rest.
Both draws are SHA-256 of the image id (two different salts) mapped to [0, 1), so a
photo lands in the same split on every run and machine, and in every snapshot (span)
that holds it: data can accumulate week after week without a test photo ever moving to
train, or a train photo to test. The test split is therefore about test_fraction of the
photos, not a fixed count: a fixed count would have to push earlier test photos out as
new photos with smaller draws arrive. Black-and-white photos kept with keep_grayscale
never enter test (it measures colour error against a colour ground truth); they go by
the eval draw, as do unusable photos, which are skipped anyway.
"""
import hashlib

from schemas import features

_TEST_SALT = b"colorize/test/"
_EVAL_SALT = b"colorize/eval/"


def _draw(salt: bytes, image_id: int) -> float:
  """Uniform in [0, 1): the first 64 bits of SHA-256(salt + decimal id)."""
  return int.from_bytes(hashlib.sha256(salt + str(int(image_id)).encode()).digest()[:8], "big") / 2.0 ** 64


def test_draw(image_id: int) -> float:
  """Below test_fraction means held out for test (for a colour photo)."""
  return _draw(_TEST_SALT, image_id)


def eval_draw(image_id: int) -> float:
  """Below eval_fraction means eval."""
  return _draw(_EVAL_SALT, image_id)


def split_of(image_id: int, colour: bool, test_fraction: float, eval_fraction: float) -> str:
  if colour and test_draw(image_id) < test_fraction:
    return features.TEST_SPLIT
  return features.EVAL_SPLIT if eval_draw(image_id) < eval_fraction else features.TRAIN_SPLIT


RULE = ("test: usable colour photos with sha256('colorize/test/<id>') / 2^64 < test_fraction; "
        "eval: the others with sha256('colorize/eval/<id>') / 2^64 < eval_fraction; train: the rest. "
        "Black-and-white photos kept with keep_grayscale never enter test.")
