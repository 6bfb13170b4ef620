"""`colorize photos` on the real historical photographs, a rotated photo and broken files; and
that it never loses or overwrites a photo (names, links, read-only and full folders, kills);
the same on Beam (`--runner`): the same bytes, a manifest, gs:// in and out."""
import contextlib
import io
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings

from click.testing import CliRunner
from gcs_fixtures import BUCKET
from gcs_fixtures import Emulator
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
import image_files
import numpy as np
from PIL import Image
import pytest
from skimage import color as skcolor

from cli import main as cli
from serving import archive
from serving import beam_workers
from serving import photos

pytest_plugins = ("trainer_fixtures",)

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # EXIF: the stored pixels must be turned 90 degrees clockwise for display


def _l_star(image):
  return skcolor.rgb2lab(np.asarray(image.convert("RGB")))[..., 0]


@pytest.fixture(scope="module")
def colorized_historical(serving_model, historical, tmp_path_factory):
  """The whole historical folder plus a truncated JPEG and a text file posing as a photo."""
  inputs = tmp_path_factory.mktemp("inputs")
  for photo in historical.iterdir():
    shutil.copy(photo, inputs / photo.name)
  data = (historical / "Detroit_circa_1915.jpg").read_bytes()
  (inputs / "truncated.jpg").write_bytes(data[:len(data) // 3])
  (inputs / "notes.png").write_text("not a photo")
  out = tmp_path_factory.mktemp("out")
  result = CliRunner().invoke(cli.main, ["photos", str(inputs), "-o", str(out), "--model", str(serving_model[1])])
  return inputs, out, result


def test_every_readable_photo_is_colorized_at_its_resolution(colorized_historical, historical):
  inputs, out, _ = colorized_historical
  for photo in sorted(historical.iterdir()):
    source = Image.open(inputs / photo.name)
    colorized = Image.open(out / photo.name)
    assert colorized.format == "JPEG" and colorized.size == source.size, photo.name
    assert np.abs(_l_star(colorized) - _l_star(source)).mean() < 1.0, photo.name
  assert len(list(out.iterdir())) == len(list(historical.iterdir()))


def test_unreadable_files_are_skipped_with_a_message_and_exit_code_1(colorized_historical, historical):
  _, out, result = colorized_historical
  assert result.exit_code == 1, result.output
  assert "truncated.jpg" in result.output
  assert "notes.png: not a readable image (no format PIL reads)" in result.output  # no BytesIO object named
  assert f"Colorized {len(list(historical.iterdir()))} photo(s)" in result.output
  assert "skipped 2 (listed above)" in result.output
  assert not (out / "truncated.jpg").exists() and not (out / "notes.png").exists()


def test_exif_orientation_and_png_are_kept(serving_model, historical, tmp_path):
  upright = Image.open(historical / "Audrey_Hepburn.jpg")
  # Stored sideways with an EXIF tag saying how to turn it, as cameras do.
  sideways = upright.transpose(Image.Transpose.ROTATE_90)
  exif = Image.Exif()
  exif[EXIF_ORIENTATION] = ROTATED_90_CW
  sideways.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
  upright.convert("L").save(tmp_path / "portrait_gray.png")
  out = tmp_path / "out"
  result = CliRunner().invoke(cli.main, ["photos", str(tmp_path / "portrait.jpg"), str(tmp_path / "portrait_gray.png"),
                                         "-o", str(out), "--model", str(serving_model[1])])
  assert result.exit_code == 0, result.output
  rotated = Image.open(out / "portrait.jpg")
  assert rotated.size == upright.size  # displayed upright, as the input displays
  assert rotated.getexif().get(EXIF_ORIENTATION, 1) == 1
  assert np.abs(_l_star(rotated) - _l_star(upright)).mean() < 2.0  # re-encoded twice as JPEG
  png = Image.open(out / "portrait_gray.png")
  assert png.format == "PNG" and png.mode == "RGB" and png.size == upright.size
  assert np.abs(_l_star(png) - _l_star(upright)).mean() < 0.5


def test_model_dir_may_be_a_pusher_base_with_versions(serving_model, tmp_path):
  base = tmp_path / "pushed"
  base.mkdir()
  for version in ("1700000000", "1800000000"):
    (base / version).symlink_to(serving_model[1], target_is_directory=True)
  (base / "not_a_version").mkdir()
  assert photos.resolve_model_dir(base) == base / "1800000000"
  trainer_output = tmp_path / "model"
  trainer_output.mkdir()
  (trainer_output / "Format-Serving").symlink_to(serving_model[1], target_is_directory=True)
  assert photos.resolve_model_dir(trainer_output) == trainer_output / "Format-Serving"


def test_bad_invocations_are_usage_errors(serving_model, historical, tmp_path):
  runner = CliRunner()
  empty = tmp_path / "empty"
  empty.mkdir()
  result = runner.invoke(cli.main, ["photos", str(empty), "-o", str(tmp_path / "o"), "--model", str(serving_model[1])])
  assert result.exit_code == 2 and "no photos in" in result.output
  result = runner.invoke(cli.main, ["photos", str(historical), "-o", str(tmp_path / "o"), "--model", str(empty)])
  assert result.exit_code == 2 and "no SavedModel in" in result.output
  result = runner.invoke(cli.main, ["photos", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o"),
                                    "--model", str(serving_model[1])])
  assert result.exit_code == 2 and "does not exist" in result.output
  inputs = tmp_path / "in"
  inputs.mkdir()
  shutil.copy(historical / "Detroit_circa_1915.jpg", inputs)
  result = runner.invoke(cli.main, ["photos", str(inputs), "-o", str(inputs), "--model", str(serving_model[1])])
  assert result.exit_code == 2 and "is the input folder" in result.output
  # A Beam option Beam cannot parse: one line (not Beam's usage text), before the output folder is made.
  result = runner.invoke(cli.main, ["photos", str(inputs), "-o", str(tmp_path / "beam"), "--model",
                                    str(serving_model[1]), "--runner", "DirectRunner",
                                    "--beam-arg=--direct_num_workers=abc"])
  assert result.exit_code == 2 and result.output.splitlines()[-1] == (
      "Error: --beam-arg: argument --direct_num_workers: invalid int value: 'abc'"), result.output
  assert "usage:" not in result.output and not (tmp_path / "beam").exists()
  result = runner.invoke(cli.main, ["photos", str(inputs), "-o", str(tmp_path / "o2"), "--model",
                                    str(serving_model[1]), "--beam-arg=--direct_num_workers=2"])
  assert result.exit_code == 2 and "give --runner DirectRunner|DataflowRunner too" in result.output, result.output


def test_upright_passes_native_photos_through_untouched(historical):
  data = (historical / "Detroit_circa_1915.jpg").read_bytes()
  assert photos.upright(data) is data
  cmyk = io.BytesIO()
  Image.open(io.BytesIO(data)).convert("CMYK").save(cmyk, format="JPEG")
  converted = Image.open(io.BytesIO(photos.upright(cmyk.getvalue())))
  assert converted.format == "PNG" and converted.mode == "RGB"


def _invoke(*args):
  return CliRunner().invoke(cli.main, ["photos", *map(str, args)])


def _files(folder):
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_every_photo_gets_its_own_output_and_existing_files_are_kept_unless_overwrite(serving_model, historical,
                                                                                    tmp_path):
  photos_ = sorted(historical.iterdir())
  for folder in ("A", "B"):
    (tmp_path / folder).mkdir()
  # The old numeric suffix for a repeated name collided with a real input name.
  expected = {"A/a.jpg": photos_[0], "A/a_2.jpg": photos_[1], "B/a.jpg": photos_[2]}
  for relative, photo in expected.items():
    shutil.copy(photo, tmp_path / relative)
  out = tmp_path / "out"
  command = [tmp_path / "A", tmp_path / "B", "-o", out, "--model", serving_model[1]]
  result = _invoke(*command)
  assert result.exit_code == 0, result.output
  assert "Colorized 3 photo(s)" in result.output
  assert _files(out) == sorted(expected)
  for relative, photo in expected.items():
    source, colorized = Image.open(photo), Image.open(out / relative)
    assert colorized.size == source.size and np.abs(_l_star(colorized) - _l_star(source)).mean() < 1.0, relative

  # Again: nothing is replaced (not the user's own file either), and a dead run's temporary is removed.
  (out / "A" / "a.jpg").write_bytes(b"the user's own file")
  stale = out / "B" / ".colorize-tmp-999999999-0123456789ab"  # as documented; no such process
  stale.write_bytes(b"half a photo")
  result = _invoke(*command)
  assert result.exit_code == 0, result.output
  assert "Colorized 0 photo(s)" in result.output and "kept 3 that existed already" in result.output
  assert "Colorizing" not in result.output  # nothing to do: the model is not even loaded
  assert (out / "A" / "a.jpg").read_bytes() == b"the user's own file"
  assert _files(out) == sorted(expected)
  result = _invoke(*command, "--overwrite")
  assert result.exit_code == 0 and "Colorized 3 photo(s)" in result.output, result.output
  assert Image.open(out / "A" / "a.jpg").size == Image.open(photos_[0]).size
  assert _files(out) == sorted(expected)


def test_an_input_is_never_overwritten_by_name_or_through_a_link(serving_model, historical, tmp_path):
  photos_ = sorted(historical.iterdir())
  a, b = tmp_path / "A", tmp_path / "B"
  a.mkdir()
  b.mkdir()
  shutil.copy(photos_[0], a / "a.jpg")
  shutil.copy(photos_[1], b / "a.jpg")
  originals = {p: p.read_bytes() for p in (a / "a.jpg", b / "a.jpg")}
  result = _invoke(a, b, "-o", b, "--model", serving_model[1])
  assert result.exit_code == 2 and "is the input folder" in result.output, result.output
  # The output's name already taken by the input itself: a hard link, a symbolic link.
  out = tmp_path / "out"
  out.mkdir()
  for make_link in (os.link, os.symlink):
    make_link(a / "a.jpg", out / "a.jpg")
    result = _invoke(a, "-o", out, "--model", serving_model[1], "--overwrite")
    assert result.exit_code == 2 and f"{out / 'a.jpg'} is the input" in result.output, result.output
    os.unlink(out / "a.jpg")
  assert {p: p.read_bytes() for p in originals} == originals


@contextlib.contextmanager
def _tmpfs(path, options):
  """A tmpfs mounted at `path` (root only: CI and the development machines run as root)."""
  path.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                           text=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs ({mounted.stderr.strip()})")
  try:
    yield path
  finally:
    subprocess.run(["umount", str(path)], check=True)


def test_read_only_or_full_output_folder_is_refused_before_the_model(serving_model, historical, tmp_path):
  with _tmpfs(tmp_path / "read_only", "ro,size=4m") as out:
    result = _invoke(historical, "-o", out, "--model", serving_model[1])
    assert result.exit_code == 2 and "cannot write into" in result.output and "Read-only" in result.output, \
        result.output
    assert "Colorizing" not in result.output  # the model was never loaded
  with _tmpfs(tmp_path / "small", "size=1m") as out:
    result = _invoke(historical, "-o", out, "--model", serving_model[1])
    assert result.exit_code == 2 and "MB free" in result.output, result.output
    assert "Colorizing" not in result.output
    assert not list(out.iterdir())  # no half-written photo, no temporary file


def test_folder_mode_reads_every_format_and_lists_what_it_passes_over_or_refuses(serving_model, historical, tmp_path):
  photo = Image.open(historical / "Audrey_Hepburn.jpg")
  inputs = tmp_path / "in"
  (inputs / "scans").mkdir(parents=True)
  shutil.copy(historical / "Audrey_Hepburn.jpg", inputs / "p.jpg")
  for name in ("p.gif", "p.bmp", "p.webp", "scans/p.tiff"):
    photo.save(inputs / name)
  (inputs / "again.jpg").symlink_to(inputs / "p.jpg")  # a link inside the folder: followed
  passed = {"notes.txt": "not a photo by its name", "pipe.jpg": "named pipe (FIFO)",
            "escape.jpg": "link leads outside", "broken.png": "broken link"}
  (inputs / "notes.txt").write_text("not a photo")
  (inputs / "two\nlines.txt").write_text("not a photo, and a name that would print as two lines")
  os.mkfifo(inputs / "pipe.jpg")
  (inputs / "escape.jpg").symlink_to(historical / "Detroit_circa_1915.jpg")
  (inputs / "broken.png").symlink_to(inputs / "gone.png")
  # Over the model's limit by its header: refused before it is decoded (exit code 1, as unreadable photos).
  data = (historical / "Detroit_circa_1915.jpg").read_bytes()
  (inputs / "huge.jpg").write_bytes(image_files.claiming_size(data, 12000, 10000))
  # Over twice PIL's own limit (179 megapixels): PIL refuses to open it.
  (inputs / "huger.jpg").write_bytes(image_files.claiming_size(data, 20000, 10000))
  # 7 megapixels on a side longer than JPEG's limit: refused by its header too.
  (inputs / "long.png").write_bytes(image_files.claiming_size(image_files.encode(Image.open(
      historical / "Detroit_circa_1915.jpg"), "PNG"), 70000, 100))
  # A file no photo within the limit can fill (sparse: nothing is allocated): refused unread.
  with open(inputs / "scan.tif", "wb") as f:
    f.truncate(4 << 30)
  out = tmp_path / "out"
  with warnings.catch_warnings(record=True) as shown:
    warnings.simplefilter("always")  # as a user sees them (an "error" filter would be swallowed as a failure)
    result = _invoke(inputs, "-o", out, "--model", serving_model[1])
  assert not [w for w in shown if issubclass(w.category, Image.DecompressionBombWarning)]  # our line, not PIL's
  assert result.exit_code == 1, result.output
  assert ("huge.jpg: image is 12000x10000 pixels (120 megapixels): over the limit of this model, 100 megapixels"
          in result.output)
  assert "huger.jpg: too large to open (Image size (200000000 pixels) exceeds limit" in result.output
  assert "long.png: image is 70000x100 pixels: a side over 65535 pixels, the longest a JPEG can have" in result.output
  assert "scan.tif: larger than the 864 MB a photo file can be" in result.output  # 100 megapixels x 8 bytes + 64 MB
  expected = {"again.jpg": "JPEG", "p.jpg": "JPEG", "p.gif": "GIF", "p.bmp": "BMP", "p.webp": "WEBP",
              "scans/p.tiff": "TIFF"}
  assert _files(out) == sorted(expected)
  assert f"Colorized {len(expected)} photo(s)" in result.output and "photo/s" in result.output  # progress rate
  assert "skipped 4 (listed above)" in result.output
  for relative, fmt in expected.items():
    colorized = Image.open(out / relative)
    assert (colorized.format, colorized.size) == (fmt, photo.size), relative
  for name, reason in passed.items():
    assert any(name in line and reason in line for line in result.output.splitlines()), (name, result.output)
  assert "two\\nlines.txt: not a photo by its name" in result.output  # one line, the break shown escaped


def test_a_photo_replaced_by_a_fifo_after_the_listing_is_skipped_at_once(serving_model, historical, tmp_path):
  # Between the listing and the read, a photo becomes a named pipe nobody writes into: opening it
  # for reading would wait for ever, on every path that reads photos.
  from serving import endpoint
  photo = tmp_path / "photo.jpg"
  os.mkfifo(photo)
  job = photos.Job(photo, tmp_path / "out" / "photo.jpg")
  network = photos.load_network(serving_model[1])
  unused = endpoint.connect("http://127.0.0.1:9/v1/models/colorize:predict")  # never reached: nothing to send
  signal.signal(signal.SIGALRM, lambda *_: pytest.fail("a read blocked on the FIFO"))
  signal.alarm(30)
  try:
    answers = [*photos.local_results(network, [job]), *photos.endpoint_results(unused, [job])]
    beam_rows = [json.loads(tagged.value) for tagged in archive._prepare(json.dumps([str(photo), str(job.target)]),
                                                                       str(serving_model[1]))]
  finally:
    signal.alarm(0)
  reasons = [str(error) for _, error in answers] + [row["reason"] for row in beam_rows]
  assert reasons == ["not a regular file: a named pipe (FIFO)"] * 3


def test_links_given_by_name_that_lead_nowhere_are_passed_over(serving_model, historical, tmp_path):
  photo = tmp_path / "photo.jpg"
  shutil.copy(historical / "Detroit_circa_1915.jpg", photo)
  (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
  (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
  result = _invoke(tmp_path / "loop.jpg", tmp_path / "broken.jpg", photo, "-o", tmp_path / "out",
                   "--model", serving_model[1])
  assert result.exit_code == 0, result.output
  assert f"passed over {tmp_path / 'loop.jpg'}: link loop" in result.output
  assert f"passed over {tmp_path / 'broken.jpg'}: broken link (to {tmp_path / 'gone.jpg'})" in result.output
  assert _files(tmp_path / "out") == ["photo.jpg"]


def _killed_after_two_outputs(*args):
  """Runs `colorize photos ARGS` in a process killed (SIGKILL) once two outputs exist; -> their names."""
  out = args[args.index("-o") + 1]
  env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
  process = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "photos", *map(str, args)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 600

  def done():
    return [name for name in _files(out) if not name.startswith(".colorize-tmp-")] if out.is_dir() else []

  while len(done()) < 2 and time.monotonic() < deadline and process.poll() is None:
    time.sleep(0.05)
  process.send_signal(signal.SIGKILL)
  process.wait()
  return done()


@pytest.mark.slow
def test_a_killed_run_leaves_only_whole_photos_and_the_next_run_finishes(serving_model, historical, tmp_path):
  out = tmp_path / "out"
  finished = _killed_after_two_outputs(historical, "-o", out, "--model", serving_model[1])
  assert 2 <= len(finished) < len(list(historical.iterdir()))
  for name in finished:
    Image.open(out / name).load()  # whole, not truncated
  result = _invoke(historical, "-o", out, "--model", serving_model[1])
  assert result.exit_code == 0, result.output
  assert f"kept {len(finished)} that existed already" in result.output
  assert _files(out) == sorted(p.name for p in historical.iterdir())


def test_a_second_name_for_a_file_this_run_wrote_is_never_replaced(tmp_path):
  # What a case-insensitive output folder does with a.jpg and A.jpg: two names, one file (inode).
  for overwrite in (False, True):
    out = tmp_path / f"overwrite_{overwrite}"
    out.mkdir()
    writer = photos.Writer([], overwrite=overwrite)
    assert writer.write(out / "a.jpg", b"the first photo")
    os.link(out / "a.jpg", out / "A.jpg")
    with pytest.raises(photos.PhotoError, match="another photo of this run"):
      writer.keeps(out / "A.jpg")
    with pytest.raises(photos.PhotoError, match="another photo of this run"):
      writer.write(out / "A.jpg", b"the second photo")
    assert (out / "a.jpg").read_bytes() == b"the first photo"
    assert sorted(p.name for p in out.iterdir()) == ["A.jpg", "a.jpg"]  # and no temporary file left


def _beam(*args):
  return _invoke(*args, "--runner", "DirectRunner")


def _manifest(out):
  return [json.loads(line) for line in (out / archive.MANIFEST).read_text().splitlines()]


@pytest.fixture(scope="module")
def archive_runs(serving_model, historical, coco128, tmp_path_factory):
  """Real photos (historical, and COCO in a sub-folder), a truncated JPEG and a text file, colorized
  in one process and on Beam; Beam's output folder already holds two outputs and a temporary file,
  as a killed job leaves them.
  """
  inputs = tmp_path_factory.mktemp("archive")
  (inputs / "coco").mkdir()
  for photo in sorted(historical.iterdir())[:4]:
    shutil.copy(photo, inputs / photo.name)
  for photo in sorted((coco128 / "train2017").glob("*.jpg"))[:3]:
    shutil.copy(photo, inputs / "coco" / photo.name)
  # A name that is not UTF-8: no Beam element may hold it as a str (surrogate escapes).
  shutil.copy(photo, os.fsdecode(os.fsencode(inputs / "coco") + b"/caf\xe9.jpg"))
  data = (historical / "Detroit_circa_1915.jpg").read_bytes()
  (inputs / "truncated.jpg").write_bytes(data[:len(data) // 3])
  (inputs / "notes.txt").write_text("not a photo")
  single = tmp_path_factory.mktemp("single")
  single_result = _invoke(inputs, "-o", single, "--model", serving_model[1], "--batch-size", 3)
  beam = tmp_path_factory.mktemp("beam")
  (beam / "coco").mkdir()
  done_before = sorted(_files(single))[:2]
  for relative in done_before:
    shutil.copy(single / relative, beam / relative)
  before = {relative: os.stat(beam / relative) for relative in done_before}
  (beam / "coco" / ".colorize-tmp-999999999-0123456789ab").write_bytes(b"half a photo")  # no such process
  beam_result = _beam(inputs, "-o", beam, "--model", serving_model[1], "--batch-size", 2)
  return inputs, single, single_result, beam, beam_result, before


def test_beam_writes_the_same_bytes_as_the_single_process_path(archive_runs):
  _, single, single_result, beam, beam_result, _ = archive_runs
  assert single_result.exit_code == 1 and beam_result.exit_code == 1, (single_result.output, beam_result.output)
  assert len(_files(single)) == 8 and "coco/caf\udce9.jpg" in _files(single)
  assert _files(beam) == sorted(_files(single) + [archive.MANIFEST])
  for relative in _files(single):
    assert (beam / relative).read_bytes() == (single / relative).read_bytes(), relative


def test_beam_rerun_keeps_what_a_killed_job_wrote_and_does_the_rest(archive_runs):
  _, _, _, beam, beam_result, before = archive_runs
  assert "Colorized 6 photo(s)" in beam_result.output and "kept 2 that existed already" in beam_result.output
  for relative, stat in before.items():  # not rewritten: the same file, untouched
    now = os.stat(beam / relative)
    assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), relative
  assert not list(beam.rglob(".colorize-tmp-*"))


def test_the_manifest_lists_every_input_and_matches_the_files(archive_runs, serving_model):
  inputs, _, _, beam, beam_result, before = archive_runs
  rows = _manifest(beam)
  by_result = {}
  for row in rows:
    by_result.setdefault(row["result"], []).append(row)
  assert {k: len(v) for k, v in by_result.items()} == {"colorized": 6, "kept": 2, "skipped": 1, "passed over": 1}
  outputs = sorted(os.path.relpath(r["output"], beam) for r in by_result["colorized"] + by_result["kept"])
  assert outputs == sorted(set(_files(beam)) - {archive.MANIFEST})
  assert sorted(os.path.relpath(r["output"], beam) for r in by_result["kept"]) == sorted(before)
  skipped, = by_result["skipped"]
  assert skipped["input"] == str(inputs / "truncated.jpg") and "not a readable image" in skipped["reason"]
  assert f"skipped {inputs / 'truncated.jpg'}: not a readable image" in beam_result.output
  passed, = by_result["passed over"]
  assert passed["input"] == str(inputs / "notes.txt") and "not a photo by its name" in passed["reason"]
  assert f"passed over {inputs / 'notes.txt'}: not a photo by its name" in beam_result.output


def test_a_list_that_cannot_be_written_leaves_the_counts_and_one_line(archive_runs, serving_model, tmp_path):
  # A rerun with nothing left to do (no Beam job), where the list must go a folder stands: as when the disk
  # is full or the list is another user's in a shared folder, what the job did is still counted.
  inputs, _, _, beam, _, _ = archive_runs
  done = [p.name for p in sorted(inputs.glob("*.jpg")) if (beam / p.name).is_file()]
  again, out = tmp_path / "in", tmp_path / "out"
  again.mkdir()
  out.mkdir()
  for name in done:
    shutil.copy(inputs / name, again / name)
    shutil.copy(beam / name, out / name)
  (out / archive.MANIFEST).mkdir()
  result = _beam(again, "-o", out, "--model", serving_model[1])
  assert result.exit_code == 1, result.output
  assert f"kept {len(done)} that existed already; skipped 0; passed over 0 other file(s)\n" in result.output
  assert (f"Error: the list could not be written (cannot write {out / archive.MANIFEST}: Is a directory); "
          "what the job did is counted above") in result.output


@pytest.fixture
def gcs(monkeypatch):
  """gcp-storage-emulator (tests/gcs_fixtures.py) as Beam's Cloud Storage, with no login."""
  server = Emulator()
  monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
  monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
  # google-auth reads NO_GCE_CHECK once, at import; this is that setting for this process.
  monkeypatch.setattr("google.auth.compute_engine._metadata._NO_GCE_CHECK", True)
  yield storage.Client(project="colorize-test", credentials=AnonymousCredentials(),
                       client_options={"api_endpoint": server.url}).bucket(BUCKET)
  server.stop()


def test_beam_reads_and_writes_gs_and_a_rerun_with_nothing_to_do_loads_no_model(gcs, archive_runs, serving_model):
  inputs, single, _, _, _, _ = archive_runs
  names = sorted(p.name for p in inputs.glob("*.jp*g") if p.name != "truncated.jpg")[:2]
  names.append(f"coco/{sorted((inputs / 'coco').iterdir())[0].name}")
  for name in names:
    gcs.blob(f"in/{name}").upload_from_filename(str(inputs / name))
  gcs.blob("in/notes.txt").upload_from_string(b"not a photo")
  prefix = f"gs://{BUCKET}"
  result = _beam(f"{prefix}/in", "-o", f"{prefix}/out", "--model", serving_model[1])
  assert result.exit_code == 0, result.output
  assert "Colorized 3 photo(s)" in result.output and "passed over 1" in result.output
  objects = sorted(b.name for b in gcs.client.list_blobs(BUCKET, prefix="out/"))
  assert objects == sorted([f"out/{n}" for n in names] + [f"out/{archive.MANIFEST}"])
  for name in objects:
    if not name.endswith(archive.MANIFEST):
      assert gcs.blob(name).download_as_bytes() == (single / name[len("out/"):]).read_bytes(), name
  rows = [json.loads(line) for line in gcs.blob(f"out/{archive.MANIFEST}").download_as_text().splitlines()]
  assert sorted(r["result"] for r in rows) == ["colorized"] * 3 + ["passed over"]
  # Again: every output is there, so nothing to do: no model loaded, no Beam job.
  again = _beam(f"{prefix}/in", "-o", f"{prefix}/out", "--model", serving_model[1])
  assert again.exit_code == 0, again.output
  assert "Colorizing" not in again.output and "Colorized 0 photo(s)" in again.output and "kept 3" in again.output


@pytest.mark.slow
def test_a_killed_beam_job_leaves_only_whole_photos_and_the_rerun_finishes(serving_model, historical, tmp_path):
  out = tmp_path / "out"
  finished = _killed_after_two_outputs(historical, "-o", out, "--model", serving_model[1], "--runner", "DirectRunner",
                                       "--batch-size", 1)
  finished = {name: os.stat(out / name) for name in finished}
  assert 2 <= len(finished) < len(list(historical.iterdir())) and archive.MANIFEST not in finished
  for name in finished:
    Image.open(out / name).load()  # whole, not truncated
  result = _beam(historical, "-o", out, "--model", serving_model[1])
  assert result.exit_code == 0, result.output
  assert f"kept {len(finished)} that existed already" in result.output
  for name, stat in finished.items():
    assert os.stat(out / name).st_mtime_ns == stat.st_mtime_ns, name
  assert _files(out) == sorted([p.name for p in historical.iterdir()] + [archive.MANIFEST])


def _readme_command(runner):
  """The README's `colorize photos ... --runner RUNNER` command (continuation lines joined), as arguments."""
  text = (ROOT / "README.md").read_text().split("## Colorize an archive", 1)[1].replace("\\\n", " ")
  line, = [line for line in text.splitlines() if line.startswith("colorize photos") and f"--runner {runner}" in line]
  return shlex.split(line)[2:]


def test_the_readme_dataflow_command_builds_dataflow_options_with_the_project_image(monkeypatch):
  from apache_beam.options import pipeline_options

  from cli import photos as photos_command
  monkeypatch.chdir(ROOT)  # the README's --config path is relative to the repository
  params = photos_command.photos.make_context("photos", _readme_command("DataflowRunner")).params
  args = photos_command.pipeline_args(params["runner"], params["inputs"], params["output_dir"], params["model_dir"],
                                      params["config_path"], params["beam_args"])
  options = pipeline_options.PipelineOptions(args)
  unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
  assert not unknown, args  # every flag is one of Beam's
  cloud = options.view_as(pipeline_options.GoogleCloudOptions)
  worker = options.view_as(pipeline_options.WorkerOptions)
  setup = options.view_as(pipeline_options.SetupOptions)
  assert options.view_as(pipeline_options.StandardOptions).runner == "DataflowRunner"
  assert (cloud.project, cloud.region, cloud.temp_location) == (
      "my-project", "us-central1", "gs://my-project-colorize/runs/tmp/dataflow")
  assert cloud.service_account_email == "colorize-pipelines@my-project.iam.gserviceaccount.com"
  assert worker.sdk_container_image == "us-central1-docker.pkg.dev/my-project/colorize/colorize:abc1234"
  assert setup.sdk_location == "container" and worker.machine_type == "n1-standard-4"
  assert worker.max_num_workers == 50  # the README's --beam-arg wins over the config's 8
  local = _readme_command("DirectRunner")
  params = photos_command.photos.make_context("photos", local).params
  options = pipeline_options.PipelineOptions(photos_command.pipeline_args(
      params["runner"], params["inputs"], params["output_dir"], params["model_dir"], None, params["beam_args"]))
  direct = options.view_as(pipeline_options.DirectOptions)
  assert (direct.direct_num_workers, direct.direct_running_mode) == (2, "multi_processing")


def test_direct_runner_workers_split_the_cores_between_their_tensorflows(monkeypatch):
  from apache_beam.options import pipeline_options
  monkeypatch.setattr(os, "cpu_count", lambda: 8)
  for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    monkeypatch.delenv(name, raising=False)

  def threads(*args):
    with beam_workers.cores_shared(pipeline_options.PipelineOptions(["--runner=DirectRunner", *args])):
      return os.environ.get("TF_NUM_INTRAOP_THREADS"), os.environ.get("TF_NUM_INTEROP_THREADS")

  two = ("--direct_running_mode=multi_processing", "--direct_num_workers=2")
  assert threads(*two) == ("4", "4")  # what the worker processes inherit while the pipeline runs
  assert threads("--direct_running_mode=multi_processing", "--direct_num_workers=0") == ("1", "1")  # one a core
  assert threads() == threads("--direct_num_workers=2") == (None, None)  # one process: TensorFlow's own choice
  assert "TF_NUM_INTRAOP_THREADS" not in os.environ  # and nothing is left behind
  monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")  # the user's own setting wins
  assert threads(*two) == ("3", "4")
  assert os.environ["TF_NUM_INTRAOP_THREADS"] == "3" and "TF_NUM_INTEROP_THREADS" not in os.environ


def test_dataflow_reads_only_cloud_storage(tmp_path):
  vertex = str(ROOT / "configs" / "vertex.yaml")
  result = _invoke(tmp_path, "-o", "gs://b/out", "--model", "gs://b/model/1", "--runner", "DataflowRunner",
                   "--config", vertex)
  assert result.exit_code == 2 and "must be gs:// paths" in result.output, result.output
  result = _invoke("gs://b/archive", "-o", "gs://b/out", "--model", "gs://b/model/1", "--runner", "DataflowRunner")
  assert result.exit_code == 2 and "needs --config FILE with a cloud: section" in result.output, result.output
