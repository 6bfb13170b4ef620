"""Fetches the official COCO 2017 zips and unpacks them into a COCO root.

Downloads resume (HTTP Range on a `.part` file, also after an interrupted run), stop
at the first byte beyond the published size (whether or not the server announced one),
are checked against the published size and SHA-256 before anything is unpacked, and
extraction refuses any archive with absolute paths, `..` or links (no path traversal).
A finished archive leaves a marker, so running the command again fetches nothing.
"""
import dataclasses
import hashlib
import http.client
import os
import shutil
import stat
import time
from typing import Dict, List, Optional, Sequence
import urllib.error
import urllib.request
import zipfile

OFFICIAL_BASE_URL = "http://images.cocodataset.org"
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Archive:
  path: str       # under the base URL
  size: int       # bytes
  sha256: str

  @property
  def name(self) -> str:
    return self.path.rsplit("/", 1)[-1]


# Sizes and SHA-256 of the files cocodataset.org serves (as also pinned by TFDS).
ARCHIVES: Dict[str, Archive] = {a.name: a for a in (
    Archive("zips/train2017.zip", 19336861798, "69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929"),
    Archive("zips/val2017.zip", 815585330, "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"),
    Archive("annotations/annotations_trainval2017.zip", 252907541,
            "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268"),
)}
SPLITS = {
    "train2017": ("train2017.zip", "annotations_trainval2017.zip"),
    "val2017": ("val2017.zip", "annotations_trainval2017.zip"),
}


class DownloadError(RuntimeError):
  """A download or extraction failed; the message says what to do."""


class ChecksumError(DownloadError):
  pass


class UnsafeArchiveError(DownloadError):
  pass


def download_split(split: str, dest: str, base_url: str = OFFICIAL_BASE_URL, keep_zips: bool = False,
                   archives: Optional[Dict[str, Archive]] = None, retries: int = 5, progress: bool = True) -> List[str]:
  """Makes `dest` a COCO root holding `split` and its annotations; returns the archives unpacked now."""
  if split not in SPLITS:
    raise DownloadError(f"unknown split {split!r}; choose from {', '.join(sorted(SPLITS))}")
  archives = archives or ARCHIVES
  os.makedirs(dest, exist_ok=True)
  unpacked = []
  for name in SPLITS[split]:
    archive = archives[name]
    marker = os.path.join(dest, f".{name}.done")
    if os.path.exists(marker):
      continue  # fetched, checked and unpacked by an earlier run
    zip_path = os.path.join(dest, name)
    fetch(f"{base_url.rstrip('/')}/{archive.path}", zip_path, archive.size, archive.sha256,
          retries=retries, progress=progress)
    safe_extract(zip_path, dest, progress=progress)
    with open(marker, "w") as f:
      f.write(archive.sha256 + "\n")
    if not keep_zips:
      os.remove(zip_path)
    unpacked.append(name)
  return unpacked


def fetch(url: str, path: str, size: int, sha256: str, retries: int = 5, progress: bool = True) -> None:
  """Downloads url to path (resuming `path.part`), then checks size and SHA-256."""
  from tqdm import tqdm

  if os.path.exists(path) and os.path.getsize(path) == size and _sha256(path) == sha256:
    return
  part = path + ".part"
  attempt = 0
  with tqdm(total=size, unit="B", unit_scale=True, desc=os.path.basename(path),
            disable=None if progress else True) as bar:
    while True:
      have = os.path.getsize(part) if os.path.exists(part) else 0
      if have > size:
        os.remove(part)
        have = 0
      bar.n = have
      bar.refresh()
      if have == size:
        break
      try:
        _fetch_from(url, part, have, size, bar)
      except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
        if isinstance(e, urllib.error.HTTPError) and e.code < 500 and e.code != 429:
          raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e
        attempt += 1
        if attempt > retries:
          raise DownloadError(f"{url}: gave up after {retries} retries ({e}); run again to resume "
                              f"from {os.path.getsize(part) if os.path.exists(part) else 0} bytes") from e
        time.sleep(min(2 ** (attempt - 1), 30))
  digest = _sha256(part)
  if digest != sha256:
    os.remove(part)
    raise ChecksumError(f"{url}: SHA-256 {digest} does not match the published {sha256}; "
                        f"the download was deleted, run again to fetch it anew")
  os.replace(part, path)


