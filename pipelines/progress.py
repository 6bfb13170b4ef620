"""What a local run says while it works: a line when each step starts and one when it ends.

LocalDagRunner runs the steps one after another in this process and says what it does in
absl INFO records ("Component X is running.", "A cached execution N is used.", ...), which
a run does not print (they come with hundreds of others). StepLines listens to exactly those
records of TFX 1.16's local runner and launcher and prints, on stderr:

  [2/6] Embed: started
  [2/6] Embed: ran in 1 min 04 s (execution 7)
  [3/6] Trainer: from the cache in 0.3 s (execution 9 reuses an earlier run's outputs)

plus the INFO records of the project's own executors (components/, trainer/: how many photos
a step ingests or embeds, the training's replicas and batch), which say what a long step is
doing; the Trainer prints one line per epoch itself. Warnings and errors reach the usual
handlers unchanged.
"""
import contextlib
import logging
import os
import sys
import time
from typing import Iterator, Optional, TextIO

from absl import logging as absl_logging

_RUNNING = "Component %s is running."
_FINISHED = "Component %s is finished."
_SKIPPED = "Skipping component %s."
_CACHED = "A cached execution %d is used."
_NEW = "Going to run a new execution %d"
_NOT_NEEDED = "Skipping execution for %s"
_FAILED = "Execution %d failed."
_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The project's code that runs inside the steps, whose INFO records a run shows.
_OWN_CODE = tuple(os.path.join(_PROJECT, p) + os.sep for p in ("components", "trainer"))
# Frames between a logging call and the handler: the logging package, absl's and this module.
_LOGGING_CODE = (os.path.dirname(logging.__file__) + os.sep, os.path.dirname(absl_logging.__file__) + os.sep,
                 os.path.abspath(__file__))


class StepLines(logging.Handler):
  """Turns the local runner's records into one start and one end line per step."""

  def __init__(self, steps: int, out: Optional[TextIO] = None):
    super().__init__(logging.INFO)
    self.steps, self.out = steps, out or sys.stderr
    self.index, self.step, self.started, self.how = 0, None, 0.0, None

  def emit(self, record: logging.LogRecord) -> None:
    msg, args = record.msg, record.args or ()
    if msg == _RUNNING:
      self.index, self.step, self.started, self.how = self.index + 1, args[0], time.monotonic(), None
      self._say("started")
    elif msg == _SKIPPED:
      self.index += 1
      self.step = args[0]
      self._say("skipped (not part of this run)")
    elif msg == _CACHED:
      self.how = f"from the cache in {{}} (execution {args[0]} reuses an earlier run's outputs)"
    elif msg == _NEW:
      self.how = f"ran in {{}} (execution {args[0]})"
    elif msg == _NOT_NEEDED:
      self.how = "not run: its driver found nothing to do ({})"
    elif msg == _FAILED:
      self._say(f"FAILED after {_duration(time.monotonic() - self.started)} (execution {args[0]})")
    elif msg == _FINISHED:
      self._say((self.how or "done in {}").format(_duration(time.monotonic() - self.started)))
    elif record.levelno == logging.INFO and _logged_by_own_code():
      self._say(record.getMessage())

  def _say(self, text: str) -> None:
    width = len(str(self.steps))
    print(f"[{self.index:>{width}}/{self.steps}] {self.step}: {text}", file=self.out, flush=True)


@contextlib.contextmanager
def step_lines(steps: int, out: Optional[TextIO] = None) -> Iterator[StepLines]:
  """Prints a run's step lines while the block runs (absl's logger at INFO, its other INFO records dropped)."""
  absl_logger = logging.getLogger("absl")
  handler = StepLines(steps, out)
  forward = _Forward()
  saved = absl_logger.level, absl_logger.propagate
  absl_logger.addHandler(handler)
  absl_logger.addHandler(forward)
  absl_logger.setLevel(logging.INFO)
  absl_logger.propagate = False  # the INFO records stop here; _Forward passes the rest on
  try:
    yield handler
  finally:
    absl_logger.removeHandler(handler)
    absl_logger.removeHandler(forward)
    absl_logger.setLevel(saved[0])
    absl_logger.propagate = saved[1]


class _Forward(logging.Handler):
  """Hands WARNING and worse on to the root logger's handlers, as if the logger still propagated."""

  def __init__(self):
    super().__init__(logging.WARNING)

  def emit(self, record: logging.LogRecord) -> None:
    logging.getLogger().handle(record)


def _logged_by_own_code() -> bool:
  """Whether the record being handled was logged by components/ or trainer/ code. Read from the
  stack: absl gives its records its own file as their pathname.
  """
  frame = sys._getframe(1)
  while frame is not None:
    name = frame.f_code.co_filename
    if name.startswith(_OWN_CODE):
      return True
    if not name.startswith(_LOGGING_CODE):
      return False
    frame = frame.f_back
  return False


def _duration(seconds: float) -> str:
  if seconds < 60:
    return f"{seconds:.1f} s"
  minutes, seconds = divmod(int(round(seconds)), 60)
  return f"{minutes} min {seconds:02d} s"
