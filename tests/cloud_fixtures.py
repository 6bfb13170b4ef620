"""Shared by the cloud tests (test_compile, test_submit): one cloud configuration, offline commands."""
import os
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parent.parent
IMAGE = "us-central1-docker.pkg.dev/colorize-test/colorize/colorize:0.1.0"
SERVICE_ACCOUNT = "pipelines@colorize-test.iam.gserviceaccount.com"
CLOUD = {
    "project": "colorize-test",
    "region": "europe-west4",
    "image": IMAGE,
    "service_account": SERVICE_ACCOUNT,
    "labels": {"team": "vision", "env": "test"},
    "dataflow": {"machine_type": "n2-standard-8", "max_workers": 17, "disk_size_gb": 80},
    "training": {"machine_type": "a2-highgpu-4g", "accelerator_type": "NVIDIA_TESLA_A100",
                 "accelerator_count": 4, "replica_count": 3},
    "resources": {"cpu": 2, "memory_gb": 7.5},
    "step_resources": {"CocoIngest": {"cpu": 8, "memory_gb": 32}},
}
CONFIG = {
    "pipeline_name": "colorize-nightly",
    "output_root": "gs://colorize-bucket/runs",
    "ingest": {"data_root": "gs://colorize-bucket/coco", "snapshot": "span-{SPAN}", "max_images": 5000,
               "categories": ["dog", "cat"], "test_fraction": 0.0321},
    "train": {"epochs": 7, "batch_size": 16, "strategy": "multi_worker"},
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
