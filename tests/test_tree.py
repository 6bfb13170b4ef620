"""imaging/tree.py: a folder's files are listed without leaving it; every other entry is reported."""
import os
import shutil

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
