"""Ingestion throughput (issues 2 and 10): CocoIngest vs a naive loop and the decode-bound limit, 1 and 2 workers.

All on the same photos: coco128's 128 real COCO JPEGs repeated to BENCH_INGEST_IMAGES
(default 2560) files under COCO-style numeric names. Each method runs in its own
process, so peak RSS is its own:
  naive         PIL open -> centred square resized to 224 and 299 -> skimage rgb2lab
                (224) and rgb2gray (299, the luminance the gray feature encodes) -> float arrays
  decode_bound  PIL draft-mode decode + the two resizes (imaging/images.py), no colour math
  component_1w  CocoIngest's executor, Beam DirectRunner in-process (one worker)
  component_2w  the same, --direct_running_mode=multi_processing --direct_num_workers=2
  stages        the component's per-photo work, stage by stage, timed in one loop on
                STAGE_IMAGES of the photos (CPU ms per photo); the rows "runner" and
                "2 worker processes" are what the component costs beyond them
Peak RSS: of the benchmark process (for component_1w that is the one worker), and the
largest among the SDK worker processes of component_2w (workers_seen of them).
Per-core rates divide by CPU seconds (this machine is shared, so wall time includes
other people's work); 1->2 worker scaling compares wall-clock rates (and CPU-second
rates beside them). The component's time is its Do() call (Python imports and TFX's
sdist of itself for Beam args excluded; the worker processes' start is included).
"""
import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO128 = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "coco128", "train2017")
IMAGES_ENV = "BENCH_INGEST_IMAGES"
DEFAULT_IMAGES = 2560
CASES = ("naive", "decode_bound", "component_1w", "component_2w", "stages")
STAGE_IMAGES = 512
GOAL_SPEEDUP_VS_NAIVE = 2.0
GOAL_SHARE_OF_DECODE_BOUND = 0.7
GOAL_KB_PER_EXAMPLE = 250.0
GOAL_SCALING_2_WORKERS = 1.7


def _repeat_photos(folder: str, n: int) -> None:
  photos = sorted(glob.glob(os.path.join(COCO128, "*.jpg")))
  if not photos:
    raise FileNotFoundError(f"coco128 photos missing: {COCO128}")
  for i in range(n):
    source = photos[i % len(photos)]
    copy_number = i // len(photos)
    name = f"{copy_number:04d}{os.path.basename(source)}"  # digits: a COCO-style unique id
    # Copies: the ingestion follows no link out of its data root and reads a file linked twice once.
    shutil.copyfile(source, os.path.join(folder, name))


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


def _stages(folder: str, workdir: str) -> Dict[str, Any]:
  """CPU seconds of each stage of make_examples.MakeAndWrite over the first STAGE_IMAGES photos."""
  from components.ingest import make_examples
  from components.ingest import sources
  from components.ingest import tfrecord_gzip
  from imaging import color
  from imaging import images
  from schemas import features
  spent = dict.fromkeys(("list", "read", "decode", "resize", "colour math", "encode", "serialize", "write"), 0.0)

  def timed(stage, start):
    now = time.process_time()
    spent[stage] += now - start
    return now

  start = time.process_time()
  listing = sources.list_photos(folder)
  start = timed("list", start)
  photos = listing.photos[:STAGE_IMAGES]
  writer = tfrecord_gzip.GzipWriter(os.path.join(workdir, "stages.gz"))
  for photo in photos:
    start = time.process_time()
    with open(photo.path, "rb") as f:
      data = f.read()
    start = timed("read", start)
    image = images.decode(data)
    start = timed("decode", start)
    small, large = images.square_resizes(image)
    start = timed("resize", start)
    l_star, ab = color.rgb_to_l_ab(small)
    gray = color.rgb_to_gray(large)
    images.coloured_share(ab)
    stats = {features.MEAN_L_KEY: float(l_star.mean()), features.MEAN_A_KEY: float(ab[..., 0].mean()),
             features.MEAN_B_KEY: float(ab[..., 1].mean()), features.COLORFULNESS_KEY: float(color.colorfulness(small))}
    start = timed("colour math", start)
    encoded = {features.SOURCE_KEY: photo.source.encode(), features.L_KEY: features.encode_l(l_star),
               features.AB_KEY: features.encode_ab(ab), features.GRAY_KEY: features.encode_gray(gray)}
    start = timed("encode", start)
    example = make_examples.example_bytes({features.IMAGE_ID_KEY: photo.image_id, features.LICENSE_KEY: 0}, encoded,
                                          stats)
    start = timed("serialize", start)
    writer.write_record(example)
    timed("write", start)
  start = time.process_time()
  writer.close()
  timed("write", start)
  per_photo = {stage: seconds / len(photos) for stage, seconds in spent.items()}
  per_photo["list"] = spent["list"] / len(listing.photos)
  return {"ms_per_image": {stage: 1000 * s for stage, s in per_photo.items()}, "images": len(photos)}


