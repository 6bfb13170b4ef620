"""`colorize photos`: batched vs one photo at a time, Beam vs one process, and peak memory.

Side by side in one run (the machine may be shared: only the ratios are meaningful), with
an exported model of random weights (the network's cost does not depend on them):
1. On 1-megapixel JPEGs made from the real photos: photos per CPU-second of today's batched
   path (serving/colorizer.py) vs the image signature one photo at a time (the path before
   it; what an endpoint still runs), in one process, the two alternated ROUNDS times; and
   the batched path's CPU by stage (decode/resize for the network, network, full-resolution
   decode, colour math, encode).
2. `colorize photos` (one process, batched) vs `colorize photos --runner DirectRunner` with
   2 worker processes, on BEAM_PHOTOS small photos: CPU seconds of the whole command
   (children included: start-up and model loads too), alternated.
3. Peak resident memory of `colorize photos` on MEMORY_SCANS large scans, one of them at
   the model's 100-megapixel limit, against the stated bound (serving/colorizer.py).

Usage: python -m bench.run bench.photos   (COLORIZE_BENCH_MODEL=DIR reuses an export)
"""
import io
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

from PIL import Image

SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"
ROUNDS = 2
ONE_MP = (1224, 816)
NETWORK_PHOTOS = 16
BATCH_SIZE = 8
BEAM_PHOTOS = int(os.environ.get("COLORIZE_BENCH_BEAM_PHOTOS", "500"))
BEAM_SIZE = (400, 300)
MEMORY_SCANS = 100
SCAN_SIZE = (2400, 1600)     # 3.84 megapixels: the largest photo, at the limit, sets the peak
LIMIT_SIZE = (12000, 8333)   # 99.996 megapixels, the largest photo the model takes

