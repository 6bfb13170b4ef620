"""Build step of pyproject.toml: writes the commit being built into the wheel (cli/COMMIT).

A non-editable install has no git checkout to ask, so `colorize --version` reads the
commit from there (cli/version.py). Built outside a checkout (from an sdist), no file is
written and the version says the commit is unknown.
"""
import os
import sys

from setuptools.command import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli import version


class BuildPy(build_py.build_py):
  """setuptools' build_py, plus cli/COMMIT from the source tree's git checkout."""

  def run(self):
    super().run()
    commit = version.git_commit(os.path.dirname(os.path.abspath(__file__)))
    if commit and not self.editable_mode:
      path = os.path.join(self.build_lib, "cli", version.COMMIT_FILE)
      with open(path, "w", encoding="utf-8") as f:
        f.write(commit + "\n")
