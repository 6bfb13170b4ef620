"""What `colorize --version` prints: the package version and the commit it was built from.

An editable install (or the source tree) asks git; a non-editable install reads the commit
that build_hooks.py wrote into the wheel. A commit with uncommitted changes is marked
"-dirty". Stdlib only: the build imports it before anything is installed.
"""
from importlib import metadata
import os
import subprocess
from typing import Optional

DISTRIBUTION = "tfx-colorize"
COMMIT_FILE = "COMMIT"
UNKNOWN = "unknown"
_HERE = os.path.dirname(os.path.abspath(__file__))
_TREE = os.path.dirname(_HERE)


def describe() -> str:
  """'colorize 0.1.0, commit 1a2b3c4d5e6f' (or 'commit unknown', 'version unknown')."""
  try:
    number = metadata.version(DISTRIBUTION)
  except metadata.PackageNotFoundError:  # run from a tree that was never installed
    number = UNKNOWN
  return f"colorize {number}, commit {commit() or UNKNOWN}"


def commit() -> Optional[str]:
  """The source tree's git commit, else the one baked in at build time, else None."""
  if os.path.exists(os.path.join(_TREE, ".git")):
    return git_commit(_TREE)
  try:
    with open(os.path.join(_HERE, COMMIT_FILE), encoding="utf-8") as f:
      return f.read().strip() or None
  except OSError:
    return None


def git_commit(tree: str) -> Optional[str]:
  """HEAD of the git checkout at `tree` (12 hex digits, '-dirty' if tracked files changed), or None."""
  def git(*args: str) -> Optional[str]:
    try:
      done = subprocess.run(["git", "-C", tree, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
      return None
    return done.stdout.strip() if done.returncode == 0 else None

  head = git("rev-parse", "--short=12", "HEAD")
  if not head:
    return None
  changed = git("status", "--porcelain", "--untracked-files=no")
  return head + ("-dirty" if changed else "")
