"""ServingGate: the Python-function component that runs the probe and writes the InfraBlessing.

The candidate is loaded in a separate, clean Python (probe.py): a model that needs project
code, a missing or failing signature, a wrong answer, or a load, a request or a memory peak
over the config's budget (pipelines/config.py ServingGateConfig) each fail the gate. The
InfraBlessing says why in schemas/gates.py's properties, and the Pusher pushes nothing.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List

import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import path_utils

from components import serving_gate
from components.serving_gate import probe
from components.serving_gate import requests as requests_lib
from schemas import gates
from schemas import signatures

# Importing TensorFlow in the clean process, beyond the load and request budgets.
STARTUP_SECONDS = 90.0
_MAX_PIXELS_VARIABLE = f"{signatures.MAX_PIXELS}/.ATTRIBUTES/VARIABLE_VALUE"


@tfx.dsl.components.component
def ServingGate(  # noqa: N802 (a TFX component: named as a class)
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    max_load_seconds: tfx.dsl.components.Parameter[float],
    max_request_seconds: tfx.dsl.components.Parameter[float],
    max_memory_mb: tfx.dsl.components.Parameter[int],
) -> None:
  """Blesses the model for serving when a clean TensorFlow process serves every request within budget
  (the budgets: pipelines/config.py ServingGateConfig, passed by the pipeline).
  """
  model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
  report = check(model_dir, max_load_seconds, max_request_seconds, max_memory_mb)
  tf.io.gfile.makedirs(blessing.uri)
  report_path = os.path.join(blessing.uri, serving_gate.REPORT_FILE)
  with tf.io.gfile.GFile(report_path, "w") as f:
    json.dump(report, f, indent=2)
  blessing.set_int_custom_property("blessed", int(report["passed"]))  # what TFX's Pusher reads
  blessing.set_int_custom_property(gates.PASSED, int(report["passed"]))
  blessing.set_string_custom_property(gates.VERDICT, report["verdict"])
  blessing.set_string_custom_property(gates.REPORT, report_path)


def check(model_dir: str, max_load_seconds: float, max_request_seconds: float, max_memory_mb: int) -> dict:
  """Serves the SavedModel at model_dir in a clean process; returns the report (passed, verdict, details)."""
  max_pixels = _max_pixels(model_dir)
  asked = requests_lib.requests(max_pixels)
  with tempfile.TemporaryDirectory(prefix="serving-gate-") as work:
    plan = {"model_dir": model_dir, "project_root": _project_root(), "requests": []}
    for i, request in enumerate(asked):
      files = {}
      for key, value in request.inputs.items():
        files[key] = os.path.join(work, f"request-{i}-{key}.pb")
        with open(files[key], "wb") as f:
          f.write(tf.make_tensor_proto(value).SerializeToString())
      plan["requests"].append({"name": request.name, "signature": request.signature, "inputs": files})
    with open(os.path.join(work, "plan.json"), "w", encoding="utf-8") as f:
      json.dump(plan, f)
    shutil.copy(probe.__file__, os.path.join(work, "probe.py"))
    timeout = STARTUP_SECONDS + max_load_seconds + max_request_seconds * len(asked)
    events, ended = _run_probe(work, timeout)
  return judge(asked, events, ended, max_load_seconds, max_request_seconds, max_memory_mb)


def judge(asked, events: List[dict], ended: str, max_load_seconds: float, max_request_seconds: float,
          max_memory_mb: int) -> dict:
  """The probe's events -> the report: passed only when nothing at all went wrong."""
  loaded = next((e for e in events if "loaded" in e), None)
  done = next((e for e in events if e.get("done")), None)
  answers = {e["request"]: e for e in events if "request" in e}
  problems = []
  if loaded is None:
    problems.append(f"the model did not load in a clean TensorFlow process ({ended})")
  else:
    if loaded["loaded"] > max_load_seconds:
      problems.append(f"loading took {loaded['loaded']:.1f} s, over the budget of {max_load_seconds:g} s")
    missing = requests_lib.missing_signatures(loaded["signatures"])
    problems += [missing] if missing else []
    for request in asked:
      if request.name in answers:
        problems += requests_lib.problems(request, answers[request.name], max_request_seconds)
      elif done is None:
        problems.append(f"{request.name}: no answer ({ended})")
        break
  peak = done["peak_rss_mb"] if done else None
  if peak is not None and peak > max_memory_mb:
    problems.append(f"the serving process peaked at {peak:.0f} MB, over the budget of {max_memory_mb} MB")
  if done and done["project_modules"]:
    problems.append(f"loading or serving the model imported project code: {done['project_modules'][:5]}")
  if done and ended != "ended normally":
    problems.append(f"the serving process {ended}")
  seconds = [a["seconds"] for a in answers.values() if "seconds" in a]
  measured = (f"load {loaded['loaded']:.1f} s, slowest request {max(seconds, default=0):.1f} s "
              f"(budget {max_request_seconds:g}), peak memory {peak or 0:.0f} MB (budget {max_memory_mb})"
              if loaded else "")
  if problems:
    verdict = f"stopped: {problems[0]}" + (f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else "")
  else:
    verdict = (f"passed: a clean TensorFlow process answered {len(asked)} requests on "
               f"{len({r.signature for r in asked})} signatures with real photos; {measured}")
  return {"passed": not problems, "verdict": verdict, "problems": problems, "measured": measured,
          "load_seconds": loaded and loaded["loaded"], "peak_memory_mb": peak,
          "requests": [{"name": r.name, "signature": r.signature, **{k: v for k, v in answers.get(r.name, {}).items()
                                                                     if k in ("seconds", "error")}}
                       for r in asked],
          "budget": {"max_load_seconds": max_load_seconds, "max_request_seconds": max_request_seconds,
                     "max_memory_mb": max_memory_mb}}


def _run_probe(work: str, timeout: float):
  """(events printed, how the process ended) of probe.py run cleanly in `work`."""
  env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": work, "LANG": "C.UTF-8", "TF_CPP_MIN_LOG_LEVEL": "2"}
  env.update({k: v for k, v in os.environ.items() if k in ("LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")})
  command = [sys.executable, "-I", os.path.join(work, "probe.py"), os.path.join(work, "plan.json")]
  with subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True) as process:
    try:
      out, err = process.communicate(timeout=timeout)
      ended = ("ended normally" if process.returncode == 0 else
               f"ended with exit code {process.returncode}: {_last_line(err)}" if process.returncode > 0 else
               f"was killed by signal {-process.returncode} (out of memory?)")
    except subprocess.TimeoutExpired:
      process.kill()
      out, err = process.communicate()
      ended = f"did not finish within {timeout:g} s (the budgets' sum) and was stopped"
  events = []
  for line in out.splitlines():
    try:
      events.append(json.loads(line))
    except ValueError:
      continue  # TensorFlow may print to stdout too
  return [e for e in events if isinstance(e, dict)], ended


def _last_line(text: str) -> str:
  lines = [l for l in text.strip().splitlines() if l.strip()]
  return lines[-1][:300] if lines else "no message"


def _max_pixels(model_dir: str) -> int:
  """The model's size limit, read from its checkpoint (the export's default if it has none)."""
  try:
    return int(tf.train.load_variable(os.path.join(model_dir, "variables", "variables"), _MAX_PIXELS_VARIABLE))
  except (tf.errors.OpError, ValueError):
    return int(signatures.MAX_MEGAPIXELS * 1e6)


def _project_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(serving_gate.__file__)))
