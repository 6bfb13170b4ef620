"""`colorize photos ... --runner DirectRunner|DataflowRunner`: a whole archive colorized on Beam.

The launcher lists the inputs and the output (one listing each, no per-photo request), then
runs only what is left:
  photos to do -> Reshuffle (spread over workers) -> network inputs (serving/colorizer.py)
    -> RunInference (the SavedModel loaded once per worker process, shared by its threads;
       batches of `batch_size`) -> recombine at full resolution, encode, write -> manifest rows
Inputs are local folders/files (the rule of imaging/tree.py, as the single-process path) or
gs:// prefixes (every object under them; objects are plain files). Outputs mirror the
inputs' relative paths under the output folder (local or gs://), as serving/photos.py names
them; the same per-photo functions make the same bytes as the single-process path.

Guarantees (as `colorize photos` without --runner): an input is never written; an existing
output is kept unless `overwrite`; a local output is written under a temporary name and
linked into place (serving/photos.py's Writer), a gs:// object appears only when its
upload is complete, so a killed job leaves no half-written photo and its rerun lists the
outputs that exist and does only the rest (with nothing left to do, no model is loaded and no
job started). A photo that cannot be read or written (a full output folder too) is skipped
with its reason; the others go on.

MANIFEST (in the output folder, replaced by each run): one JSON object a line
per input: {"input", "output", "result": colorized | kept | skipped | passed over, "reason"}.
Its rows are written by the workers under a temporary folder (the job's temp_location on
Dataflow) and gathered by the launcher when the job has finished.
"""
import dataclasses
import functools
import json
import os
import pathlib
import posixpath
import re
import secrets
import shutil
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from serving import beam_workers
from serving import colorizer
from serving import photos as photos_lib
from serving.photo_settings import MANIFEST

COLORIZED, KEPT, SKIPPED, PASSED_OVER = "colorized", "kept", "skipped", "passed over"
GCS = "gs://"
METRICS_NAMESPACE = "colorize_photos"
_MANIFEST_PARTS = "manifest-part"


@dataclasses.dataclass
class ArchivePlan:
  todo: List[Tuple[str, str]]   # (input, output) to colorize
  rows: List[Dict[str, str]]    # manifest rows decided by the launcher: kept, passed over

  def count(self, result: str) -> int:
    return sum(row["result"] == result for row in self.rows)


def is_gcs(path: str) -> bool:
  return str(path).startswith(GCS)


def row(source: str, target: str, result: str, reason: str = "") -> Dict[str, str]:
  return {"input": source, "output": target, "result": result, "reason": reason}


def plan(inputs: Sequence[str], output: str, overwrite: bool) -> ArchivePlan:
  """What to colorize, what to keep and what is passed over. Raises photos.UsageError."""
  inputs = [str(i) for i in inputs]
  output = output if is_gcs(output) else os.path.abspath(output)
  if not all(map(is_gcs, inputs)) and any(map(is_gcs, inputs)):
    raise photos_lib.UsageError("give either local inputs or gs:// prefixes, not both")
  if is_gcs(inputs[0]):
    found, passed_over = _gcs_photos(inputs)
  elif is_gcs(output):
    found, passed_over = photos_lib.find_photos(map(pathlib.Path, inputs), None)
  else:  # the single-process path's plan, which also refuses an input as an output
    planned = photos_lib.plan(map(pathlib.Path, inputs), pathlib.Path(output))
    found = [(str(job.source), os.path.relpath(job.target, output)) for job in planned.jobs]
    passed_over = planned.passed_over
  pairs: Dict[str, str] = {}
  for source, relative in found:
    target = _join(output, photos_lib.target_name(relative))
    other = pairs.setdefault(target, str(source))
    if other != str(source):
      raise photos_lib.UsageError(f"{other} and {source} would both be written to {target}: "
                                  "colorize them in separate runs")
  existing = set() if overwrite else _existing(output, pairs)
  result = ArchivePlan([], [row(path, "", PASSED_OVER, reason) for path, reason in passed_over])
  for target, source in pairs.items():
    if target in existing:
      result.rows.append(row(source, target, KEPT, "exists already (--overwrite replaces it)"))
    else:
      result.todo.append((source, target))
  return result


