"""Keeps run logs readable: silences warnings known to be harmless on this stack.

TFX, Beam and the Google client libraries print ~150 lines of warnings per run that a
user can do nothing about (e.g. google-api-core's "non-supported Python version"
FutureWarning once per client package). Only those exact messages are filtered; any
other warning still shows.
"""
import logging
import os
import warnings

_HARMLESS = (
    # google-api-core: Python 3.10 is what TFX 1.16 requires.
    (FutureWarning, r".*non-supported Python version.*"),
    (FutureWarning, r".*Python version .* past its end of life.*"),
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


def install() -> None:
  """Filters the known-harmless warnings and quiets TensorFlow's C++ start-up chatter."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  for category, message in _HARMLESS:
    warnings.filterwarnings("ignore", message=message, category=category)
  logging.getLogger("apache_beam.runners.interactive").setLevel(logging.ERROR)
