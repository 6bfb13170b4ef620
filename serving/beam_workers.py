"""Beam's DirectRunner worker processes on one machine: how their TensorFlows share its cores.

Used around every Beam pipeline that runs TensorFlow in its workers: `colorize photos --runner`
(serving/archive.py) and the Embed step (components/embed/).
"""
import contextlib
import os
from typing import Iterator

_TF_THREADS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@contextlib.contextmanager
def cores_shared(options) -> Iterator[None]:
  """While the pipeline runs: DirectRunner worker processes share this machine's cores between
  their TensorFlows (TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS, which the workers inherit
  and a user's own values override). Each TensorFlow would otherwise start a thread per core, and
  the workers' threads would contend for the same cores: 2 workers on 2 cores took 6% more CPU
  a photo with them (bench/photos.py).
  """
  from apache_beam.options import pipeline_options
  direct = options.view_as(pipeline_options.DirectOptions)
  runner = options.view_as(pipeline_options.StandardOptions).runner or "DirectRunner"
  workers = direct.direct_num_workers or os.cpu_count() or 1  # Beam's 0: one a core
  if runner != "DirectRunner" or direct.direct_running_mode != "multi_processing" or workers < 2:
    yield
    return
  threads = str(max(1, (os.cpu_count() or 1) // workers))
  added = [name for name in _TF_THREADS if name not in os.environ]
  os.environ.update(dict.fromkeys(added, threads))
  try:
    yield
  finally:
    for name in added:
      os.environ.pop(name, None)
