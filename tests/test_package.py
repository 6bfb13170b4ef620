"""The wheel `pip install .` builds: its packages, data, entry point, dependencies and commit."""
import pathlib
import subprocess
import sys
import zipfile

import pytest

from cli import version

REPO = pathlib.Path(__file__).resolve().parent.parent
# Built from the committed tree: needs this tree to be a git checkout.
pytestmark = pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
PACKAGES = ("schemas", "imaging", "components", "trainer", "pipelines", "cloud", "lineage", "serving", "cli")


def _git(cwd, *args):
  return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The wheel of this tree's committed files, built in a git checkout of its own (no build/ left here)."""
  tree = tmp_path_factory.mktemp("tree")
  archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
  subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
  _git(tree, "init", "-q")
  _git(tree, "add", "-A")
  _git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot")
  out = tmp_path_factory.mktemp("dist")
  subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(out)!r})"],
                 cwd=tree, capture_output=True, text=True, check=True)
  [path] = out.glob("*.whl")
  return zipfile.ZipFile(path), _git(tree, "rev-parse", "--short=12", "HEAD")


def test_the_wheel_holds_the_packages_the_demo_data_and_the_configs(wheel):
  archive, _ = wheel
  names = archive.namelist()
  tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
  assert tops == {*PACKAGES, "configs", "data"}, tops  # no tests/, bench/ or build_hooks
  photos = [n for n in names if n.startswith("data/coco_demo/train2017/") and n.endswith(".jpg")]
  assert len(photos) == len(list((REPO / "data" / "coco_demo" / "train2017").glob("*.jpg"))) == 96
  for name in ("data/coco_demo/annotations/instances_train2017.json", "data/coco_demo/LICENSES.md",
               "configs/demo.yaml", "configs/vertex.yaml", "schemas/schema.pbtxt"):
    assert name in names, name
  # Every file the packages' code reads beside it (schemas, the serving gate's photos, ...) is installed.
  tracked = _git(REPO, "ls-files", *PACKAGES).splitlines()
  missing = [n for n in tracked if not n.endswith(".py") and n not in names]
  assert not missing, missing


def test_the_wheel_names_its_entry_point_its_commit_and_pinned_dependencies(wheel):
  archive, commit = wheel
  dist_info = next(n.split("/")[0] for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
  assert "colorize = cli.main:main" in archive.read(f"{dist_info}/entry_points.txt").decode()
  assert archive.read(f"cli/{version.COMMIT_FILE}").decode().strip() == commit
  requires = [line.split(": ", 1)[1] for line in archive.read(f"{dist_info}/METADATA").decode().splitlines()
              if line.startswith("Requires-Dist: ") and "extra ==" not in line]
  assert "tfx==1.16.0" in requires and "apache-beam[gcp]==2.74.0" in requires
  assert not any(r.startswith("tensorflow-io") for r in requires)
  for imported in ("numpy", "protobuf", "pyyaml", "requests", "google-auth", "pillow", "click", "ml-metadata"):
    assert imported in requires, imported


def test_version_names_the_checkouts_commit():
  head = _git(REPO, "rev-parse", "--short=12", "HEAD")
  described = version.describe()
  assert described.startswith("colorize 0.1.0, commit " + head), described
