"""The listing on its way to the Beam workers: files of JSON lines, not values in the graph.

Dataflow refuses a job whose graph is over 10 MB, and beam.Create puts its values into the
graph (pickled, compressed): COCO train2017's 118k photos take 2.1 MB there, an archive of a
million photos ~18 MB. So the executor writes the listing to files in the run's temp folder
and the graph holds only their names (one per PHOTOS_PER_FILE photos). The files are opened
by their literal names (a folder named like a pattern is not a pattern), on gs:// too.

A line is one element of MakeAndWrite: a list of photos (make_examples.batches).
"""
import dataclasses
import json
import posixpath
from typing import Iterator, List, Sequence

from apache_beam.io.filesystems import FileSystems

from components.ingest import make_examples
from components.ingest import sources

PHOTOS_PER_FILE = 8192


def write(photos: Sequence[sources.Photo], folder: str) -> List[str]:
  """Writes the photos to listing files in `folder`; returns their paths."""
  paths = []
  for start in range(0, len(photos), PHOTOS_PER_FILE):
    paths.append(posixpath.join(folder, f"listing-{len(paths):05d}.jsonl"))
    with FileSystems.create(paths[-1]) as f:
      for batch in make_examples.batches(photos[start:start + PHOTOS_PER_FILE]):
        # ASCII JSON: a name that is not valid UTF-8 (a lone surrogate in Python) survives as an escape.
        f.write(json.dumps([dataclasses.astuple(p) for p in batch]).encode("ascii") + b"\n")
  return paths


def read(path: str) -> Iterator[List[sources.Photo]]:
  """The lists of photos in one listing file."""
  with FileSystems.open(path) as f:
    for line in f:
      yield [sources.Photo(*fields) for fields in json.loads(line)]
