"""The serving gate's client and server in one clean process: load a SavedModel, answer requests.

Copied into an empty temporary folder and run there as `python -I probe.py PLAN` by
components/serving_gate/component.py, with a bare environment. It imports the standard
library and TensorFlow only, never this project: the project folder is dropped from sys.path,
the editable install's import hook from sys.meta_path, and any module loaded from the project
all the same is reported. So it loads the model as TF Serving or Vertex AI would.

PLAN (JSON): {"model_dir", "project_root", "requests": [{"name", "signature", "inputs": {key:
file of a serialized TensorProto}}]}. Each line printed on stdout is one JSON event:
{"loaded": seconds, "signatures": [...], "rss_mb": ...}, then one {"request": name, "seconds",
"outputs": {key: {"dtype", "shape", "min", "max", "finite", "images": [[h, w, c], ...]}} or
"error": message} a request, then {"done": true, "peak_rss_mb", "project_modules": [...]}.
"""
import json
import os
import resource
import sys
import time


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _emit(event: dict) -> None:
  print(json.dumps(event), flush=True)


def _describe(tf, value) -> dict:
  out = {"dtype": value.dtype.name, "shape": [int(d) for d in value.shape]}
  if value.dtype == tf.string:
    # Encoded images: their size, read from the header as a client would decode them.
    flat = tf.reshape(value, [-1])
    out["images"] = [[int(d) for d in tf.io.extract_jpeg_shape(b)] if tf.io.is_jpeg(b) else None for b in flat]
  elif value.dtype.is_floating or value.dtype.is_integer:
    v = tf.cast(value, tf.float64)
    out["finite"] = bool(tf.reduce_all(tf.math.is_finite(v)))
    out["min"], out["max"] = (float(tf.reduce_min(v)), float(tf.reduce_max(v))) if tf.size(v) else (0.0, 0.0)
  return out


def main(plan_path: str) -> None:
  with open(plan_path, encoding="utf-8") as f:
    plan = json.load(f)
  project = os.path.realpath(plan["project_root"])
  sys.path[:] = [p for p in sys.path if p and os.path.realpath(p) != project]
  sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
  # Imported only now, with the project out of reach.
  import tensorflow as tf
  from tensorflow.core.framework import tensor_pb2

  start = time.monotonic()
  model = tf.saved_model.load(plan["model_dir"])
  _emit({"loaded": time.monotonic() - start, "signatures": sorted(model.signatures), "rss_mb": _rss_mb()})
  for request in plan["requests"]:
    event = {"request": request["name"]}
    try:
      inputs = {}
      for key, path in request["inputs"].items():
        with open(path, "rb") as f:
          inputs[key] = tf.constant(tf.make_ndarray(tensor_pb2.TensorProto.FromString(f.read())))
      start = time.monotonic()
      answer = model.signatures[request["signature"]](**inputs)
      event["seconds"] = time.monotonic() - start
      event["outputs"] = {k: _describe(tf, v) for k, v in answer.items()}
    except Exception as e:  # any failure to answer is the verdict, reported as one line
      event["error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:500]}"
    _emit(event)
  loaded_from_project = sorted(
      name for name, module in list(sys.modules.items())
      if os.path.realpath(getattr(module, "__file__", None) or "/").startswith(project + os.sep))
  _emit({"done": True, "peak_rss_mb": _rss_mb(), "project_modules": loaded_from_project})


if __name__ == "__main__":
  main(sys.argv[1])
