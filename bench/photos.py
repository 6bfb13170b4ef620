"""`colorize photos`: batched vs one photo at a time, Beam vs one process, and peak memory.

Side by side in one run (the machine may be shared: only ratios mean anything, and the load
average is printed beside them), with an exported model of random weights (the network's
cost does not depend on them):
1. On 1-megapixel JPEGs made from the real photos, CPU seconds a photo in one process:
   - "before": the path of `colorize photos` before issue 21 (serving/photos.py at
     af8ca21^): each photo made upright by PIL (decoded whole to check it), then the
     SavedModel's image signature on its bytes (decode, resize, network at batch 1, colour
     math, JPEG encode, all in TensorFlow). Not the new path at batch 1.
   - "batched B": today's path (serving/colorizer.py: host-side decode and resize, the
     network on batches of B, host-side recombination and encode), B in BATCH_SIZES;
   alternated ROUNDS times, the median taken; and the batched path's CPU by stage.
   The same in one more process per lever of LEVERS (environment settings TensorFlow and
   oneDNN read at start-up), each against the first process's "before".
2. `colorize photos` (one process, batched) vs `colorize photos --runner DirectRunner` with
   2 worker processes, on BEAM_PHOTOS small photos: CPU seconds of the whole command
   (children included: start-up and model loads too), alternated BEAM_ROUNDS times (A B C A B C),
   the median ratio; C is Beam with a TensorFlow thread per core in each worker (the workers'
   share of the cores overridden), the cost of not splitting them.
3. Peak resident memory of `colorize photos` on MEMORY_SCANS large scans (one at the
   model's 100-megapixel limit), in one process and per Beam worker, against the stated bound
   (serving/colorizer.py).

Usage: python -m bench.run bench.photos   (COLORIZE_BENCH_MODEL=DIR reuses an export)
"""
import io
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"
ROOT = pathlib.Path(__file__).resolve().parent.parent
ROUNDS = 2
ONE_MP = (1224, 816)
NETWORK_PHOTOS = 32
BATCH_SIZES = (1, 4, 8, 16, 32)
LEVER_BATCH_SIZES = (8,)
LEVER_PHOTOS = 16
# Settings read when TensorFlow or oneDNN start, so one process each.
LEVERS = {
    "one TF thread per pool (TF_NUM_INTRAOP_THREADS=1, TF_NUM_INTEROP_THREADS=1)":
        {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"},
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0)": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "bfloat16 math in float32 ops (ONEDNN_DEFAULT_FPMATH_MODE=BF16)": {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"},
}
BEAM_PHOTOS = int(os.environ.get("COLORIZE_BENCH_BEAM_PHOTOS", "500"))
BEAM_ROUNDS = 2
BEAM_SIZE = (400, 300)
MEMORY_SCANS = 100
SCAN_SIZE = (6000, 4000)     # 24 megapixels: a large scan (99 of them, and one at the limit)
LIMIT_SIZE = (12000, 8333)   # 99.996 megapixels, the largest photo the model takes

