"""A local data root, walked and read so that nothing outside it is ever opened.

The walk (os.scandir, never a glob: every character of a name is literal) sorts each
entry of the root by the tree rule (imaging/tree.py: links followed only inside the root,
special files never opened), into a regular file (a candidate photo) or a refusal with the
skip reason the report gives:

- a link out of the root is `outside_root`, a dangling link or a link loop is `broken_link`;
- FIFOs, sockets and devices are `not_a_file`; an entry or folder that cannot be read is `unreadable`.

A data root adds two things to the rule. A hidden name (starting with '.') is `hidden`:
reported, not descended into. A real folder is walked once: a linked folder that leads
back into an already-walked one is reported as `duplicate`, which also ends link cycles.
Real folders are walked before linked ones, so a file keeps its own path rather than a link's.

`read_regular` opens without following a final link and without blocking
(O_NOFOLLOW | O_NONBLOCK), then checks on the open descriptor that it is a regular
file, so a file swapped for a FIFO or a link after the walk is refused, not read.
"""
import dataclasses
import errno
import os
import posixpath
import stat
from typing import List, Tuple

from imaging import images
from imaging import tree

SkipReason = images.SkipReason


@dataclasses.dataclass(frozen=True)
class File:
  relative: str      # path below the root as the user sees it (may pass through a link)
  real: str          # the resolved path, inside the root: what is opened
  size: int
  mtime: float
  inode: Tuple[int, int]  # (st_dev, st_ino): the same file reached by two paths has one
  via_link: bool


@dataclasses.dataclass(frozen=True)
class Refusal:
  relative: str
  reason: SkipReason
  detail: str


def walk(root_real: str) -> Tuple[List[File], List[Refusal]]:
  """Every entry below root_real (an existing, resolved folder): regular files and refusals, by path."""
  files: List[File] = []
  refused: List[Refusal] = []
  walked = {_inode(os.stat(root_real))}
  real_folders: List[Tuple[str, str]] = [("", root_real)]  # (relative, real path), walked first
  linked_folders: List[Tuple[str, str, Tuple[int, int]]] = []  # checked against `walked` when their turn comes
  while real_folders or linked_folders:
    via_link = not real_folders
    if via_link:
      relative_dir, real_dir, inode = linked_folders.pop(0)
      if inode in walked:
        refused.append(Refusal(relative_dir, SkipReason.DUPLICATE, "a linked folder already walked under another path"))
        continue
      walked.add(inode)
    else:
      relative_dir, real_dir = real_folders.pop()
    try:
      with os.scandir(real_dir) as it:
        entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
      refused.append(Refusal(relative_dir, SkipReason.UNREADABLE, f"cannot list the folder: {e.strerror}"))
      continue
    for entry in entries:
      relative = posixpath.join(relative_dir, entry.name)
      if entry.name.startswith("."):
        refused.append(Refusal(relative, SkipReason.HIDDEN, "hidden (name starts with '.'), not read"))
        continue
      decision = tree.classify(entry, root_real)
      found, real, st = decision.kind, decision.real, decision.stat
      if found is tree.Kind.LOOP:
        refused.append(Refusal(relative, SkipReason.BROKEN_LINK, "a link loop"))
      elif found is tree.Kind.BROKEN:
        refused.append(Refusal(relative, SkipReason.BROKEN_LINK, "a link to nothing"))
      elif found is tree.Kind.UNREADABLE:
        refused.append(Refusal(relative, SkipReason.UNREADABLE, decision.error.strerror or str(decision.error.errno)))
      elif found is tree.Kind.OUTSIDE:
        refused.append(Refusal(relative, SkipReason.OUTSIDE_ROOT, "a link to a path outside the data root, not read"))
      elif found is tree.Kind.FOLDER:
        if decision.is_link or via_link:
          linked_folders.append((relative, real, _inode(st)))
        else:
          walked.add(_inode(st))
          real_folders.append((relative, real))
      elif found is tree.Kind.FILE:
        files.append(File(relative, real, st.st_size, st.st_mtime, _inode(st), decision.is_link or via_link))
      else:
        refused.append(Refusal(relative, SkipReason.NOT_A_FILE, f"{tree.kind(st.st_mode)}, not opened"))
  return sorted(files, key=lambda f: f.relative), sorted(refused, key=lambda r: r.relative)


def read_regular(path: str) -> bytes:
  """The bytes of a regular file; images.Skip for anything else, without blocking or following a final link."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
  except OSError as e:
    if e.errno == errno.ELOOP:  # O_NOFOLLOW on a link (a file replaced by a link after the walk)
      raise images.Skip(SkipReason.BROKEN_LINK, "became a link after the listing, not followed") from e
    raise
  try:
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
      raise images.Skip(SkipReason.NOT_A_FILE, f"{tree.kind(mode)}, not read")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb", closefd=True) as f:
      fd = -1
      return f.read()
  finally:
    if fd >= 0:
      os.close(fd)


def _inode(st: os.stat_result) -> Tuple[int, int]:
  return st.st_dev, st.st_ino