def _join(output: str, relative: str) -> str:
  relative = relative.replace(os.sep, "/")
  return posixpath.join(output, relative) if is_gcs(output) else os.path.join(output, relative)


def _gcs_photos(prefixes: List[str]) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
  """(object, path relative to the prefix holding every input) for the photos under `prefixes`."""
  from apache_beam.io.filesystems import FileSystems
  prefixes = [p.rstrip("/") for p in prefixes]
  base = GCS + posixpath.commonpath([p[len(GCS):] for p in prefixes])
  found, passed_over = [], []
  for prefix in prefixes:
    matched = FileSystems.match([prefix + "/**"])[0].metadata_list
    if not matched:
      raise photos_lib.UsageError(f"no objects under {prefix}/")
    for metadata in sorted(matched, key=lambda m: m.path):
      relative = metadata.path[len(base) + 1:]
      reason = photos_lib.name_reason(relative)
      if reason == photos_lib.TEMPORARY:
        continue
      if reason:
        passed_over.append((metadata.path, reason))
      else:
        found.append((metadata.path, relative))
  return found, passed_over


def _existing(output: str, targets: Iterable[str]) -> set:
  """The targets that exist: one listing of a gs:// output, a stat each of a local one."""
  if not is_gcs(output):
    return {t for t in targets if os.path.lexists(t)}
  from apache_beam.io.filesystems import FileSystems
  return {m.path for m in FileSystems.match([output.rstrip("/") + "/**"])[0].metadata_list}


def handler(saved_model: str, batch_size: int):
  """RunInference's model handler: NetworkInputs -> a*b*, with serving/colorizer.py's Network."""
  from apache_beam.ml.inference import base as inference

  class NetworkHandler(inference.ModelHandler):
    def __init__(self):
      super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)

    def load_model(self):
      return colorizer.Network(saved_model)

    def run_inference(self, batch, model, inference_args=None):
      del inference_args
      return model.predict(batch)

    def get_metrics_namespace(self) -> str:
      return METRICS_NAMESPACE

  return inference.KeyedModelHandler(NetworkHandler())


def _read(path: str) -> bytes:
  from apache_beam.io.filesystems import FileSystems
  with FileSystems.open(path) as f:
    return f.read()


@functools.cache
def _max_pixels(saved_model: str) -> Optional[int]:
  """The model's size limit, read once per worker process: there, not in the launcher, which
  then needs no TensorFlow (the workers load it for the model anyway).
  """
  return colorizer.read_max_pixels(saved_model)


def _prepare(item: str, saved_model: str):
  """(input, output) as a JSON line -> (that line, NetworkInputs), or a manifest row (tagged 'skipped').

  The pair travels as its JSON line (ASCII): a name that is not UTF-8 (surrogate escapes) cannot be
  an element, as Beam's coders encode every str as strict UTF-8, even to sample its size.
  """
  import apache_beam as beam
  source, target = json.loads(item)
  max_pixels = _max_pixels(saved_model)
  try:
    yield item, colorizer.network_inputs(colorizer.read_photo(source, max_pixels), max_pixels)
  except (colorizer.PhotoError, OSError) as e:
    yield beam.pvalue.TaggedOutput(SKIPPED, json.dumps(row(source, target, SKIPPED, str(e))))


def _finish(keyed, overwrite: bool, saved_model: str) -> str:
  """((input, output) as a JSON line, a*b*) -> the output written (or kept); its manifest row."""
  item, ab = keyed
  source, target = json.loads(item)
  max_pixels = _max_pixels(saved_model)
  try:
    data = colorizer.recombine(colorizer.read_photo(source, max_pixels), ab,
                               photos_lib.output_format(pathlib.PurePath(target)), max_pixels)
    written = _write(target, data, overwrite)
  except (colorizer.PhotoError, OSError) as e:  # a full output folder too: the rerun finishes
    return json.dumps(row(source, target, SKIPPED, str(e)))
  return json.dumps(row(source, target, COLORIZED) if written else
                    row(source, target, KEPT, "appeared while the job ran (--overwrite replaces it)"))


