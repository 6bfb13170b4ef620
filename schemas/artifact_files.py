"""The files an Examples artifact's writer recorded, checked where the artifact is read.

TFX's cache hands a step the artifacts an earlier run published, whatever happened to
their files since (a disk error, a copy cut short, a hand edit). A reader then died deep
inside TensorFlow (`DataLossError`) with nothing naming the artifact. So the writers
(CocoIngest's commit, Embed) record every split file's size and SHA-256 in MANIFEST_FILE
beside the splits, and the readers (Embed, the Trainer) call `check` first: damage is one
DamagedArtifactError line naming the artifact, the file and how to rebuild it.

An artifact without a manifest (written before manifests existed) is not checked.
Beam's FileSystems, not TensorFlow, so the ingestion's Beam workers can write it; local
and gs:// alike. Beam is imported by the functions that use it: the CLI names
DamagedArtifactError before it imports anything heavy.
"""
import hashlib
import json
import posixpath
from typing import Dict, List, Sequence

MANIFEST_FILE = "files.json"
SPLIT_FILES = "Split-*/*"
REBUILD = "rebuild it with `colorize run --no-cache` (TFX's cache would hand it back again)"
_CHUNK = 1 << 20


class DamagedArtifactError(RuntimeError):
  """An artifact's files differ from what its writer recorded; the message names it and how to rebuild it."""


def record(uri: str) -> None:
  """Writes the manifest of the split files under the artifact folder `uri` (call once they are all written)."""
  from apache_beam.io.filesystems import FileSystems
  files = {relative: {"bytes": size, "sha256": _sha256(posixpath.join(uri, relative))}
           for relative, size in sorted(_split_files(uri).items())}
  with FileSystems.create(posixpath.join(uri, MANIFEST_FILE), "application/json") as f:
    f.write(json.dumps({"files": files}, indent=1).encode("utf-8"))


def check(uri: str, what: str) -> None:
  """Raises DamagedArtifactError unless the split files under `uri` are exactly those recorded.

  what: how the message names the artifact, e.g. "the Examples CocoIngest wrote".
  """
  from apache_beam.io.filesystem import CompressionTypes
  from apache_beam.io.filesystems import FileSystems
  manifest_path = posixpath.join(uri, MANIFEST_FILE)
  if not FileSystems.exists(manifest_path):
    return
  try:
    with FileSystems.open(manifest_path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      recorded = json.loads(f.read())["files"]
  except (ValueError, KeyError, TypeError) as e:
    raise DamagedArtifactError(f"{what} at {uri} is damaged: its {MANIFEST_FILE} cannot be read ({e}); "
                               f"{REBUILD}") from e
  found = _split_files(uri)
  for relative in sorted(set(recorded) | set(found)):
    if relative not in found:
      problem = "is missing"
    elif relative not in recorded:
      problem = "was not written by the step"
    elif found[relative] != recorded[relative]["bytes"]:
      problem = f"holds {found[relative]} bytes, {recorded[relative]['bytes']} were written"
    elif _sha256(posixpath.join(uri, relative)) != recorded[relative]["sha256"]:
      problem = "changed after it was written (its SHA-256 differs)"
    else:
      continue
    raise DamagedArtifactError(f"{what} at {uri} is damaged: {relative} {problem}; {REBUILD}")


def artifact_uris(split_patterns: Sequence[str]) -> List[str]:
  """The artifact folders of `<uri>/Split-<name>/*` patterns (what a Trainer's fn_args hold)."""
  return sorted({posixpath.dirname(posixpath.dirname(p.rstrip("/"))) for p in split_patterns})


def _split_files(uri: str) -> Dict[str, int]:
  """{path relative to uri: size} of every file of every split folder."""
  from apache_beam.io.filesystems import FileSystems
  base = uri.rstrip("/") + "/"
  matched = FileSystems.match([base + SPLIT_FILES])[0].metadata_list
  return {m.path[len(base):]: m.size_in_bytes for m in matched}


def _sha256(path: str) -> str:
  from apache_beam.io.filesystem import CompressionTypes
  from apache_beam.io.filesystems import FileSystems
  digest = hashlib.sha256()
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()
