"""The files an artifact's writer recorded, checked where the artifact is read.

TFX's cache hands a step the artifacts an earlier run published, whatever happened to
their files since (a disk error, a copy cut short, a hand edit). A reader then died deep
inside TensorFlow (`DataLossError`) with nothing naming the artifact. So the writers record
every file's size and SHA-256 in MANIFEST_FILE at the artifact's top: CocoIngest's commit
and Embed those of the Examples' splits, the Trainer (`record_model`) those of the Model's
SavedModel. The readers call `check` first (Embed and the Trainer for Examples; NewModelCheck,
the first step given the candidate and the baseline Model): damage is one DamagedArtifactError
line naming the artifact, the file and how to rebuild it.

An artifact without a manifest (written before manifests existed) is not checked: `check`
says so by returning None, and the reader decides.
Beam's FileSystems, not TensorFlow, so the ingestion's Beam workers can write it; local
and gs:// alike. Beam is imported by the functions that use it: the CLI names
DamagedArtifactError before it imports anything heavy.
"""
import hashlib
import json
import posixpath
from typing import Dict, List, Optional, Sequence

MANIFEST_FILE = "files.json"
SPLIT_FILES = "Split-*/*"
REBUILD = "rebuild it with `colorize run --no-cache` (TFX's cache would hand it back again)"
_CHUNK = 1 << 20


class DamagedArtifactError(RuntimeError):
  """An artifact's files differ from what its writer recorded; the message names it and how to rebuild it."""


def record(uri: str, files: str = SPLIT_FILES) -> None:
  """Writes the manifest of the files matching `files` under the artifact folder `uri` (once all are written)."""
  from apache_beam.io.filesystems import FileSystems
  with FileSystems.create(posixpath.join(uri, MANIFEST_FILE), "application/json") as f:
    f.write(json.dumps({"files": digests(uri, files)}, indent=1).encode("utf-8"))


def record_model(saved_model_dir: str) -> None:
  """The Trainer's manifest of the SavedModel it exported into a Model artifact's `<uri>/<folder>`."""
  uri, folder = posixpath.split(saved_model_dir.rstrip("/"))
  record(uri, model_files(folder))


def model_files(folder: str) -> str:
  """The pattern of a Model artifact's files: every file of its SavedModel folder, at any depth."""
  return f"{folder}/**"


def check(uri: str, what: str, files: str = SPLIT_FILES, rebuild: str = REBUILD) -> Optional[Dict[str, dict]]:
  """Raises DamagedArtifactError unless the files under `uri` matching `files` are exactly those recorded.

  Returns their digests ({path relative to uri: {"bytes", "sha256"}}, each file read once), or None
  when the artifact has no manifest (nothing was checked).
  what: how the message names the artifact, e.g. "the Examples #4"; rebuild: how to rebuild it.
  """
  from apache_beam.io.filesystem import CompressionTypes
  from apache_beam.io.filesystems import FileSystems
  manifest_path = posixpath.join(uri, MANIFEST_FILE)
  if not FileSystems.exists(manifest_path):
    return None
  try:
    with FileSystems.open(manifest_path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      recorded = json.loads(f.read())["files"]
  except (ValueError, KeyError, TypeError) as e:
    raise DamagedArtifactError(f"{what} at {uri} is damaged: its {MANIFEST_FILE} cannot be read ({e}); "
                               f"{rebuild}") from e
  found = _files(uri, files)
  verified = {}
  for relative in sorted(set(recorded) | set(found)):
    if relative not in found:
      problem = "is missing"
    elif relative not in recorded:
      problem = "was not written by the step"
    elif found[relative] != recorded[relative]["bytes"]:
      problem = f"holds {found[relative]} bytes, {recorded[relative]['bytes']} were written"
    else:
      verified[relative] = {"bytes": found[relative], "sha256": _sha256(posixpath.join(uri, relative))}
      if verified[relative]["sha256"] == recorded[relative]["sha256"]:
        continue
      problem = "changed after it was written (its SHA-256 differs)"
    raise DamagedArtifactError(f"{what} at {uri} is damaged: {relative} {problem}; {rebuild}")
  return verified


def digests(uri: str, files: str = SPLIT_FILES) -> Dict[str, dict]:
  """{path relative to uri: {"bytes", "sha256"}} of the files under `uri` matching `files`."""
  return {relative: {"bytes": size, "sha256": _sha256(posixpath.join(uri, relative))}
          for relative, size in sorted(_files(uri, files).items())}


def artifact_uris(split_patterns: Sequence[str]) -> List[str]:
  """The artifact folders of `<uri>/Split-<name>/*` patterns (what a Trainer's fn_args hold)."""
  return sorted({posixpath.dirname(posixpath.dirname(p.rstrip("/"))) for p in split_patterns})


def _files(uri: str, files: str) -> Dict[str, int]:
  """{path relative to uri: size} of every file under uri matching the glob `files` ("**": any depth)."""
  from apache_beam.io.filesystems import FileSystems
  base = uri.rstrip("/") + "/"
  matched = FileSystems.match([base + files])[0].metadata_list
  return {m.path[len(base):]: m.size_in_bytes for m in matched}


def _sha256(path: str) -> str:
  from apache_beam.io.filesystem import CompressionTypes
  from apache_beam.io.filesystems import FileSystems
  digest = hashlib.sha256()
  with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()