def _write(target: str, data: bytes, overwrite: bool) -> bool:
  """False if `target` exists and is kept. A gs:// object is created only by a complete upload."""
  if not is_gcs(target):
    path = pathlib.Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    return photos_lib.Writer([], overwrite).write(path, data)
  from apache_beam.io.filesystems import FileSystems
  if not overwrite and FileSystems.exists(target):
    return False
  with FileSystems.create(target, mime_type="application/octet-stream") as f:
    f.write(data)
  return True


def run(plan_: ArchivePlan, saved_model: str, output: str, overwrite: bool, batch_size: int,
        beam_args: Sequence[str]) -> List[Dict[str, str]]:
  """Colorizes plan_.todo on Beam; returns the rows of the MANIFEST (write_manifest writes it)."""
  import apache_beam as beam
  from apache_beam.ml.inference import base as inference
  from apache_beam.options import pipeline_options

  options = pipeline_options.PipelineOptions(list(beam_args))
  temp_location = options.view_as(pipeline_options.GoogleCloudOptions).temp_location
  local_parts = None
  if temp_location:
    parts = posixpath.join(temp_location, f"colorize-manifest-{secrets.token_hex(6)}")
  else:
    local_parts = tempfile.mkdtemp(prefix="colorize-manifest-")
    parts = local_parts
  # The list goes to the workers as a file: in the job's graph, millions of names would exceed
  # Dataflow's request size.
  todo = posixpath.join(parts, "todo.jsonl")
  _write_text(todo, "".join(json.dumps(item) + "\n" for item in plan_.todo))
  try:
    with beam_workers.cores_shared(options), beam.Pipeline(options=options) as pipeline:
      prepared = (pipeline
                  | "Photos" >> beam.io.ReadFromText(todo)
                  | "Spread" >> beam.Reshuffle()
                  | "NetworkInputs" >> beam.FlatMap(_prepare, saved_model).with_outputs(SKIPPED, main="ready"))
      done = (prepared.ready
              | "Network" >> inference.RunInference(handler(saved_model, batch_size))
              | "RecombineAndWrite" >> beam.Map(_finish, overwrite, saved_model))
      _ = ((done, prepared[SKIPPED])
           | "Rows" >> beam.Flatten()
           | "Manifest" >> beam.io.WriteToText(posixpath.join(parts, _MANIFEST_PARTS)))
    rows = plan_.rows + _read_rows(parts)
  except Exception as e:
    # A worker that cannot load the model fails the job; Beam reports it with every worker's traceback.
    why = re.search(r"ModelError: (.*?)(?: \[while running [^\n]*)?$", str(e), re.MULTILINE)
    if why:
      raise colorizer.ModelError(why.group(1)) from None
    raise
  finally:
    if local_parts:
      shutil.rmtree(local_parts, ignore_errors=True)
    else:
      _delete(parts)
  return rows


def _read_rows(parts: str) -> List[Dict[str, str]]:
  from apache_beam.io.filesystems import FileSystems
  rows = []
  for metadata in FileSystems.match([posixpath.join(parts, _MANIFEST_PARTS + "*")])[0].metadata_list:
    rows += [json.loads(line) for line in _read(metadata.path).decode("utf-8").splitlines() if line]
  return rows


def _delete(parts: str) -> None:
  from apache_beam.io.filesystems import FileSystems
  matched = FileSystems.match([posixpath.join(parts, "**")])[0].metadata_list
  if matched:
    FileSystems.delete([m.path for m in matched])


def write_manifest(output: str, rows: List[Dict[str, str]]) -> None:
  """MANIFEST, whole or not at all: rows in input order."""
  text = "".join(json.dumps(r) + "\n" for r in sorted(rows, key=lambda r: (r["input"], r["output"])))
  if is_gcs(output):
    _write_text(posixpath.join(output, MANIFEST), text)
    return
  os.makedirs(output, exist_ok=True)
  photos_lib.Writer([], overwrite=True).write(pathlib.Path(output) / MANIFEST, text.encode("utf-8"))


def _write_text(path: str, text: str) -> None:
  from apache_beam.io.filesystems import FileSystems
  with FileSystems.create(path, mime_type="text/plain") as f:
    f.write(text.encode("utf-8"))
