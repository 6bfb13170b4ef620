"""The command line's last line of defence: an exception no command expected is one line, not a traceback.

Every failure a user can cause or fix is caught where it happens and said in one line
(exit code 1 or 2). Anything else is a bug: the user gets one line naming the error and
a file holding the full traceback to report (exit code 1). Reports go to
$COLORIZE_CRASH_DIR (the tests point it at a folder they check stays empty), else to the
system's temporary folder.
"""
import os
import tempfile
import traceback

import click

CRASH_DIR_VARIABLE = "COLORIZE_CRASH_DIR"
PREFIX = "colorize-crash-"
MESSAGE = "unexpected error ({kind}: {text}); the full traceback is in {path}: please report it"


class GuardedGroup(click.Group):
  """A click group whose commands' unexpected exceptions become one line and a traceback file."""

  def invoke(self, ctx: click.Context):
    try:
      return super().invoke(ctx)
    except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
      raise
    except Exception as e:
      raise click.ClickException(report(e)) from e


def report(error: BaseException) -> str:
  """Writes the traceback of `error` to a new file; returns the one line to show."""
  folder = os.environ.get(CRASH_DIR_VARIABLE) or tempfile.gettempdir()
  text = " ".join(str(error).split())[:300] or "no message"
  try:
    os.makedirs(folder, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=PREFIX, suffix=".txt", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
      f.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
  except OSError as e:
    path = f"(none: it could not be written to {folder}: {e.strerror})"
  return MESSAGE.format(kind=type(error).__name__, text=text, path=path)