_PATHS = """
import io, json, os, resource, sys
import numpy as np
from PIL import Image
import tensorflow as tf
from serving import colorizer
from serving import photos as photos_lib
model_dir, rounds, batch_sizes, ab_file, *paths = sys.argv[1:]
batch_sizes = [int(b) for b in batch_sizes.split(",")]
photos = [open(p, "rb").read() for p in paths]
network = colorizer.Network(model_dir)
single = network._loaded.signatures["colorize_image"]
def cpu():
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime
def before():
  # serving/photos.py's colorize_photo before issue 21 (af8ca21^): each photo made upright (PIL
  # decodes it whole to check it), then the image signature on its bytes, its JPEG kept.
  for data in photos:
    single(image_bytes=tf.constant(photos_lib.upright(data, network.max_pixels)))["colorized_jpeg"].numpy()
stages = dict.fromkeys(["decode and resize for the network", "network", "decode at full resolution",
                        "colour math (L + upsampled ab)", "encode JPEG"], 0.0)
def batched(batch_size, staged=False):
  abs_ = []
  for start in range(0, len(photos), batch_size):
    chunk = photos[start:start + batch_size]
    t = cpu(); inputs = [colorizer.network_inputs(d, network.max_pixels) for d in chunk]
    if staged: stages["decode and resize for the network"] += cpu() - t
    t = cpu(); ab = network.predict(inputs)
    if staged: stages["network"] += cpu() - t
    abs_ += ab
    for data, one in zip(chunk, ab):
      if not staged:
        colorizer.recombine(data, one, "JPEG", network.max_pixels)
        continue
      t = cpu(); rgb8 = np.array(colorizer._upright_rgb(data, network.max_pixels))
      stages["decode at full resolution"] += cpu() - t
      t = cpu(); colorizer._with_ab(rgb8, one); stages["colour math (L + upsampled ab)"] += cpu() - t
      t = cpu(); colorizer.encode(Image.fromarray(rgb8), "JPEG"); stages["encode JPEG"] += cpu() - t
  return abs_
arms = {"before": before, **{f"batched {b}": (lambda b=b: batched(b)) for b in batch_sizes}}
for fn in arms.values():
  fn()  # traces and warms every arm
np.save(ab_file, np.stack(batched(8)[:8]))
per_photo = {name: [] for name in arms}
for _ in range(int(rounds)):
  for name, fn in arms.items():
    t = cpu(); fn(); per_photo[name].append((cpu() - t) / len(photos))
batched(8, staged=True)
print(json.dumps({"per_photo": per_photo, "stages": stages}))
"""


def _jpeg(source: Image.Image, size, quality=90) -> bytes:
  out = io.BytesIO()
  source.resize(size, Image.BILINEAR).save(out, "JPEG", quality=quality)
  return out.getvalue()


def _sources():
  paths = sorted((SHARED / "historical").iterdir()) + sorted((SHARED / "coco128" / "train2017").glob("*.jpg"))
  return [Image.open(p).convert("RGB") for p in paths]


def _make(folder: pathlib.Path, count: int, size) -> pathlib.Path:
  folder.mkdir(parents=True)
  sources = _sources()
  for i in range(count):
    (folder / f"{i:05d}.jpg").write_bytes(_jpeg(sources[i % len(sources)], size))
  return folder


def _children_cpu() -> float:
  r = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime


def _env(**extra) -> dict:
  return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


# Runs the command and writes its peak RSS (wait4's: its largest process, descendants included) to
# argv[1]. In between because Linux counts the memory a process had before its exec into its
# maxrss: forked from this benchmark's process (TensorFlow and a model, ~2.4 GB), every command
# measured at least that. This wrapper is a fresh interpreter of ~10 MB.
_PEAK = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as f:
  f.write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _command(args, env):
  """-> (CPU seconds of the command and its children, wall seconds, peak RSS of its largest process)."""
  before, start = _children_cpu(), time.perf_counter()
  with tempfile.TemporaryFile("w+") as out, tempfile.NamedTemporaryFile("r") as peak:
    command = [sys.executable, "-c", "from cli.main import main; main()", "photos", *map(str, args)]
    process = subprocess.run([sys.executable, "-c", _PEAK, peak.name, *command], env=env, stdout=out,
                             stderr=subprocess.STDOUT, text=True, check=False)
    wall = time.perf_counter() - start
    out.seek(0)
    text = out.read()
    peak_bytes = int(peak.read() or 0)
  if process.returncode != 0:
    raise RuntimeError(text[-3000:])
  return _children_cpu() - before, wall, peak_bytes


