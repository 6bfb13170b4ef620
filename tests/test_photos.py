"""`colorize photos` on the real historical photographs, a rotated photo and broken files."""
import io
import shutil

from click.testing import CliRunner
import numpy as np
from PIL import Image
import pytest
from skimage import color as skcolor

from cli import main as cli
from serving import photos

pytest_plugins = ("trainer_fixtures",)

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
  assert "truncated.jpg" in result.output and "notes.png" in result.output
  assert f"Colorized {len(list(historical.iterdir()))} photo(s)" in result.output
  assert "skipped 2 unreadable" in result.output
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
  assert result.exit_code == 2 and "no .jpg/.jpeg/.png photos" in result.output
  result = runner.invoke(cli.main, ["photos", str(historical), "-o", str(tmp_path / "o"), "--model", str(empty)])
  assert result.exit_code == 2 and "no SavedModel in" in result.output
  result = runner.invoke(cli.main, ["photos", str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "o"),
                                    "--model", str(serving_model[1])])
  assert result.exit_code == 2 and "does not exist" in result.output
  inputs = tmp_path / "in"
  inputs.mkdir()
  shutil.copy(historical / "Detroit_circa_1915.jpg", inputs)
  result = runner.invoke(cli.main, ["photos", str(inputs), "-o", str(inputs), "--model", str(serving_model[1])])
  assert result.exit_code == 2 and "would be overwritten" in result.output


def test_upright_passes_native_photos_through_untouched(historical):
  data = (historical / "Detroit_circa_1915.jpg").read_bytes()
  assert photos.upright(data) is data
  cmyk = io.BytesIO()
  Image.open(io.BytesIO(data)).convert("CMYK").save(cmyk, format="JPEG")
  converted = Image.open(io.BytesIO(photos.upright(cmyk.getvalue())))
  assert converted.format == "PNG" and converted.mode == "RGB"
