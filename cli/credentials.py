"""GOOGLE_APPLICATION_CREDENTIALS, checked before a command talks to Google Cloud.

google.auth reads the file that variable names only when a client is made, and a path that is no
key file (a folder, a missing file, junk) comes out as IsADirectoryError, a bare JSON error or
"could not find default credentials", without the path. Checked first, it is one line naming it.
"""
import json
import os

import click

from imaging import tree

VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"
_LIMIT = 1_000_000  # bytes: a key file is ~2 kB


def check() -> None:
  """Raises click.ClickException if the variable is set to something that is no readable JSON file."""
  path = os.environ.get(VARIABLE)
  if not path:
    return
  try:
    key = json.loads(tree.read_file(path, _LIMIT))
  except (OSError, ValueError) as e:
    raise click.ClickException(f"{VARIABLE}={path!r} names no readable key file ({e}): point it at a service "
                               "account key or application-default credentials file, or unset it") from e
  if not isinstance(key, dict) or "type" not in key:
    raise click.ClickException(f"{VARIABLE}={path!r} is JSON but no Google credentials file (it has no \"type\")")