def _component(folder: str, workdir: str, workers: int) -> Dict[str, Any]:
  from tfx.types import standard_artifacts

  from components.ingest import executor
  from pipelines import config
  ingest = config.IngestConfig()
  args = [] if workers == 1 else ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]
  runner = executor.Executor(executor.Executor.Context(beam_pipeline_args=args, tmp_dir=workdir))
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(workdir, "examples")
  watcher = _WorkerMemory()
  start = _clock()
  runner.Do({}, {executor.EXAMPLES_KEY: [examples]}, {
      "input_base": folder, "max_images": 0, "categories": "",
      "test_fraction": ingest.test_fraction, "eval_fraction": ingest.eval_fraction, "keep_grayscale": 0})
  elapsed = _since(start)
  peaks = watcher.stop()
  if peaks:
    elapsed["worker_peak_rss_mb"] = max(peaks.values())
    elapsed["workers_seen"] = len(peaks)
  counts = json.loads(examples.get_string_custom_property(executor.SPLIT_COUNTS_PROPERTY))
  files = glob.glob(os.path.join(examples.uri, "Split-*", "*"))
  n_examples = sum(counts.values())
  elapsed["kb_per_example"] = sum(os.path.getsize(f) for f in files) / 1000.0 / n_examples
  elapsed["examples"] = n_examples
  return elapsed


class _WorkerMemory:
  """Peak RSS (VmHWM) of each Beam SDK worker process below this one, polled while Do() runs."""
  POLL_S = 0.2

  def __init__(self):
    self._peaks: Dict[str, float] = {}
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._poll, daemon=True)
    self._thread.start()

  def _poll(self):
    me = os.getpid()
    while not self._done.wait(self.POLL_S):
      for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
          with open(f"/proc/{pid}/cmdline", "rb") as f:
            if not f.read().startswith(sys.executable.encode()) or me not in _ancestors(int(pid)):
              continue
          with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"sdk_worker_main" not in f.read():
              continue
          with open(f"/proc/{pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        except (OSError, StopIteration):
          continue  # exited meanwhile
        self._peaks[pid] = max(self._peaks.get(pid, 0.0), kb / 1024.0)

  def stop(self) -> Dict[str, float]:
    self._done.set()
    self._thread.join()
    return self._peaks


def _ancestors(pid: int) -> list:
  found = []
  while pid > 1:
    with open(f"/proc/{pid}/stat") as f:
      pid = int(f.read().rsplit(")", 1)[1].split()[1])
    found.append(pid)
  return found


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
  elif name == "stages":
    result = _stages(folder, workdir)
  else:
    result = _component(folder, workdir, workers=int(name[len("component_"):-1]))
    result["images"] = len(os.listdir(folder))
  result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
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
    if name == "stages":
      continue
    rows.append({
        "method": name, "images": r["images"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
        "img_per_s": r["images"] / r["wall_s"], "img_per_cpu_s": r["images"] / r["cpu_s"],
        "peak_rss_mb": r["peak_rss_mb"], "worker_peak_rss_mb": r.get("worker_peak_rss_mb", ""),
        "workers_seen": r.get("workers_seen", ""),
        "kb_per_example": r.get("kb_per_example", ""),
    })
  by = {row["method"]: row for row in rows}
  one, two = by["component_1w"], by["component_2w"]
  speedup = one["img_per_cpu_s"] / by["naive"]["img_per_cpu_s"]
  share = one["img_per_cpu_s"] / by["decode_bound"]["img_per_cpu_s"]
  scaling = two["img_per_s"] / one["img_per_s"]
  kb = results["component_1w"]["kb_per_example"]
  goals = [
      {"goal": "2 workers vs 1, wall-clock rate", "target": f">= {GOAL_SCALING_2_WORKERS}x",
       "measured": f"{scaling:.2f}x", "met": scaling >= GOAL_SCALING_2_WORKERS},
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
      "stages_cpu_ms_per_image": _stage_rows(results["stages"]["ms_per_image"], one, two,
                                             by["decode_bound"]),
      "scaling_1_to_2_workers": scaling,
      "scaling_1_to_2_workers_per_cpu_s": two["img_per_cpu_s"] / one["img_per_cpu_s"],
      "examples_written": results["component_1w"]["examples"],
  }


def _stage_rows(stage_ms: Dict[str, float], one: Dict[str, Any], two: Dict[str, Any],
                decode_bound: Dict[str, Any]) -> list:
  """The stage loop's CPU per photo, then what the component spends beyond it (runner, workers)."""
  rows = [{"stage": stage, "ms": ms} for stage, ms in stage_ms.items()]
  loop = sum(stage_ms.values())
  one_ms, two_ms = 1000 / one["img_per_cpu_s"], 1000 / two["img_per_cpu_s"]
  rows += [
      {"stage": "= stage loop", "ms": loop},
      {"stage": "runner (Beam, data plane, commit; 1 worker)", "ms": one_ms - loop},
      {"stage": "= component, 1 worker", "ms": one_ms},
      {"stage": "2 worker processes (start, imports, gRPC)", "ms": two_ms - one_ms},
      {"stage": "= component, 2 workers", "ms": two_ms},
      {"stage": "(decode-bound loop: read, decode, resize)", "ms": 1000 / decode_bound["img_per_cpu_s"]},
  ]
  total = one_ms
  for row in rows:
    row["share_of_1_worker"] = row["ms"] / total
  return rows


if __name__ == "__main__":
  from cli import quiet
  quiet.install()
  print(json.dumps(_case(*sys.argv[1:4])))