def _paths(model_dir: str, photos, work: pathlib.Path, name: str, env: dict, batch_sizes) -> dict:
  ab_file = work / f"ab_{len(list(work.glob('ab_*')))}.npy"
  result = subprocess.run([sys.executable, "-c", _PATHS, model_dir, str(ROUNDS), ",".join(map(str, batch_sizes)),
                           str(ab_file), *map(str, photos)],
                          capture_output=True, text=True, check=False, env=env)
  if result.returncode != 0:
    raise RuntimeError(f"{name}: {result.stderr[-3000:]}")
  measured = json.loads(result.stdout.strip().splitlines()[-1])
  measured["ab"] = np.load(ab_file)
  measured["load"] = os.getloadavg()[0]
  return measured


def _batched_vs_before(model_dir: str, work: pathlib.Path) -> dict:
  folder = _make(work / "one_mp", NETWORK_PHOTOS, ONE_MP)
  photos = sorted(folder.iterdir())
  shipped = _paths(model_dir, photos, work, "shipped", _env(), BATCH_SIZES)
  before = statistics.median(shipped["per_photo"]["before"])
  rows = []
  levers = [(name, _paths(model_dir, photos[:LEVER_PHOTOS], work, name, _env(**env), LEVER_BATCH_SIZES))
            for name, env in LEVERS.items()]
  for lever, measured in [("as shipped", shipped)] + levers:
    for arm, cpus in measured["per_photo"].items():
      cpu = statistics.median(cpus)
      rows.append({"settings": lever, "path": arm, "cpu_s_per_photo": cpu, "photos_per_cpu_s": 1 / cpu,
                   "over_before_as_shipped": before / cpu, "load_avg": measured["load"],
                   "max_ab_change": float(np.abs(measured["ab"] - shipped["ab"]).max())})
  stages = shipped["stages"]
  staged = sum(stages.values())
  return {
      "rows": rows,
      "stages": [{"stage": k, "cpu_s_per_photo": v / NETWORK_PHOTOS, "share": v / staged} for k, v in stages.items()],
      "network_per_photo": stages["network"] / NETWORK_PHOTOS,
      "before_per_photo": before,
  }


def _beam_vs_one_process(model_dir: str, work: pathlib.Path) -> dict:
  folder = _make(work / "beam_in", BEAM_PHOTOS, BEAM_SIZE)
  beam = ["--runner", "DirectRunner", "--beam-arg=--direct_num_workers=2",
          "--beam-arg=--direct_running_mode=multi_processing"]
  # The last: each worker's TensorFlow with a thread per core, as before the workers split the cores.
  cores = str(os.cpu_count())
  cases = {"one process, batched": ([], {}),
           "Beam DirectRunner, 2 workers": (beam, {}),
           "Beam DirectRunner, 2 workers, a TF thread per core each": (
               beam, {"TF_NUM_INTRAOP_THREADS": cores, "TF_NUM_INTEROP_THREADS": cores})}
  rows, ratios, unsplit = [], [], []
  for round_ in range(BEAM_ROUNDS):
    rates = {}
    for name, (extra, env) in cases.items():
      out = work / f"beam_out_{len(rows)}"
      cpu, wall, _ = _command([folder, "-o", out, "--model", model_dir, *extra], _env(**env))
      rates[name] = BEAM_PHOTOS / cpu
      rows.append({"round": round_ + 1, "path": name, "photos": BEAM_PHOTOS, "cpu_s": cpu, "wall_s": wall,
                   "photos_per_cpu_s": rates[name], "load_avg": os.getloadavg()[0]})
    ratios.append(rates["Beam DirectRunner, 2 workers"] / rates["one process, batched"])
    unsplit.append(rates["Beam DirectRunner, 2 workers, a TF thread per core each"] / rates["one process, batched"])
  return {"rows": rows, "ratios": ratios, "median": statistics.median(ratios), "unsplit": unsplit}


