"""How long the command line takes to answer: `--help`, `lineage --help`, a config error, a snapshot error, `compile`.

Each case is the wall time of a fresh `colorize` process (start-up, imports, the answer),
run several times; the table gives the median and the range. COLORIZE_BENCH_CLI names
another `colorize` executable to time (e.g. an older checkout's, for a before/after pair
measured side by side).

Usage: python -m bench.run bench.startup
"""
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "5"))
COMPILE_RUNS = int(os.environ.get("BENCH_STARTUP_COMPILE_RUNS", "3"))


def _cases(out: str):
  vertex = str(REPO / "configs" / "vertex.yaml")
  return [
      ("colorize --help", ["--help"], 0, RUNS),
      ("colorize lineage --help", ["lineage", "--help"], 0, RUNS),
      ("config error (run --epochs 0)", ["run", "--epochs", "0"], 2, RUNS),
      ("snapshot error (run --snapshot 'x{SPAN}{SPAN}')", ["run", "--snapshot", "x{SPAN}{SPAN}"], 2, RUNS),
      ("compile (configs/vertex.yaml)", ["compile", "--config", vertex, "--output", os.path.join(out, "p.json")],
       0, COMPILE_RUNS),
  ]


def run() -> dict:
  cli = os.environ.get("COLORIZE_BENCH_CLI") or str(pathlib.Path(sys.executable).parent / "colorize")
  rows = []
  with tempfile.TemporaryDirectory() as out:
    for name, args, expected, runs in _cases(out):
      if not runs:  # BENCH_STARTUP_COMPILE_RUNS=0 leaves compile out
        continue
      times = []
      for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([cli, *args], cwd=out, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != expected:
          raise RuntimeError(f"{cli} {' '.join(args)} exited {done.returncode}: {done.stderr[-500:]}")
      rows.append({"case": name, "runs": runs, "median_s": statistics.median(times), "min_s": min(times),
                   "max_s": max(times)})
  return {"cli": cli, "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "start_up": rows}
