"""imaging/tree.py: a folder's files are listed without leaving it; every other entry is reported."""
import contextlib
import errno
import os
import shutil
import signal

import pytest

from imaging import tree


def test_links_inside_are_followed_and_everything_else_is_reported(historical, tmp_path):
  root = tmp_path / "photos"
  (root / "sub").mkdir(parents=True)
  photos = sorted(historical.iterdir())[:2]
  shutil.copy(photos[0], root / "a.jpg")
  shutil.copy(photos[1], root / "sub" / "b.jpg")
  outside = tmp_path / "outside"
  outside.mkdir()
  shutil.copy(photos[0], outside / "secret.jpg")
  (root / "link_to_a.jpg").symlink_to(root / "a.jpg")            # inside: followed
  (root / "linked_sub").symlink_to(root / "sub", target_is_directory=True)  # inside: walked
  (root / "escape.jpg").symlink_to(outside / "secret.jpg")       # outside: reported
  (root / "escape_dir").symlink_to(outside, target_is_directory=True)
  (root / "broken.jpg").symlink_to(root / "missing.jpg")
  (root / "loop.jpg").symlink_to(root / "loop.jpg")
  (root / "sub" / "parent").symlink_to(root, target_is_directory=True)  # a folder that contains it
  os.mkfifo(root / "pipe.jpg")

  listing = tree.walk(str(root))

  assert [e.relative for e in listing.files] == ["a.jpg", "link_to_a.jpg", "linked_sub/b.jpg", "sub/b.jpg"]
  reasons = {os.path.relpath(path, root): reason for path, reason in listing.passed_over}
  assert set(reasons) == {"escape.jpg", "escape_dir", "broken.jpg", "loop.jpg", "sub/parent", "linked_sub/parent",
                          "pipe.jpg"}
  assert reasons["escape.jpg"].startswith("link leads outside") and str(outside) in reasons["escape.jpg"]
  assert reasons["escape_dir"].startswith("link leads outside")
  assert reasons["broken.jpg"].startswith("broken link")
  assert reasons["loop.jpg"] == "link loop"
  assert reasons["sub/parent"].startswith("link loop")
  assert reasons["pipe.jpg"] == "not a regular file: a named pipe (FIFO)"


def test_an_excluded_output_folder_inside_is_reported_not_walked(historical, tmp_path):
  shutil.copy(next(historical.iterdir()), tmp_path / "a.jpg")
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "a.jpg").write_bytes(b"an output")
  listing = tree.walk(str(tmp_path), exclude=str((tmp_path / "out").resolve()))
  assert [e.relative for e in listing.files] == ["a.jpg"]
  assert listing.passed_over == [(str(tmp_path / "out"), "the output folder")]


@contextlib.contextmanager
def _no_longer_than(seconds):
  """Fails the test with TimeoutError where a read would otherwise block for ever."""
  def stop(*_):
    raise TimeoutError(f"still blocked after {seconds} s")
  previous = signal.signal(signal.SIGALRM, stop)
  signal.alarm(seconds)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_listed_file_replaced_by_a_fifo_is_refused_at_once(historical, tmp_path):
  photo = tmp_path / "photo.jpg"
  shutil.copy(sorted(historical.iterdir())[0], photo)
  assert [e.relative for e in tree.walk(str(tmp_path)).files] == ["photo.jpg"]
  photo.unlink()
  os.mkfifo(photo)  # after the listing, before the read: nobody will ever write into it
  with _no_longer_than(20):
    for read in (tree.read_file, lambda path: tree.open_regular(path).close()):
      with pytest.raises(tree.RefusedFileError) as refused:
        read(str(photo))
      assert str(refused.value) == "not a regular file: a named pipe (FIFO)"


def test_a_file_gone_after_the_listing_is_refused_with_the_listings_words(tmp_path):
  with pytest.raises(tree.RefusedFileError) as refused:
    tree.read_file(str(tmp_path / "gone\nphoto.jpg"))
  assert refused.value.errno == errno.ENOENT and str(refused.value) == "cannot be read: No such file or directory"


def test_a_file_over_the_limit_is_refused_unread(tmp_path):
  path = tmp_path / "scan.tif"
  path.write_bytes(b"x" * 1000)
  assert tree.read_file(str(path), limit=1000) == b"x" * 1000
  with pytest.raises(tree.RefusedFileError) as refused:
    tree.read_file(str(path), limit=999)
  assert refused.value.errno == errno.EFBIG and "larger than the 0 MB a photo file can be" in str(refused.value)
  with open(path, "rb") as f, pytest.raises(tree.RefusedFileError):  # a stream whose size is not known
    tree.read_bounded(f, 999)
  sparse = tmp_path / "sparse.tif"
  with open(sparse, "wb") as f:
    f.truncate(50 << 30)  # 50 GiB that are never allocated: refused by its size, not read
  with pytest.raises(tree.RefusedFileError):
    tree.read_file(str(sparse), limit=1 << 30)
