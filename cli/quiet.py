"""Keeps run logs readable: silences warnings known to be harmless on this stack.

TFX, Beam and the Google client libraries print ~150 lines of warnings per run that a
user can do nothing about (e.g. google-api-core's "non-supported Python version"
FutureWarning once per client package). Only those exact messages are filtered; any
other warning still shows.
"""
import logging
import os
import re
import warnings

# google-api-core, once per client package: Python 3.10 is what TFX 1.16 requires. By the start of
# the message, so that child processes (Beam's worker processes: fresh interpreters) get them too,
# through PYTHONWARNINGS, whose entries match a message's start.
_HARMLESS_EVERYWHERE = (
    (FutureWarning, "You are using a non-supported Python version"),
    (FutureWarning, "You are using a Python version"),  # (3.10.x) past its end of life
)
_HARMLESS = (
    # google-cloud-aiplatform: TFX 1.16's dependency set holds google-cloud-storage at 2.x.
    (FutureWarning, r".*google-cloud-storage < 3.0.0.*"),
    # protobuf 3.20 / absl / pkg_resources noise from TFX's own imports.
    (DeprecationWarning, r".*pkg_resources.*"),
    (DeprecationWarning, r".*declare_namespace.*"),
    (UserWarning, r".*pkg_resources is deprecated.*"),
    # tfx_bsl / TFMA on TF 2.16.
    (UserWarning, r".*tensorflow_io_gcs_filesystem.*"),
    (DeprecationWarning, r".*distutils Version classes are deprecated.*"),
)
# Beam's batch-size estimator fitting a line through too few timings (numpy's RankWarning).
_POLYFIT = r".*Polyfit may be poorly conditioned.*"

# Log records (absl / TensorFlow loggers) that say nothing a user can act on.
_HARMLESS_LOGS = (
    # The latest-blessed-model resolver on a local SQLite store, once per resolution.
    "ArtifactQuery.property_predicate is not supported",
    # TFMA's own writer on TF 2.16.
    "tf_record_iterator (from tensorflow.python.lib.io.tf_record) is deprecated",
    # Beam 2.74's RunInference: its import of `resource` fails with torch absent, so it warns
    # on every batch that it cannot report memory (to the root logger).
    "Resource module is not available for current platform",
    # The data gate's last-verdict resolver (pipelines/data_gate.py) before any verdict exists: the first span.
    "Error while resolving inputs for last_data_gate_verdict",
)


class _DropHarmless(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _HARMLESS_LOGS)


def install() -> None:
  """Filters the known-harmless warnings and quiets TensorFlow's C++ start-up chatter."""
  # 3, not 2: TF 2.16 logs "Unable to register cuDNN/cuFFT/cuBLAS factory" at ERROR level on
  # every import, GPU or not. A real failure still reaches the user as a Python exception.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  for category, message in _HARMLESS:
    warnings.filterwarnings("ignore", message=message, category=category)
  for category, start in _HARMLESS_EVERYWHERE:
    warnings.filterwarnings("ignore", message=re.escape(start), category=category)
  inherited = [os.environ.get("PYTHONWARNINGS", "")]
  inherited += [f"ignore:{start}:{category.__name__}" for category, start in _HARMLESS_EVERYWHERE]
  os.environ["PYTHONWARNINGS"] = ",".join(filter(None, dict.fromkeys(inherited)))
  # Imported here, not for `--help`, and before its filter is set: numpy installs an "always"
  # filter for RankWarning when it is imported.
  import numpy as np
  warnings.filterwarnings("ignore", message=_POLYFIT, category=np.RankWarning)
  logging.getLogger("apache_beam.runners.interactive").setLevel(logging.ERROR)
  for name in ("", "absl", "tensorflow"):
    logging.getLogger(name).addFilter(_DropHarmless())