def _memory(model_dir: str, work: pathlib.Path) -> dict:
  folder = work / "scans"
  folder.mkdir()
  sources = _sources()
  scans = [_jpeg(sources[i], SCAN_SIZE) for i in range(4)]  # a few distinct scans, copied: making one takes seconds
  for i in range(MEMORY_SCANS - 1):
    (folder / f"scan_{i:03d}.jpg").write_bytes(scans[i % len(scans)])
  (folder / "scan_at_the_limit.jpg").write_bytes(_jpeg(sources[1], LIMIT_SIZE, quality=80))
  largest = LIMIT_SIZE[0] * LIMIT_SIZE[1] / 1e6
  beam = ["--runner", "DirectRunner", "--beam-arg=--direct_num_workers=2",
          "--beam-arg=--direct_running_mode=multi_processing"]
  small = work / "small.jpg"
  small.write_bytes(_jpeg(sources[0], BEAM_SIZE))
  rows = []
  for path, chosen, megapixels, extra in (
      ("one process: the model alone (one small photo)", small, BEAM_SIZE[0] * BEAM_SIZE[1] / 1e6, []),
      ("one process", folder / "scan_at_the_limit.jpg", largest, []),
      ("one process", folder, largest, []),
      ("Beam DirectRunner, 2 workers (largest worker)", folder, largest, beam)):
    count = MEMORY_SCANS if chosen == folder else 1
    cpu, wall, peak = _command([chosen, "-o", work / f"scans_out_{len(rows)}", "--model", model_dir, *extra], _env())
    rows.append({"path": path, "photos": count, "largest_megapixels": megapixels, "cpu_s": cpu, "wall_s": wall,
                 "peak_rss_gb": peak / 1e9, "load_avg": os.getloadavg()[0]})
  return {"rows": rows, "bound": "the model alone (TensorFlow and the SavedModel, ~1.44 GB) + batch x ~17 MB "
                                 "(the network's working memory) + threads x (largest photo allowed x ~10 bytes "
                                 "per pixel: 1 GB at 100 megapixels) + allocator slack (~0.3 GB)"}


def _progress(part: dict) -> dict:
  print(json.dumps(part, default=str), file=sys.stderr, flush=True)  # each part as it is measured: the whole takes long
  return part


def run() -> dict:
  model_dir = os.environ.get("COLORIZE_BENCH_MODEL")
  parts = os.environ.get("COLORIZE_BENCH_PARTS", "network,beam,memory").split(",")
  result = {"cores": os.cpu_count(), "load average at start": os.getloadavg()[0]}
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    if not model_dir:
      from cli import quiet
      quiet.install()
      import keras

      from trainer import export
      from trainer import model as model_lib
      keras.utils.set_random_seed(0)
      model_dir = str(work / "model")
      export.export(model_lib.build_model("none"), model_dir)
    if "network" in parts:
      network = _progress(_batched_vs_before(model_dir, work))
      result["1 MP photos, CPU a photo (one process per settings, paths alternated, median)"] = network["rows"]
      result["batched 8 as shipped, CPU by stage"] = network["stages"]
      result["evidence: network alone at batch 8 / before, whole photo"] = (
          f"{network['network_per_photo']:.3f} / {network['before_per_photo']:.3f} CPU-s: at most "
          f"{network['before_per_photo'] / network['network_per_photo']:.2f}x even with all host work gone")
    if "beam" in parts:
      beam = _progress(_beam_vs_one_process(model_dir, work))
      result[f"{BEAM_PHOTOS} photos of {BEAM_SIZE[0]}x{BEAM_SIZE[1]}, whole command, alternated"] = beam["rows"]
      result["Beam 2 workers / one process, per round"] = [round(r, 3) for r in beam["ratios"]]
      result["Beam 2 workers / one process, median"] = beam["median"]
      result["the same, a TF thread per core in each worker, per round"] = [round(r, 3) for r in beam["unsplit"]]
    if "memory" in parts:
      memory = _progress(_memory(model_dir, work))
      result["peak memory, colorize photos (batch 8)"] = memory["rows"]
      result["stated bound"] = memory["bound"]
  return result
