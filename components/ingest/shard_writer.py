"""Shard files written where the examples are made, committed once: Beam's file-sink protocol, per bundle.

Why: an example is ~240 KB, while everything the rest of the pipeline needs to know about it
(its id, its split, its skip reason) is a few bytes. So the DoFn that makes examples also writes
them, and only Shard records (a temp path, a key, the image ids in it) travel through the runner.

The protocol (that of apache_beam.io.filebasedsink, at the granularity of a bundle):
  1. A bundle opens its files lazily under a run's temp folder, one per key (split), with a
     fresh uuid in each name: a retried or duplicated bundle never touches another attempt's files.
  2. finish_bundle closes them and emits their Shard records. A runner commits the outputs of
     exactly one successful attempt of each bundle; the files of failed or discarded attempts
     are never named by a committed record.
  3. One commit step, given every committed record as a side input, renames the named files to
     `<prefix>-SSSSS-of-NNNNN.gz` in their split folders (numbered in a fixed order, so a
     retried commit picks the same names and skips renames already done), then the executor
     deletes the temp folder with whatever failed attempts left in it.
A commit refuses records that name one image twice, so a runner that committed a bundle twice
is an error, not a dataset with duplicates.
"""
import posixpath
from typing import Dict, Iterable, List, NamedTuple, Sequence
import uuid

from apache_beam.io.filesystems import FileSystems

from components.ingest import tfrecord_gzip

SHARD_SUFFIX = ".gz"


class DuplicateExamplesError(RuntimeError):
  """Committed shard records name one image more than once."""


class Shard(NamedTuple):
  """What crosses the runner for a closed shard file: no example bytes."""
  key: str                # the split (or other group) the records belong to
  path: str               # the temp file
  image_ids: List[int]    # in file order


class BundleShards:
  """One bundle's open shard files, one per key, under temp_dir."""

  def __init__(self, temp_dir: str):
    self._temp_dir = temp_dir
    self._writers: Dict[str, tfrecord_gzip.GzipWriter] = {}
    self._shards: Dict[str, Shard] = {}

  def write(self, key: str, image_id: int, record: bytes) -> None:
    if key not in self._writers:
      path = posixpath.join(self._temp_dir, f"{key}-{uuid.uuid4().hex}{SHARD_SUFFIX}")
      self._writers[key] = tfrecord_gzip.GzipWriter(path)
      self._shards[key] = Shard(key, path, [])
    self._writers[key].write_record(record)
    self._shards[key].image_ids.append(image_id)

  def close(self) -> List[Shard]:
    for writer in self._writers.values():
      writer.close()
    shards = [self._shards[key] for key in sorted(self._shards)]
    self._writers, self._shards = {}, {}
    return shards


def check_unique(shards: Iterable[Shard]) -> None:
  seen: Dict[int, str] = {}
  for shard in shards:
    for image_id in shard.image_ids:
      if image_id in seen:
        raise DuplicateExamplesError(f"image {image_id} is in two committed shards, {seen[image_id]} and "
                                     f"{shard.path}: a bundle was committed twice")
      seen[image_id] = shard.path


def commit(shards: Sequence[Shard], folder: str, prefix: str) -> List[str]:
  """Renames the shard files to `<folder>/<prefix>-SSSSS-of-NNNNN.gz`; safe to repeat after a partial run."""
  ordered = sorted(shards, key=lambda s: s.path)
  finals = [shard_name(folder, prefix, i, len(ordered)) for i in range(len(ordered))]
  pending, missing = [], []
  for shard, final in zip(ordered, finals, strict=True):
    if FileSystems.exists(shard.path):
      pending.append((shard.path, final))
    elif not FileSystems.exists(final):  # neither moved by an earlier attempt of this commit
      missing.append(shard.path)
  if missing:
    raise FileNotFoundError(f"shard files vanished before their commit: {missing}")
  if pending:
    if not FileSystems.exists(folder):  # a local folder; on gs:// a folder is only a prefix
      FileSystems.mkdirs(folder)
    FileSystems.rename([src for src, _ in pending], [dst for _, dst in pending])
  return finals


def shard_name(folder: str, prefix: str, index: int, count: int) -> str:
  return posixpath.join(folder, f"{prefix}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}")


def new_temp_dir(parent: str) -> str:
  return posixpath.join(parent, f".temp-{uuid.uuid4().hex}")


def remove_folder(folder: str) -> None:
  """Deletes a folder and everything in it, local or gs:// (where a folder is only a name prefix)."""
  files = FileSystems.match([posixpath.join(folder, "**")])[0].metadata_list
  if files:
    FileSystems.delete([m.path for m in files])
  if FileSystems.exists(folder):
    FileSystems.delete([folder])
