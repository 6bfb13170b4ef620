"""Runs the benchmarks, prints their tables and writes bench_results/<name>.json.

Usage: python -m bench.run [module ...]   (default: every module in BENCHMARKS)

A benchmark is a module with `run() -> dict` (JSON-serialisable). In the printout, every
value that is a list of dicts is a table (one row per dict, the key is its title);
other values print as `key: value` lines. The JSON file holds the dict unchanged.
"""
import importlib
import json
import os
import sys
from typing import Any, Dict, List

BENCHMARKS = ("bench.startup", "bench.ingest", "bench.train", "bench.serving_memory", "bench.photos")
RESULTS_DIR = "bench_results"


def format_table(title: str, rows: List[Dict[str, Any]]) -> str:
  columns: List[str] = []
  for row in rows:
    columns += [c for c in row if c not in columns]
  cells = [[_cell(row.get(c, "")) for c in columns] for row in rows]
  widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
  lines = [f"== {title}", "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
           "  ".join("-" * w for w in widths)]
  lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
  return "\n".join(lines)


def _cell(value: Any) -> str:
  if isinstance(value, bool):
    return "yes" if value else "NO"
  if isinstance(value, float):
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
  return str(value)


def report(name: str, result: Dict[str, Any]) -> str:
  parts = [f"#### {name}"]
  for key, value in result.items():
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
      parts.append(format_table(key, value))
    else:
      parts.append(f"{key}: {value}")
  return "\n".join(parts)


def main(argv: List[str]) -> int:
  os.makedirs(RESULTS_DIR, exist_ok=True)
  for module_name in argv or BENCHMARKS:
    result = importlib.import_module(module_name).run()
    name = module_name.rsplit(".", 1)[-1]
    print(report(name, result), flush=True)
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    with open(path, "w") as f:
      json.dump(result, f, indent=1)
    print(f"(written to {path})\n", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
