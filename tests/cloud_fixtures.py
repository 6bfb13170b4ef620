"""Shared by the cloud tests (test_compile, test_submit, test_deploy): one cloud configuration, offline
commands, and the base of the loopback servers that answer like Google's REST APIs."""
import json
import os
import pathlib
import shutil
import subprocess
import urllib.parse

REPO = pathlib.Path(__file__).resolve().parent.parent
IMAGE = "us-central1-docker.pkg.dev/colorize-test/colorize/colorize:0.1.0"
SERVICE_ACCOUNT = "pipelines@colorize-test.iam.gserviceaccount.com"
NETWORK = "projects/123456789012/global/networks/colorize-vpc"
KMS_KEY = "projects/colorize-test/locations/europe-west4/keyRings/colorize/cryptoKeys/pipelines"
TENSORBOARD = "projects/colorize-test/locations/europe-west4/tensorboards/4242"
CLOUD = {
    "project": "colorize-test",
    "region": "europe-west4",
    "image": IMAGE,
    "service_account": SERVICE_ACCOUNT,
    "labels": {"team": "vision", "env": "test"},
    "network": NETWORK,
    "encryption_key": KMS_KEY,
    "dataflow": {"machine_type": "n2-standard-8", "max_workers": 17, "disk_size_gb": 80,
                 "subnetwork": "regions/europe-west4/subnetworks/colorize-private", "use_public_ips": False},
    "training": {"machine_type": "a2-highgpu-4g", "accelerator_type": "NVIDIA_TESLA_A100",
                 "accelerator_count": 4, "replica_count": 3, "timeout_hours": 6.5, "restart_on_worker_restart": True,
                 "tensorboard": TENSORBOARD},
    "deploy": {"enabled": True, "endpoint_name": "colorize-nightly", "machine_type": "n1-standard-8",
               "accelerator_type": "NVIDIA_TESLA_T4", "max_replicas": 3, "traffic_percentage": 100},
    "resources": {"cpu": 2, "memory_gb": 7.5},
    "step_resources": {"CocoIngest": {"cpu": 8, "memory_gb": 32}},
}
CONFIG = {
    "pipeline_name": "colorize-nightly",
    "output_root": "gs://colorize-bucket/runs",
    "ingest": {"data_root": "gs://colorize-bucket/coco", "snapshot": "span-{SPAN}", "max_images": 5000,
               "categories": ["dog", "cat"], "test_fraction": 0.0321},
    "train": {"epochs": 7, "batch_size": 16, "strategy": "multi_worker", "global_features": "precomputed"},
    "evaluate": {"mse_upper_bound": 0.015},
    "cloud": CLOUD,
}


def offline_command(args, env=None):
  """`args` with no Google credentials, and no network where unshare(2) is allowed."""
  env = dict(env or os.environ)
  for key in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG"):
    env.pop(key, None)
  if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
    args = ["unshare", "--net"] + args
  return args, env


class JsonApi:
  """Mixin of an http.server.BaseHTTPRequestHandler standing in for a Google REST API on a loopback
  port: the handler answers; every request lands in `requests`."""
  requests = None

  def _reply(self, status, body):
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def _record(self):
    length = int(self.headers.get("Content-Length") or 0)
    raw = self.rfile.read(length) if length else b""
    url = urllib.parse.urlsplit(self.path)
    self.requests.append({"method": self.command, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                          "body": json.loads(raw) if raw else None,
                          "authorization": self.headers.get("Authorization")})
    return self.requests[-1]

  def log_message(self, *args):
    pass
