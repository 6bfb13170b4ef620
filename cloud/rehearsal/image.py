"""The project image as the rehearsal sees it: the Docker build context copied to one folder, and the
paths of a compiled template mapped onto this machine.

The Dockerfile copies the build context (the project tree minus .dockerignore) to IMAGE_PROJECT_ROOT
and runs every step there; the copy here is made by the same rule, so a file the image lacks is
missing here too. Buckets are folders: gs://BUCKET/PATH is <workdir>/gcs/BUCKET/PATH.
"""
import fnmatch
import os
import re
import shutil
from typing import Callable, List

from pipelines import cloud_config

GCS = "gs://"


def dockerignore_patterns(root: str) -> List[str]:
  path = os.path.join(root, ".dockerignore")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line.strip() for line in f]
  return [line for line in lines if line and not line.startswith("#")]


def _ignored(relative: str, patterns: List[str]) -> bool:
  for pattern in patterns:
    if pattern.startswith("**/"):
      if fnmatch.fnmatch(os.path.basename(relative), pattern[3:]):
        return True
    elif fnmatch.fnmatch(relative, pattern):
      return True
  return False


def stage(workdir: str, project_root: str = cloud_config.LOCAL_PROJECT_ROOT) -> str:
  """Copies the build context of `project_root` to <workdir>/image (anew) and returns that folder."""
  target = os.path.join(workdir, "image")
  if os.path.exists(target):
    shutil.rmtree(target)
  patterns = dockerignore_patterns(project_root)
  workdir_real = os.path.realpath(workdir)

  def ignore(folder: str, names: List[str]) -> List[str]:
    left_out = []
    for name in names:
      path = os.path.join(folder, name)
      relative = os.path.relpath(path, project_root).replace(os.sep, "/")
      if _ignored(relative, patterns) or os.path.realpath(path) == workdir_real:
        left_out.append(name)
    return left_out

  shutil.copytree(project_root, target, ignore=ignore, symlinks=True)
  return target


def path_mapper(image_root: str, gcs_root: str) -> Callable[[str], str]:
  """The function that turns a string of the template into what it means on this machine: the image's
  project folder -> `image_root`, gs://BUCKET/... -> `gcs_root`/BUCKET/... (also inside JSON strings).
  """
  # The image folder only where a path starts (not inside gs://.../pipeline/...).
  image_path = re.compile(r"(?<![\w./-])" + re.escape(cloud_config.IMAGE_PROJECT_ROOT) + r"(?=/|$|\")")

  def mapped(value: str) -> str:
    value = image_path.sub(lambda _: image_root, value)
    return value.replace(GCS, gcs_root.rstrip("/") + "/")
  return mapped
