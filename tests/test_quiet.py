"""The log filters of cli/quiet.py drop the known-harmless messages and nothing else."""
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CODE = """
import logging
from cli import quiet
quiet.install()
import tensorflow
logging.warning("Resource module is not available for current platform, memory usage cannot be fetched.")
logging.warning("a warning nobody filtered")
import subprocess, sys
subprocess.run([sys.executable, "-c", "import google.cloud.storage, google.cloud.aiplatform"], check=True)
"""


def test_harmless_start_up_and_beam_messages_are_dropped_and_other_warnings_kept():
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  result = subprocess.run([sys.executable, "-c", CODE], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=True)
  assert "a warning nobody filtered" in result.stderr
  assert "Resource module" not in result.stderr
  assert "Unable to register" not in result.stderr, result.stderr
  # Not in a child process either (Beam's worker processes), which knows nothing of cli/quiet.py.
  assert "Python version" not in result.stderr, result.stderr
