"""The tree rule: how a folder a user gives is walked without ever leaving it, stated once.

Every entry below the folder is sorted by `classify` (README, "Links and special files"):
- a symbolic link is followed when what it resolves to lies inside the folder: a file link
  is a file, a folder link is a folder to walk;
- a link that leads outside the folder (OUTSIDE), a broken link (BROKEN) and a link loop
  (LOOP) are refused, each with its reason;
- anything that is neither a regular file nor a folder (FIFO, socket, device: SPECIAL) is
  refused without being opened (opening a FIFO would block forever);
- an entry that cannot be examined (UNREADABLE), and a folder that cannot be listed, are refused
  with the error.
Nothing is silently left out: every entry is listed or refused with its reason.

Two walks apply it. `walk` here (`colorize photos`, `colorize upload`) reads a file reached
through a folder link under the link's own name, ends link cycles at a folder that contains
itself and can leave out the output folder. The ingestion's walk (components/ingest/local_tree.py)
adds what a data root needs on top of the same rule: hidden names are refused, and a real folder
is walked once, so a photo reached by two paths makes one example.
"""
import dataclasses
import enum
import errno
import os
import stat
from typing import List, Optional, Set, Tuple


class Kind(enum.Enum):
  FILE = "file"
  FOLDER = "folder"
  OUTSIDE = "outside"        # a link whose target lies outside the folder
  BROKEN = "broken"          # a link to nothing
  LOOP = "loop"              # a link that resolves to itself
  SPECIAL = "special"        # FIFO, socket, device: never opened
  UNREADABLE = "unreadable"  # stat failed otherwise


@dataclasses.dataclass(frozen=True)
class Decision:
  kind: Kind
  is_link: bool
  real: str = ""                          # the resolved path (the entry's own path when it is no link)
  stat: Optional[os.stat_result] = None   # of `real`: FILE, FOLDER, SPECIAL
  error: Optional[OSError] = None         # BROKEN, LOOP, UNREADABLE


def printable(text: str) -> str:
  """Text naming paths as one line: escaped (as ascii() does) if it holds a line break, another
  control character or a byte that is not UTF-8 (a surrogate escape), all of which names may.
  """
  return text if text.isprintable() else ascii(text)[1:-1]


def inside(real: str, root_real: str) -> bool:
  """Whether a resolved, absolute path is the resolved root or lies below it."""
  return real == root_real or real.startswith(root_real.rstrip("/") + "/")


def kind(mode: int) -> str:
  """What a file of this st_mode that is not a regular one is, in words."""
  for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                     (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                     (stat.S_ISDIR, "a folder")):
    if test(mode):
      return name
  return "not a regular file"


def classify(entry: os.DirEntry, root_real: str) -> Decision:
  """The rule for one entry of a folder below root_real (a resolved path); never opens the entry."""
  is_link = False
  try:
    is_link = entry.is_symlink()
    real = os.path.realpath(entry.path, strict=True) if is_link else entry.path
    st = os.stat(real, follow_symlinks=False)
  except OSError as e:
    return Decision({errno.ELOOP: Kind.LOOP, errno.ENOENT: Kind.BROKEN}.get(e.errno, Kind.UNREADABLE), is_link, error=e)
  if is_link and not inside(real, root_real):
    return Decision(Kind.OUTSIDE, is_link, real)
  found = Kind.FOLDER if stat.S_ISDIR(st.st_mode) else Kind.FILE if stat.S_ISREG(st.st_mode) else Kind.SPECIAL
  return Decision(found, is_link, real, st)


class RefusedFileError(OSError):
  """What is at a listed path cannot be read as a photo; str() is the reason alone."""

  def __str__(self) -> str:
    return self.strerror


def read_file(path: str, limit: Optional[int] = None) -> bytes:
  """The bytes of the regular file at `path`, or RefusedFileError saying why not.

  A listed file may be replaced before it is read: it is opened without blocking (opening a FIFO
  would wait for a writer for ever) and refused unless it is still a regular file. One larger
  than `limit` bytes is refused unread, so one stray file cannot exhaust memory.
  """
  with open_regular(path) as f:
    if limit is not None and os.fstat(f.fileno()).st_size > limit:
      raise _too_large(limit)
    return read_bounded(f, limit)


def open_regular(path: str):
  """The regular file at `path` opened for binary reading, or RefusedFileError; see read_file."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
  except OSError as e:  # the listing's own words, not OSError's text (which repeats the path, escaped)
    raise RefusedFileError(e.errno, unreachable_reason(path, e)) from e
  reason = special_file_reason(os.fstat(fd).st_mode)
  if reason:
    os.close(fd)
    raise RefusedFileError(errno.EINVAL, reason)
  return os.fdopen(fd, "rb")


def read_bounded(f, limit: Optional[int]) -> bytes:
  """All of an open binary file, or RefusedFileError once it has more than `limit` bytes."""
  data = f.read() if limit is None else f.read(limit + 1)
  if limit is not None and len(data) > limit:
    raise _too_large(limit)
  return data


def _too_large(limit: int) -> RefusedFileError:
  return RefusedFileError(errno.EFBIG, f"larger than the {limit / 1e6:.0f} MB a photo file can be")


def unreachable_reason(path: str, error: OSError) -> str:
  """Why an entry whose stat failed is passed over: a link loop, a broken link, or the error."""
  if error.errno == errno.ELOOP:
    return "link loop"
  if error.errno == errno.ENOENT and os.path.islink(path):
    return f"broken link (to {os.readlink(path)})"
  return f"cannot be read: {error.strerror}"


def special_file_reason(mode: int) -> Optional[str]:
  """Why a file of this st_mode is not read, or None for a regular file."""
  if stat.S_ISREG(mode):
    return None
  name = kind(mode)
  return name if name == "not a regular file" else f"not a regular file: {name}"


@dataclasses.dataclass(frozen=True)
class Entry:
  path: str      # as found (through links, under the link's name)
  relative: str  # '/'-separated, relative to the given folder


@dataclasses.dataclass
class Listing:
  files: List[Entry] = dataclasses.field(default_factory=list)
  passed_over: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)


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
    decision = classify(entry, root)
    if decision.error is not None:
      listing.passed_over.append((entry.path, unreachable_reason(entry.path, decision.error)))
    elif decision.kind is Kind.OUTSIDE:
      listing.passed_over.append((entry.path, f"link leads outside {root} (to {decision.real})"))
    elif decision.kind is Kind.FOLDER:
      if _identity(decision.stat) in ancestors:
        listing.passed_over.append((entry.path, "link loop (a folder that contains it)"))
      elif exclude is not None and os.path.realpath(entry.path) == exclude:
        listing.passed_over.append((entry.path, "the output folder"))
      else:
        _walk(entry.path, f"{relative}{entry.name}/", root, ancestors | {_identity(decision.stat)}, exclude, listing)
    elif decision.kind is Kind.SPECIAL:
      listing.passed_over.append((entry.path, special_file_reason(decision.stat.st_mode)))
    else:
      listing.files.append(Entry(entry.path, f"{relative}{entry.name}"))
