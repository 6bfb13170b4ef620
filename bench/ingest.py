"""Ingestion throughput (issue 2 section 4): CocoIngest vs a naive loop and the decode-bound limit.

All on the same photos: coco128's 128 real COCO JPEGs repeated to BENCH_INGEST_IMAGES
(default 2560) files under COCO-style numeric names. Each method runs in its own
process, so peak RSS is its own:
  naive         PIL open -> centred square resized to 224 and 299 -> skimage rgb2lab
                (224) and rgb2gray (299, the luminance the gray feature encodes) -> float arrays
  decode_bound  PIL draft-mode decode + the two resizes (imaging/images.py), no colour math
  component_1w  CocoIngest's executor, Beam DirectRunner in-process (one worker)
  component_2w  the same, --direct_running_mode=multi_processing --direct_num_workers=2
Per-core rates divide by CPU seconds (this machine is shared, so wall time includes
other people's work); 1->2 worker scaling compares wall-clock rates. The component's
time is its Do() call (Python imports and TFX's sdist of itself for Beam args excluded).
"""
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO128 = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "coco128", "train2017")
IMAGES_ENV = "BENCH_INGEST_IMAGES"
DEFAULT_IMAGES = 2560
CASES = ("naive", "decode_bound", "component_1w", "component_2w")
GOAL_SPEEDUP_VS_NAIVE = 1.6
GOAL_SHARE_OF_DECODE_BOUND = 0.7
GOAL_KB_PER_EXAMPLE = 250.0


def _repeat_photos(folder: str, n: int) -> None:
  photos = sorted(glob.glob(os.path.join(COCO128, "*.jpg")))
  if not photos:
    raise FileNotFoundError(f"coco128 photos missing: {COCO128}")
  for i in range(n):
    source = photos[i % len(photos)]
    copy_number = i // len(photos)
    name = f"{copy_number:04d}{os.path.basename(source)}"  # digits: a COCO-style unique id
    os.symlink(source, os.path.join(folder, name))


def _naive():
  import numpy as np
  from PIL import Image
  from skimage import color

  def one(path):
    image = Image.open(path).convert("RGB")
    w, h = image.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    lab = color.rgb2lab(np.asarray(image.resize((224, 224), box=box)))
    gray = color.rgb2gray(np.asarray(image.resize((299, 299), box=box)))
    return lab[..., :1].astype(np.float32), lab[..., 1:].astype(np.float32), gray.astype(np.float32)
  return one


def _decode_bound():
  from imaging import images

  def one(path):
    with open(path, "rb") as f:
      return images.square_resizes(images.decode(f.read()))
  return one


def _component(folder: str, workdir: str, workers: int) -> Dict[str, Any]:
  from tfx.types import standard_artifacts

  from components.ingest import executor
  from pipelines import config
  ingest = config.IngestConfig()
  args = [] if workers == 1 else ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
  runner = executor.Executor(executor.Executor.Context(beam_pipeline_args=args, tmp_dir=workdir))
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(workdir, "examples")
  start = _clock()
  runner.Do({}, {executor.EXAMPLES_KEY: [examples]}, {
      "input_base": folder, "max_images": 0, "categories": "",
      "test_fraction": ingest.test_fraction, "eval_fraction": ingest.eval_fraction, "keep_grayscale": 0})
  elapsed = _since(start)
  counts = json.loads(examples.get_string_custom_property(executor.SPLIT_COUNTS_PROPERTY))
  files = glob.glob(os.path.join(examples.uri, "Split-*", "*"))
  n_examples = sum(counts.values())
  elapsed["kb_per_example"] = sum(os.path.getsize(f) for f in files) / 1000.0 / n_examples
  elapsed["examples"] = n_examples
  return elapsed


def _clock():
  self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return time.perf_counter(), self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def _since(start) -> Dict[str, Any]:
  wall, cpu = _clock()
  return {"wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def _case(name: str, folder: str, workdir: str) -> Dict[str, Any]:
  if name in ("naive", "decode_bound"):
    one = (_naive if name == "naive" else _decode_bound)()
    files = sorted(glob.glob(os.path.join(folder, "*")))
    start = _clock()
    for path in files:
      one(path)
    result = _since(start)
    result["images"] = len(files)
  else:
    result = _component(folder, workdir, workers=int(name[len("component_"):-1]))
    result["images"] = len(os.listdir(folder))
  result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  if name == "component_2w":
    result["worker_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
  return result


def _run_case(name: str, folder: str, workdir: str) -> Dict[str, Any]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
  proc = subprocess.run([sys.executable, "-m", "bench.ingest", name, folder, workdir], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"bench case {name} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run() -> Dict[str, Any]:
  n = int(os.environ.get(IMAGES_ENV, DEFAULT_IMAGES))
  with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
    folder = os.path.join(tmp, "photos")
    os.makedirs(folder)
    _repeat_photos(folder, n)
    results = {}
    for name in CASES:
      workdir = os.path.join(tmp, name)
      os.makedirs(workdir)
      print(f"bench.ingest: {name} on {n} photos ...", file=sys.stderr, flush=True)
      results[name] = _run_case(name, folder, workdir)

  rows = []
  for name, r in results.items():
    rows.append({
        "method": name, "images": r["images"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
        "img_per_s": r["images"] / r["wall_s"], "img_per_cpu_s": r["images"] / r["cpu_s"],
        "peak_rss_mb": r["peak_rss_mb"], "worker_peak_rss_mb": r.get("worker_peak_rss_mb", ""),
        "kb_per_example": r.get("kb_per_example", ""),
    })
  by = {row["method"]: row for row in rows}
  one = by["component_1w"]
  speedup = one["img_per_cpu_s"] / by["naive"]["img_per_cpu_s"]
  share = one["img_per_cpu_s"] / by["decode_bound"]["img_per_cpu_s"]
  kb = results["component_1w"]["kb_per_example"]
  goals = [
      {"goal": "component vs naive loop, per core", "target": f">= {GOAL_SPEEDUP_VS_NAIVE}x",
       "measured": f"{speedup:.2f}x", "met": speedup >= GOAL_SPEEDUP_VS_NAIVE},
      {"goal": "component vs decode-bound limit, per core", "target": f">= {GOAL_SHARE_OF_DECODE_BOUND:.0%}",
       "measured": f"{share:.0%}", "met": share >= GOAL_SHARE_OF_DECODE_BOUND},
      {"goal": "size on disk per example", "target": f"<= {GOAL_KB_PER_EXAMPLE:g} KB",
       "measured": f"{kb:.0f} KB", "met": kb <= GOAL_KB_PER_EXAMPLE},
  ]
  return {
      "images": n,
      "cpu_count": os.cpu_count(),
      "load_average_1min": os.getloadavg()[0],
      "throughput": rows,
      "goals": goals,
      "scaling_1_to_2_workers": by["component_2w"]["img_per_s"] / one["img_per_s"],
      "examples_written": results["component_1w"]["examples"],
  }


if __name__ == "__main__":
  from cli import quiet
  quiet.install()
  print(json.dumps(_case(*sys.argv[1:4])))
