"""The Dockerfile (no Docker engine here): base image, locked install, project, Beam boot.

Each check ties the Dockerfile to the fact it must agree with: the lock file, the
installed TFX, the project root that compiled pipelines point into.
"""
import fnmatch
import json
import pathlib
import re
import shlex
import sys

import pytest
import tfx

from components import serving_gate
from pipelines import cloud_config

REPO = pathlib.Path(__file__).resolve().parent.parent


def instructions(text):
  """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
  result, pending = [], ""
  for line in text.splitlines():
    stripped = line.strip()
    if not pending and (not stripped or stripped.startswith("#")):
      continue
    if stripped.endswith("\\"):
      pending += stripped[:-1] + " "
      continue
    full = pending + stripped
    pending = ""
    keyword, _, args = full.partition(" ")
    result.append((keyword.upper(), args.strip()))
  return result


@pytest.fixture(scope="module")
def stages():
  """Instructions grouped by build stage, the final stage last."""
  groups = []
  for keyword, args in instructions((REPO / "Dockerfile").read_text()):
    if keyword == "FROM":
      groups.append([])
    if groups:
      groups[-1].append((keyword, args))
  return groups


@pytest.fixture(scope="module")
def lock():
  pins = {}
  for line in (REPO / "requirements.lock").read_text().splitlines():
    match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line)
    if match:
      pins[re.sub(r"\[.*\]", "", match.group(1)).lower()] = match.group(2)
  return pins


def _arg_default(name):
  for keyword, args in instructions((REPO / "Dockerfile").read_text()):
    if keyword == "ARG" and args.startswith(name + "="):
      return args.split("=", 1)[1]
  raise AssertionError(f"no ARG {name}=...")


def test_final_image_is_tfx_of_the_locked_version(stages, lock):
  final = stages[-1]
  assert final[0] == ("FROM", f"tensorflow/tfx:{lock['tfx']}")
  assert lock["tfx"] == tfx.__version__


def test_beam_boot_matches_the_locked_beam_and_python(stages, lock):
  beam = stages[0]
  python = f"{sys.version_info.major}.{sys.version_info.minor}"
  assert beam[0] == ("FROM", f"apache/beam_python{python}_sdk:${{BEAM_VERSION}} AS beam")
  assert _arg_default("BEAM_VERSION") == lock["apache-beam"]
  final = stages[-1]
  assert ("COPY", "--from=beam /opt/apache/beam /opt/apache/beam") in final
  # Dataflow starts workers through this entrypoint; Vertex sets its own command.
  assert final[-1] == ("ENTRYPOINT", json.dumps(["/opt/apache/beam/boot"]))


def test_installs_exactly_the_lock_then_the_project(stages):
  final = stages[-1]
  workdir = [args for keyword, args in final if keyword == "WORKDIR"]
  assert workdir == [cloud_config.IMAGE_PROJECT_ROOT]
  runs = [args for keyword, args in final if keyword == "RUN"]
  copies = [args for keyword, args in final if keyword == "COPY"]
  # The lock is copied alone and installed before the code is copied (its own cached layer).
  assert final.index(("COPY", "requirements.lock ./")) < final.index(("RUN", runs[0])) < final.index(("COPY", ". ./"))
  install_lock, install_project = runs[0], runs[1]
  commands = [shlex.split(c) for c in install_lock.split("&&")]
  pip_installs = [c for c in commands if "install" in c]
  # uv itself (pinned), then `-r requirements.lock` and nothing else.
  assert pip_installs[0][:4] == ["python", "-m", "pip", "install"] and re.fullmatch(r"uv==[\d.]+", pip_installs[0][-1])
  assert pip_installs[1][:4] == ["python", "-m", "uv", "pip"] and pip_installs[1][-2:] == ["-r", "requirements.lock"]
  # Every task is a new container: one without bytecode compiles TensorFlow, Beam and TFX before it starts.
  assert "--compile-bytecode" in pip_installs[1]
  assert len(pip_installs) == 2
  project = shlex.split(install_project.split("&&")[0])
  assert project[:4] == ["python", "-m", "uv", "pip"] and "--no-deps" in project and project[-2:] == ["-e", "."]
  # The image proves at build time that the import paths compiled into pipelines resolve.
  assert "import components.ingest.executor, trainer.task, pipelines.pipeline" in install_project
  assert copies == ["requirements.lock ./", ". ./", "--from=beam /opt/apache/beam /opt/apache/beam"]


def test_dockerignore_keeps_what_the_image_needs():
  patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
              if p.strip() and not p.startswith("#")]

  def ignored(path):
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p)
               or fnmatch.fnmatch(path, p.replace("**/", "*/")) for p in patterns)

  # The serving gate runs as a Vertex step in the image, with the photos it ships with.
  gate_photos = [f"components/serving_gate/photos/{p}" for p in (serving_gate.JPEG_PHOTO, serving_gate.ALPHA_PHOTO)]
  for needed in ("pyproject.toml", "build_hooks.py", "requirements.lock", "schemas/schema.pbtxt",
                 "pipelines/pipeline.py", "components/ingest/executor.py", "trainer/task.py",
                 "components/serving_gate/probe.py", *gate_photos):
    assert (REPO / needed).exists() and not ignored(needed), needed
  for excluded in (".venv/bin/python", ".git/HEAD", "pipelines/__pycache__/cli.cpython-310.pyc"):
    assert ignored(excluded), excluded
