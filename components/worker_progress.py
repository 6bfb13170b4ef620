"""How far a long Beam step has got, as one worker sees it: "320 photos embedded so far".

Each worker counts its own photos (the local in-memory runner has one worker, so its count
is the step's); a line every INTERVAL_S at most. A local run prints these lines under the
step's own (pipelines/progress.py); on Dataflow they are in the workers' logs.
"""
import time

from absl import logging

INTERVAL_S = 10.0


class Counter:
  """Counts photos and logs the count now and then; small and picklable (it travels in a DoFn)."""

  def __init__(self, done: str, interval_s: float = INTERVAL_S):
    self.done, self.interval_s = done, interval_s
    self.count, self.started, self.said = 0, None, None

  def add(self, photos: int = 1) -> None:
    now = time.monotonic()
    if self.started is None:
      self.started = self.said = now
    self.count += photos
    if now - self.said >= self.interval_s:
      self.said = now
      logging.info("%d photos %s so far by this worker (%.1f a second)", self.count, self.done,
                   self.count / (now - self.started))
