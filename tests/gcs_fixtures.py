"""A real GCS API server (gcp-storage-emulator) on a free loopback port, started by the tests.

Python clients (google-cloud-storage, Beam's GcsIO) reach it through STORAGE_EMULATOR_HOST.
TensorFlow's own gs:// (tf.io.gfile) cannot be pointed at it reliably: the built-in
filesystem has www.googleapis.com compiled in, and the modular one of
tensorflow-io-gcs-filesystem (TF_USE_MODULAR_FILESYSTEM=1 + CLOUD_STORAGE_EMULATOR_ENDPOINT)
aborts the process on reads of a few hundred KB (heap corruption in google-cloud-cpp).
"""
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "colorize-test"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Emulator:
  """`python -m gcp_storage_emulator start`, in memory, with BUCKET created."""

  def __init__(self):
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self._process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(self.port),
         "--in-memory", "--default-bucket", BUCKET, "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
      try:
        with urllib.request.urlopen(self.url + "/", timeout=2):
          return
      except OSError as e:
        if self._process.poll() is not None or time.monotonic() > deadline:
          self.stop()
          raise RuntimeError(f"gcp-storage-emulator did not start on {self.url}") from e
        time.sleep(0.2)

  def stop(self):
    self._process.terminate()
    try:
      self._process.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self._process.kill()
      self._process.wait()