def _fetch_from(url: str, part: str, have: int, size: int, bar) -> None:
  request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
  with urllib.request.urlopen(request, timeout=60) as response:
    if have and response.status != 206:
      have = 0  # the server ignored the range: start over
    total = _total_size(response, have)
    if total is not None and total != size:
      raise DownloadError(f"{url}: the server offers {total} bytes, the published size is {size}; "
                          f"wrong URL or mirror?")
    with open(part, "ab" if have else "wb") as f:
      bar.n = have
      for chunk in iter(lambda: response.read(_CHUNK), b""):
        if have + len(chunk) > size:  # with no size announced, this is where a wrong file shows
          f.close()
          os.remove(part)
          raise DownloadError(f"{url}: the server sent more than the published {size} bytes; wrong URL or "
                              "mirror? The download was deleted")
        f.write(chunk)
        have += len(chunk)
        bar.update(len(chunk))
  if os.path.getsize(part) < size:
    raise ConnectionError(f"connection closed at {os.path.getsize(part)} of {size} bytes")


def _total_size(response, have: int) -> Optional[int]:
  content_range = response.headers.get("Content-Range")  # "bytes 100-199/200"
  if content_range and "/" in content_range and not content_range.endswith("/*"):
    return int(content_range.rsplit("/", 1)[1])
  length = response.headers.get("Content-Length")
  return have + int(length) if length is not None else None


def check_members(infos: Sequence[zipfile.ZipInfo], archive: str) -> None:
  """Rejects absolute paths, `..`, drive letters and links: nothing may land outside dest."""
  for info in infos:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
      raise UnsafeArchiveError(f"{archive}: refusing absolute path {name!r}; nothing was extracted")
    if ".." in parts:
      raise UnsafeArchiveError(f"{archive}: refusing path with '..' {name!r}; nothing was extracted")
    if stat.S_ISLNK(info.external_attr >> 16):
      raise UnsafeArchiveError(f"{archive}: refusing symbolic link {name!r}; nothing was extracted")


def safe_extract(zip_path: str, dest: str, progress: bool = True) -> int:
  """Unpacks zip_path into dest after checking every member name; returns files written."""
  from tqdm import tqdm

  dest_real = os.path.realpath(dest)
  try:
    archive = zipfile.ZipFile(zip_path)
  except zipfile.BadZipFile as e:
    raise DownloadError(f"{zip_path} is not a zip file ({e}); delete it and run again") from e
  with archive:
    infos = archive.infolist()
    check_members(infos, os.path.basename(zip_path))
    written = 0
    for info in tqdm(infos, desc=f"unpack {os.path.basename(zip_path)}", unit="file",
                     disable=None if progress else True):
      target = os.path.realpath(os.path.join(dest_real, info.filename))
      if os.path.commonpath([dest_real, target]) != dest_real:  # e.g. through a symlink already in dest
        raise UnsafeArchiveError(f"{zip_path}: {info.filename!r} would land outside {dest}")
      if info.is_dir():
        os.makedirs(target, exist_ok=True)
        continue
      os.makedirs(os.path.dirname(target), exist_ok=True)
      try:
        with archive.open(info) as source, open(target, "wb") as out:  # CRC-checked while read
          shutil.copyfileobj(source, out, _CHUNK)
      except zipfile.BadZipFile as e:
        raise DownloadError(f"{zip_path}: {info.filename} is corrupt ({e})") from e
      written += 1
  return written


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()
