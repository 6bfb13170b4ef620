"""Listing the files of a folder a user gives, without ever leaving it (`colorize photos`, `colorize upload`).

The rule for what is not a plain file (README, "Links and special files"):
- a symbolic link is followed when what it points to lies inside the given folder: a file
  link is read under the link's own name, a folder link is walked like a folder;
- a link that leads outside the given folder, a broken link and a link loop are passed
  over, each with its reason;
- anything that is neither a regular file nor a folder (FIFO, socket, device) is passed
  over without being opened (opening a FIFO would block forever);
- a folder that cannot be listed is passed over with the error.
Nothing is silently left out: every entry is in `files` or in `passed_over`.
"""
import dataclasses
import errno
import os
import stat
from typing import List, Optional, Set, Tuple


@dataclasses.dataclass(frozen=True)
class Entry:
  path: str      # as found (through links, under the link's name)
  relative: str  # '/'-separated, relative to the given folder


@dataclasses.dataclass
class Listing:
  files: List[Entry] = dataclasses.field(default_factory=list)
  passed_over: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)


def inside(path: str, folder: str) -> bool:
  """Whether the real (link-resolved) `path` is `folder` or lies under it; `folder` is real."""
  return os.path.commonpath([os.path.realpath(path), folder]) == folder


def special_file_reason(mode: int) -> Optional[str]:
  """Why a file of this st_mode is not read, or None for a regular file."""
  if stat.S_ISREG(mode):
    return None
  for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                     (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                     (stat.S_ISDIR, "a folder")):
    if test(mode):
      return f"not a regular file: {kind}"
  return "not a regular file"


def walk(folder: str, exclude: Optional[str] = None) -> Listing:
  """Every file under `folder` by the rule above, in name order; `exclude` (a real path) is
  a sub-folder left out on purpose (reported as such), e.g. an output folder inside it.
  """
  root = os.path.realpath(folder)
  listing = Listing()
  _walk(folder, "", root, {_identity(os.stat(folder))}, exclude, listing)
  return listing


def _identity(st: os.stat_result) -> Tuple[int, int]:
  return st.st_dev, st.st_ino


def _walk(path: str, relative: str, root: str, ancestors: Set[Tuple[int, int]], exclude: Optional[str],
          listing: Listing) -> None:
  try:
    with os.scandir(path) as it:
      entries = sorted(it, key=lambda e: e.name)
  except OSError as e:
    listing.passed_over.append((path, f"folder cannot be listed: {e.strerror}"))
    return
  for entry in entries:
    entry_relative = f"{relative}{entry.name}"
    is_link = entry.is_symlink()
    try:
      st = os.stat(entry.path)  # follows links; never opens the file
    except OSError as e:
      if e.errno == errno.ELOOP:
        reason = "link loop"
      elif is_link and e.errno == errno.ENOENT:
        reason = f"broken link (to {os.readlink(entry.path)})"
      else:
        reason = f"cannot be read: {e.strerror}"
      listing.passed_over.append((entry.path, reason))
      continue
    if is_link and not inside(entry.path, root):
      listing.passed_over.append((entry.path, f"link leads outside {root} (to {os.path.realpath(entry.path)})"))
      continue
    if stat.S_ISDIR(st.st_mode):
      if _identity(st) in ancestors:
        listing.passed_over.append((entry.path, "link loop (a folder that contains it)"))
      elif exclude is not None and os.path.realpath(entry.path) == exclude:
        listing.passed_over.append((entry.path, "the output folder"))
      else:
        _walk(entry.path, entry_relative + "/", root, ancestors | {_identity(st)}, exclude, listing)
      continue
    reason = special_file_reason(st.st_mode)
    if reason:
      listing.passed_over.append((entry.path, reason))
    else:
      listing.files.append(Entry(entry.path, entry_relative))
