"""`colorize download-coco`: resume, checksums and safe extraction, against a loopback HTTP server.

The served zip is a small COCO root made of real COCO photos and their real annotations.
"""
import hashlib
import http.server
import io
import json
import os
import re
import stat
import threading
import zipfile

from click.testing import CliRunner
import image_files
import pytest

from cli import main as cli
from cloud import coco_download


class _Files(http.server.BaseHTTPRequestHandler):
  """Serves `files` with HTTP Range support; can cut the first response short or ignore ranges."""
  files = {}
  log = []
  cut_after = None      # bytes sent before the connection drops, once
  honour_range = True

  def do_GET(self):
    type(self).log.append((self.path, self.headers.get("Range")))
    data = self.files.get(self.path)
    if data is None:
      self.send_error(404)
      return
    start = 0
    match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
    if match and self.honour_range:
      start = int(match.group(1))
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    else:
      self.send_response(200)
    body = data[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if type(self).cut_after is not None:
      body, type(self).cut_after = body[:type(self).cut_after], None
      self.wfile.write(body)
      self.wfile.flush()
      self.close_connection = True
      return
    try:
      self.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
      pass  # the client stopped reading (it refused the size): expected in some tests

  def log_message(self, *args):
    pass


@pytest.fixture
def server():
  handler = type("Files", (_Files,), {"files": {}, "log": [], "cut_after": None, "honour_range": True})
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()
  httpd.server_close()


@pytest.fixture(scope="module")
def coco_zips(coco128):
  """val2017.zip (8 real photos) and an annotations zip holding their real annotations."""
  subset = image_files.coco_annotations(coco128, image_files.coco_ids(coco128)[:8])
  names = [i["file_name"] for i in subset["images"]]
  images = io.BytesIO()
  with zipfile.ZipFile(images, "w") as z:
    z.writestr("val2017/", "")
    for name in names:
      z.write(coco128 / "train2017" / name, f"val2017/{name}")
  annotations = io.BytesIO()
  with zipfile.ZipFile(annotations, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("annotations/instances_val2017.json", json.dumps(subset))
  return {"val2017.zip": images.getvalue(), "annotations_trainval2017.zip": annotations.getvalue(), "names": names}


def _table(zips):
  return {name: coco_download.Archive(path, len(zips[name]), hashlib.sha256(zips[name]).hexdigest())
          for name, path in (("val2017.zip", "zips/val2017.zip"),
                             ("annotations_trainval2017.zip", "annotations/annotations_trainval2017.zip"))}


def _serve(handler, zips):
  handler.files.update({"/zips/val2017.zip": zips["val2017.zip"],
                        "/annotations/annotations_trainval2017.zip": zips["annotations_trainval2017.zip"]})


def test_download_unpacks_a_coco_root_and_is_idempotent(server, coco_zips, coco128, tmp_path):
  handler, url = server
  _serve(handler, coco_zips)
  dest = tmp_path / "coco"
  unpacked = coco_download.download_split("val2017", str(dest), base_url=url, archives=_table(coco_zips),
                                          progress=False)
  assert unpacked == ["val2017.zip", "annotations_trainval2017.zip"]
  assert sorted(os.listdir(dest / "val2017")) == coco_zips["names"]
  for name in coco_zips["names"]:
    assert (dest / "val2017" / name).read_bytes() == (coco128 / "train2017" / name).read_bytes()
  annotations = json.loads((dest / "annotations" / "instances_val2017.json").read_text())
  assert {i["file_name"] for i in annotations["images"]} == set(coco_zips["names"])
  assert not list(dest.glob("*.zip")) and not list(dest.glob("*.part"))  # zips deleted by default
  requests = len(handler.log)
  assert coco_download.download_split("val2017", str(dest), base_url=url, archives=_table(coco_zips),
                                      progress=False) == []
  assert len(handler.log) == requests  # nothing fetched again


def test_interrupted_download_resumes_with_range(server, coco_zips, tmp_path):
  handler, url = server
  _serve(handler, coco_zips)
  size = len(coco_zips["val2017.zip"])
  handler.cut_after = size // 3
  archive = _table(coco_zips)["val2017.zip"]
  path = tmp_path / "val2017.zip"
  coco_download.fetch(f"{url}/zips/val2017.zip", str(path), archive.size, archive.sha256, progress=False)
  assert path.read_bytes() == coco_zips["val2017.zip"]
  assert handler.log == [("/zips/val2017.zip", None), ("/zips/val2017.zip", f"bytes={size // 3}-")]


def test_a_part_file_left_by_an_earlier_run_is_resumed(server, coco_zips, tmp_path):
  handler, url = server
  _serve(handler, coco_zips)
  data = coco_zips["val2017.zip"]
  path = tmp_path / "val2017.zip"
  (tmp_path / "val2017.zip.part").write_bytes(data[:1000])
  archive = _table(coco_zips)["val2017.zip"]
  coco_download.fetch(f"{url}/zips/val2017.zip", str(path), archive.size, archive.sha256, progress=False)
  assert path.read_bytes() == data
  assert handler.log == [("/zips/val2017.zip", "bytes=1000-")]


def test_server_ignoring_range_restarts_cleanly(server, coco_zips, tmp_path):
  handler, url = server
  _serve(handler, coco_zips)
  handler.honour_range = False
  data = coco_zips["val2017.zip"]
  (tmp_path / "val2017.zip.part").write_bytes(data[:1000])
  archive = _table(coco_zips)["val2017.zip"]
  coco_download.fetch(f"{url}/zips/val2017.zip", str(tmp_path / "val2017.zip"), archive.size, archive.sha256,
                      progress=False)
  assert (tmp_path / "val2017.zip").read_bytes() == data


def test_checksum_mismatch_deletes_the_download(server, coco_zips, tmp_path):
  handler, url = server
  tampered = bytearray(coco_zips["val2017.zip"])
  tampered[len(tampered) // 2] ^= 0xFF
  handler.files["/zips/val2017.zip"] = bytes(tampered)
  archive = _table(coco_zips)["val2017.zip"]
  with pytest.raises(coco_download.ChecksumError, match="does not match the published"):
    coco_download.fetch(f"{url}/zips/val2017.zip", str(tmp_path / "val2017.zip"), archive.size, archive.sha256,
                        progress=False)
  assert os.listdir(tmp_path) == []


def test_cli_checks_the_official_sizes_against_a_mirror(server, coco_zips, tmp_path):
  """The CLI uses the published sizes and hashes: a mirror serving other bytes is refused."""
  handler, url = server
  _serve(handler, coco_zips)
  result = CliRunner().invoke(cli.main, ["download-coco", "--split", "val2017", "--dest", str(tmp_path / "coco"),
                                         "--base-url", url])
  assert result.exit_code == 1
  assert f"the published size is {coco_download.ARCHIVES['val2017.zip'].size}" in result.output
  assert not (tmp_path / "coco" / "val2017").exists()


def test_missing_file_is_a_clear_error(server, tmp_path):
  _, url = server
  with pytest.raises(coco_download.DownloadError, match="HTTP 404"):
    coco_download.fetch(f"{url}/zips/nothing.zip", str(tmp_path / "x.zip"), 10, "0" * 64, progress=False)


def _zip_with(members):
  data = io.BytesIO()
  with zipfile.ZipFile(data, "w") as z:
    z.writestr("val2017/ok.jpg", b"fine")
    for name, content in members:
      if isinstance(content, zipfile.ZipInfo):
        z.writestr(content, name)
      else:
        z.writestr(name, content)
  return data.getvalue()


def _symlink(name):
  info = zipfile.ZipInfo(name)
  info.external_attr = (stat.S_IFLNK | 0o777) << 16
  return info


@pytest.mark.parametrize("member, message", [
    (("../evil.txt", b"x"), "'..'"),
    (("val2017/../../evil.txt", b"x"), "'..'"),
    (("/tmp/evil.txt", b"x"), "absolute path"),
    (("C:/evil.txt", b"x"), "absolute path"),
    (("/etc/passwd", _symlink("val2017/link")), "symbolic link"),
])
def test_malicious_archive_is_rejected_before_writing(server, tmp_path, member, message):
  handler, url = server
  data = _zip_with([member])
  handler.files["/zips/val2017.zip"] = data
  handler.files["/annotations/annotations_trainval2017.zip"] = data
  table = {name: coco_download.Archive(path, len(data), hashlib.sha256(data).hexdigest())
           for name, path in (("val2017.zip", "zips/val2017.zip"),
                              ("annotations_trainval2017.zip", "annotations/annotations_trainval2017.zip"))}
  dest = tmp_path / "inside" / "coco"
  with pytest.raises(coco_download.UnsafeArchiveError, match=re.escape(message)):
    coco_download.download_split("val2017", str(dest), base_url=url, archives=table, progress=False)
  assert not (dest / "val2017").exists()  # not even the harmless member
  assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "inside" / "evil.txt").exists()
  assert not os.path.exists(dest / ".val2017.zip.done")


@pytest.mark.parametrize("announce", [True, False])
def test_a_server_sending_more_than_the_published_size_is_stopped_at_once(server, coco_zips, tmp_path, announce):
  """With or without a Content-Length: one clear error, no retry loop (it used to restart for ever)."""
  handler, url = server
  data = coco_zips["val2017.zip"]
  handler.files["/zips/val2017.zip"] = data + b"x" * 5000
  if not announce:
    handler.send_header = lambda self, key, value: None if key == "Content-Length" else _Files.send_header(
        self, key, value)
    handler.close_connection = True
  archive = _table(coco_zips)["val2017.zip"]
  message = "sent more than the published" if not announce else "the server offers"
  with pytest.raises(coco_download.DownloadError, match=message):
    coco_download.fetch(f"{url}/zips/val2017.zip", str(tmp_path / "val2017.zip"), archive.size, archive.sha256,
                        progress=False)
  assert len(handler.log) == 1 and os.listdir(tmp_path) == []