_STAGES = """
import io, json, resource, sys, time
import numpy as np
from PIL import Image
import tensorflow as tf
from serving import colorizer
model_dir, rounds, batch_size, *paths = sys.argv[1:]
photos = [open(p, "rb").read() for p in paths]
network = colorizer.Network(model_dir)
single = network._loaded.signatures["colorize_image"]
def cpu():
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime
def one_at_a_time():
  for data in photos:
    single(image_bytes=tf.constant(data))["colorized_jpeg"].numpy()
stages = dict.fromkeys(["decode and resize for the network", "network", "decode at full resolution",
                        "colour math (L + upsampled ab)", "encode JPEG"], 0.0)
def batched():
  for start in range(0, len(photos), int(batch_size)):
    chunk = photos[start:start + int(batch_size)]
    t = cpu(); inputs = [colorizer.network_inputs(d, network.max_pixels) for d in chunk]
    stages["decode and resize for the network"] += cpu() - t
    t = cpu(); abs_ = network.predict(inputs); stages["network"] += cpu() - t
    for data, ab in zip(chunk, abs_):
      t = cpu(); rgb8 = np.array(colorizer._upright_rgb(data, network.max_pixels))
      stages["decode at full resolution"] += cpu() - t
      t = cpu(); colorizer._with_ab(rgb8, ab); stages["colour math (L + upsampled ab)"] += cpu() - t
      t = cpu(); colorizer.encode(Image.fromarray(rgb8), "JPEG"); stages["encode JPEG"] += cpu() - t
one_at_a_time(); batched()  # traces and warms both
for key in stages: stages[key] = 0.0
totals = {"one at a time": 0.0, "batched": 0.0}
for _ in range(int(rounds)):
  for name, fn in (("one at a time", one_at_a_time), ("batched", batched)):
    t = cpu(); fn(); totals[name] += cpu() - t
print(json.dumps({"totals": totals, "stages": stages}))
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


def _command(args, env=None):
  """-> (CPU seconds of the command and its children, wall seconds, peak RSS of the largest process)."""
  before, start = _children_cpu(), time.perf_counter()
  with tempfile.TemporaryFile("w+") as out:
    process = subprocess.Popen([sys.executable, "-c", "from cli.main import main; main()", "photos", *map(str, args)],
                               env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    out.seek(0)
    text = out.read()
  if process.returncode != 0:
    raise RuntimeError(text[-3000:])
  return _children_cpu() - before, wall, rusage.ru_maxrss * 1024


def _batched_vs_one_at_a_time(model_dir: str, work: pathlib.Path) -> dict:
  folder = _make(work / "one_mp", NETWORK_PHOTOS, ONE_MP)
  result = subprocess.run([sys.executable, "-c", _STAGES, model_dir, str(ROUNDS), str(BATCH_SIZE),
                           *map(str, sorted(folder.iterdir()))], capture_output=True, text=True, check=False)
  if result.returncode != 0:
    raise RuntimeError(result.stderr[-3000:])
  measured = json.loads(result.stdout.strip().splitlines()[-1])
  photos = NETWORK_PHOTOS * ROUNDS
  rate = {name: photos / cpu for name, cpu in measured["totals"].items()}
  staged = sum(measured["stages"].values())
  return {
      "paths": [{"path": name, "photos": photos, "cpu_s": measured["totals"][name], "photos_per_cpu_s": rate[name]}
                for name in rate],
      "batched_over_one_at_a_time": rate["batched"] / rate["one at a time"],
      "stages of the batched path": [{"stage": k, "cpu_s": v, "share": v / staged}
                                     for k, v in measured["stages"].items()],
  }


def _beam_vs_one_process(model_dir: str, work: pathlib.Path) -> dict:
  folder = _make(work / "beam_in", BEAM_PHOTOS, BEAM_SIZE)
  env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
  cases = {"one process, batched": [],
           "Beam DirectRunner, 2 workers": ["--runner", "DirectRunner", "--beam-arg=--direct_num_workers=2",
                                            "--beam-arg=--direct_running_mode=multi_processing"]}
  rows = []
  for name, extra in cases.items():
    out = work / f"out_{len(rows)}"
    cpu, wall, _ = _command([folder, "-o", out, "--model", model_dir, "--batch-size", BATCH_SIZE, *extra], env)
    rows.append({"path": name, "photos": BEAM_PHOTOS, "cpu_s": cpu, "wall_s": wall,
                 "photos_per_cpu_s": BEAM_PHOTOS / cpu})
  return {"paths": rows, "beam_over_one_process": rows[1]["photos_per_cpu_s"] / rows[0]["photos_per_cpu_s"]}


def _memory(model_dir: str, work: pathlib.Path) -> dict:
  folder = work / "scans"
  folder.mkdir()
  sources = _sources()
  scan = _jpeg(sources[0], SCAN_SIZE)
  for i in range(MEMORY_SCANS - 1):
    (folder / f"scan_{i:03d}.jpg").write_bytes(scan if i % 2 else _jpeg(sources[i % len(sources)], SCAN_SIZE))
  (folder / "scan_at_the_limit.jpg").write_bytes(_jpeg(sources[1], LIMIT_SIZE, quality=80))
  env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
  rows = []
  for count in (1, MEMORY_SCANS):
    chosen = [folder / "scan_at_the_limit.jpg"] + sorted(folder.glob("scan_0*.jpg"))[:count - 1]
    cpu, wall, peak = _command([*chosen, "-o", work / f"scans_out_{count}", "--model", model_dir,
                                "--batch-size", BATCH_SIZE], env)
    rows.append({"scans": count, "largest_megapixels": LIMIT_SIZE[0] * LIMIT_SIZE[1] / 1e6, "cpu_s": cpu,
                 "peak_rss_gb": peak / 1e9})
  return {"rows": rows, "bound": "model + batch x 140 kB + threads x (largest photo allowed x ~8 bytes per pixel)"}


def _progress(part: dict) -> dict:
  print(json.dumps(part), file=sys.stderr, flush=True)  # each part as it is measured: the whole takes long
  return part


def run() -> dict:
  model_dir = os.environ.get("COLORIZE_BENCH_MODEL")
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
    network = _progress(_batched_vs_one_at_a_time(model_dir, work))
    beam = _progress(_beam_vs_one_process(model_dir, work))
    memory = _progress(_memory(model_dir, work))
  return {
      "1 MP photos, per CPU-second (one process, alternated)": network["paths"],
      "batched / one at a time": network["batched_over_one_at_a_time"],
      "batched path, CPU by stage": network["stages of the batched path"],
      f"{BEAM_PHOTOS} photos of {BEAM_SIZE[0]}x{BEAM_SIZE[1]}, whole command": beam["paths"],
      "Beam 2 workers / one process": beam["beam_over_one_process"],
      "peak memory, colorize photos": memory["rows"],
      "stated bound": memory["bound"],
  }
