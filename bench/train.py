"""Training and serving speed (issue 3 section 7), on the real coco128 examples and historical photos.

Cases, each in its own process (so its peak RSS is its own and the CPU split is fresh):
  input_read      gzip TFRecords of the train split, read only
  input_parse     + parsing to model-scale tensors (schemas.features.parse_examples), batch 32
  input_augment   the Trainer's input pipeline with augmentation on: parsing to the stored
                  uint8 images and drawing each example's flip/zoom/shear map (what the host feeds)
  input_augment_precomputed
                  the same on the Embed component's Examples (train.global_features:
                  precomputed: l, ab and the embedding parsed, gray not parsed)
  warp, warp_precomputed
                  the warp of those batches (trainer/data.augment), which runs inside the
                  training step (on the GPU when there is one): CPU time per example here
                  (on batches already read, batch 32); live warps gray too
  train_b{8,32}_r{1,2}
                  full training steps of the fusion model (Inception-ResNet-v2 random
                  weights), per-replica batch 8 or 32, 1 replica or MirroredStrategy over
                  the CPU split in 2; the median of 3 steps after the first (tracing) one
  train_b8_w2     the same steps with 2 worker processes on this machine (MultiWorkerMirroredStrategy,
                  gRPC over 127.0.0.1, per-worker batch 8), beside train_b8_r1 (1 process, batch 8):
                  img/s side by side, and the communication: one all-reduce of the trainable
                  weights' size (what each step exchanges), timed alone in the same workers
  train_b{8,32}_r1_precomputed
                  the colorizer head alone on precomputed embeddings, same batches: the
                  live/precomputed ratio is the training speed-up. These and train_b{8,32}_r1
                  run RATIO_REPEATS more times, alternating, their steps pooled
  embed           Inception-ResNet-v2 inference as the Embed component runs it (batch 32,
                  steady state): images per CPU second; with the ingestion's and the Embed
                  executor's CPU time per photo (in `prepare`), what embedding adds to
                  ingestion and after how many epochs precomputing has paid for itself
  colorize_1mp    `colorize_image` of the exported SavedModel on a real historical photo
                  resized to 1 megapixel (JPEG bytes in, JPEG + RGB out), loaded in a plain
                  TF process; median of repeated calls; also the bare network (`predict_ab`)
  colorize_historical
                  the same signature on each of the 13 historical photos at their own size
Input rates are per CPU second (this machine is shared: wall time includes other people's
work); training and colorizing are wall-clock on this 2-core machine (median of repeats),
with the CPU time per call beside it: wall time above cpu_ms / 2 means the cores were busy
with something else. `load_average_1min` says how busy.
"""
import glob
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data")
COCO128 = os.path.join(SHARED, "coco128")
HISTORICAL = os.path.join(SHARED, "historical")
ONE_MP_PHOTO = "Detroit_circa_1915.jpg"
ONE_MP = 1_000_000
INPUT_SECONDS = 8.0
COLORIZE_CALLS = 10
# Timed steps a case (the median counts); more for a steadier number: BENCH_TRAIN_STEPS=8 make bench
TRAIN_STEPS = int(os.environ.get("BENCH_TRAIN_STEPS", "3"))
TRAIN_CASES = {f"train_b{b}_r{r}": (b, r, False) for b in (8, 32) for r in (1, 2)}
TRAIN_CASES.update({f"train_b{b}_r1_precomputed": (b, 1, True) for b in (8, 32)})
# The live/precomputed pairs run this many times more, alternating, and their steps are pooled:
# two processes of the same case here differ by up to ~15%, as much as the goal's margin.
RATIO_REPEATS = 2
MULTI_WORKER_CASES = {"train_b8_w2": (8, 2)}  # per-worker batch, worker processes
EMBED_BATCH = 32
EMBED_CALLS = 3
CASES = ("input_read", "input_parse", "input_augment", "input_augment_precomputed", "warp", "warp_precomputed",
         *TRAIN_CASES, *MULTI_WORKER_CASES, "embed", "colorize_1mp", "colorize_historical")
GOAL_PRECOMPUTED_SPEEDUP = 1.5
GOAL_INPUT_PER_CORE = 1000.0
GOAL_COLORIZE_MS = 300.0


def _clock():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return time.perf_counter(), usage.ru_utime + usage.ru_stime


def _prepare(workdir: str) -> Dict[str, Any]:
  """The coco128 Examples artifact (the real ingestion executor), its embedded copy (the
  real Embed executor), an exported model; the CPU time of ingesting and of embedding.
  """
  from tfx.types import standard_artifacts

  from components.embed import executor as embed_executor
  from components.ingest import executor
  from pipelines import config
  from trainer import export
  from trainer import model as model_lib
  ingest = config.IngestConfig()
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(workdir, "examples")
  start = _clock()
  executor.Executor().Do({}, {executor.EXAMPLES_KEY: [examples]}, {
      "input_base": COCO128, "max_images": 0, "categories": "",
      "test_fraction": ingest.test_fraction, "eval_fraction": ingest.eval_fraction, "keep_grayscale": 0})
  ingested = _clock()
  embedded = standard_artifacts.Examples()
  embedded.uri = os.path.join(workdir, "embedded")
  embed_executor.Executor().Do({embed_executor.EXAMPLES_KEY: [examples]},
                               {embed_executor.EMBEDDED_EXAMPLES_KEY: [embedded]},
                               {embed_executor.WEIGHTS_PARAMETER: "none",
                                embed_executor.BATCH_SIZE_PARAMETER: embed_executor.DEFAULT_BATCH_SIZE,
                                embed_executor.EMBEDDER_FN_PARAMETER: embed_executor.DEFAULT_EMBEDDER_FN})
  done = _clock()
  export.export(model_lib.build_model("none"), os.path.join(workdir, "model"))
  photos = sum(json.loads(examples.get_string_custom_property("split_counts")).values())
  return {"photos": photos, "ingest_cpu_s": ingested[1] - start[1], "ingest_wall_s": ingested[0] - start[0],
          "embed_cpu_s": done[1] - ingested[1], "embed_wall_s": done[0] - ingested[0]}


def _embed() -> Dict[str, Any]:
  """Steady-state Inception-ResNet-v2 inference, as the Embed executor's model handler runs it."""
  import numpy as np

  from components.embed import executor
  handler = executor.EmbedderHandler(executor.DEFAULT_EMBEDDER_FN, "none", tempfile.mkdtemp(prefix="bench_fp_"),
                                     EMBED_BATCH)
  model = handler.load_model()
  batch = [np.zeros((299, 299, 1), np.uint8)] * EMBED_BATCH
  _, cpu_ms = _timed(lambda: handler.run_inference(batch, model), EMBED_CALLS)
  return {"img_per_cpu_s": EMBED_BATCH / (cpu_ms / 1000.0)}


def _input(workdir: str, stage: str) -> Dict[str, Any]:
  import tensorflow as tf

  from schemas import features
  from trainer import data
  patterns = [os.path.join(workdir, "examples", "Split-train", "*")]
  batch = 32
  if stage in ("input_augment", "warp"):
    ds = data.make_dataset(patterns, batch, training=True, augment=True, seed=0)
  elif stage in ("input_augment_precomputed", "warp_precomputed"):
    ds = data.make_dataset([os.path.join(workdir, "embedded", "Split-train", "*")], batch, training=True,
                           augment=True, seed=0, precomputed=True)
  else:
    records = features.records(patterns).repeat().batch(batch)
    if stage == "input_parse":
      records = records.map(features.parse_examples, num_parallel_calls=tf.data.AUTOTUNE)
    ds = records.prefetch(tf.data.AUTOTUNE)
  iterator = iter(ds)
  if stage.startswith("warp"):
    batches = [next(iterator) for _ in range(4)]
    del iterator  # its prefetching threads would count in the CPU time

    def step(i):
      data.augment(*batches[i % len(batches)])[1].numpy()
  else:
    def step(i):
      next(iterator)
  for i in range(3):
    step(i)
  start, n = _clock(), 0
  while time.perf_counter() - start[0] < INPUT_SECONDS:
    step(n // batch)
    n += batch
  wall, cpu = _clock()
  return {"examples": n, "wall_s": wall - start[0], "cpu_s": cpu - start[1]}


def _train(workdir: str, batch: int, replicas: int, precomputed: bool = False,
           multi_worker: bool = False) -> Dict[str, Any]:
  """Training steps in this process; multi_worker: as one of the workers TF_CONFIG names."""
  from trainer import strategy as strategy_lib
  if replicas > 1 and not multi_worker:
    strategy_lib.split_cpu(replicas)
  from trainer import data
  from trainer import model as model_lib
  from trainer import training_model
  strategy = strategy_lib.select("multi_worker" if multi_worker else "mirrored" if replicas > 1 else "cpu")
  assert strategy.num_replicas_in_sync == replicas
  with strategy.scope():
    network = model_lib.build_colorizer() if precomputed else model_lib.build_model("none")
    model = model_lib.compile_model(training_model.TrainingModel(network), 1e-3)
  global_batch = batch * replicas
  examples = "embedded" if precomputed else "examples"
  ds = data.make_dataset([os.path.join(workdir, examples, "Split-train", "*")], global_batch, training=True,
                         seed=0, precomputed=precomputed)
  import keras
  model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)  # traces the step
  ends = [time.perf_counter()]
  timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
  model.fit(ds, steps_per_epoch=TRAIN_STEPS, epochs=1, verbose=0, callbacks=[timer])
  steps = sorted(b - a for a, b in zip(ends[:-1], ends[1:], strict=True))
  # The median step: this machine is shared, and one step can catch someone else's burst.
  result = {"global_batch": global_batch, "step_s": steps[len(steps) // 2], "steps": len(steps), "step_times": steps}
  if multi_worker:
    result.update(_allreduce(strategy, model))
  return result


def _allreduce(strategy, model) -> Dict[str, Any]:
  """The median wall time of one all-reduce across the workers of as many floats as the
  trainable weights hold: the gradients every training step exchanges.
  """
  import numpy as np
  import tensorflow as tf
  gradients = [tf.zeros(v.shape, tf.float32) for v in model.trainable_variables]
  reduce = tf.function(lambda: tf.distribute.get_replica_context().all_reduce("SUM", gradients))
  times = []
  for _ in range(1 + TRAIN_STEPS):  # the first one traces
    start = time.perf_counter()
    strategy.experimental_local_results(strategy.run(reduce))[0][0].numpy()
    times.append(time.perf_counter() - start)
  times = sorted(times[1:])
  return {"allreduce_mb": sum(int(np.prod(g.shape)) for g in gradients) * 4 / 1e6,
          "allreduce_s": times[len(times) // 2]}


def _one_megapixel_jpeg():
  import io

  from PIL import Image
  image = Image.open(os.path.join(HISTORICAL, ONE_MP_PHOTO)).convert("RGB")
  scale = (ONE_MP / (image.width * image.height)) ** 0.5
  image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
  out = io.BytesIO()
  image.save(out, format="JPEG", quality=95)
  return out.getvalue(), image.size


def _timed(fn, calls: int):
  """(median wall ms, mean CPU ms) of `calls` calls after a warm-up one. CPU time counts
  every thread; wall time also counts waiting for other people's processes.
  """
  fn()
  times = []
  cpu_start = _clock()[1]
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append((time.perf_counter() - start) * 1000.0)
  return sorted(times)[len(times) // 2], (_clock()[1] - cpu_start) * 1000.0 / calls


def _colorize(workdir: str, which: str) -> Dict[str, Any]:
  import tensorflow as tf

  from schemas import signatures
  loaded = tf.saved_model.load(os.path.join(workdir, "model")).signatures
  colorize = loaded[signatures.IMAGE_SIGNATURE]
  if which == "colorize_1mp":
    jpeg, size = _one_megapixel_jpeg()
    photo = tf.constant(jpeg)
    network = loaded[signatures.L_SIGNATURE]
    l = tf.zeros([1, 224, 224, 1])
    ms, cpu_ms = _timed(lambda: colorize(**{signatures.IMAGE_INPUT: photo}), COLORIZE_CALLS)
    network_ms, network_cpu_ms = _timed(lambda: network(**{signatures.L_INPUT: l}), COLORIZE_CALLS)
    return {"photo": f"{ONE_MP_PHOTO} at {size[0]}x{size[1]}", "ms": ms, "cpu_ms": cpu_ms,
            "network_ms": network_ms, "network_cpu_ms": network_cpu_ms}
  rows = []
  for path in sorted(glob.glob(os.path.join(HISTORICAL, "*"))):
    photo = tf.constant(open(path, "rb").read())
    ms, cpu_ms = _timed(lambda photo=photo: colorize(**{signatures.IMAGE_INPUT: photo}), 3)
    height, width = colorize(**{signatures.IMAGE_INPUT: photo})[signatures.RGB_OUTPUT].shape[:2]
    rows.append({"megapixels": width * height / 1e6, "ms": ms, "cpu_ms": cpu_ms})

  def mean(key):
    return sum(r[key] for r in rows) / len(rows)

  return {"photos": len(rows), "mean_megapixels": mean("megapixels"), "mean_ms": mean("ms"),
          "mean_cpu_ms": mean("cpu_ms")}


def _case(name: str, workdir: str) -> Dict[str, Any]:
  if name == "prepare":
    result = _prepare(workdir)
  elif name == "embed":
    result = _embed()
  elif name.startswith(("input_", "warp")):
    result = _input(workdir, name)
  elif name in TRAIN_CASES:
    result = _train(workdir, *TRAIN_CASES[name])
  elif name in MULTI_WORKER_CASES:
    result = _train(workdir, *MULTI_WORKER_CASES[name], multi_worker=True)
  else:
    result = _colorize(workdir, name)
  result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
  return result


def _run_case(name: str, workdir: str) -> Dict[str, Any]:
  """The case in a process of its own; a multi-worker case in one process per worker (TF_CONFIG
  on 127.0.0.1 ports), reported by the chief with every worker's step count.
  """
  workers = MULTI_WORKER_CASES[name][1] if name in MULTI_WORKER_CASES else 1
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  env.pop("TF_CONFIG", None)
  env.pop("CLUSTER_SPEC", None)
  addresses = [f"127.0.0.1:{port}" for port in _free_ports(workers)]
  cluster = {"chief": addresses[:1], "worker": addresses[1:]} if workers > 1 else None
  procs = []
  for task in ([("chief", 0)] + [("worker", i) for i in range(workers - 1)] if cluster else [None]):
    if task:
      env = dict(env, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}}))
    procs.append(subprocess.Popen([sys.executable, "-m", "bench.train", name, workdir], cwd=REPO_ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  results = []
  for proc in procs:
    out, err = proc.communicate()
    if proc.returncode:
      raise RuntimeError(f"bench case {name} failed:\n{err[-3000:]}")
    results.append(json.loads(out.strip().splitlines()[-1]))
  if len({r.get("steps") for r in results}) > 1:
    raise RuntimeError(f"bench case {name}: the workers ran different numbers of steps: {results}")
  return results[0]


def _free_ports(count: int):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run() -> Dict[str, Any]:
  with tempfile.TemporaryDirectory(prefix="bench_train_") as workdir:
    print("bench.train: ingesting and embedding coco128, exporting a model ...", file=sys.stderr, flush=True)
    prepared = _run_case("prepare", workdir)
    results = {}
    for name in CASES:
      print(f"bench.train: {name} ...", file=sys.stderr, flush=True)
      results[name] = _run_case(name, workdir)
    for _ in range(RATIO_REPEATS):
      for batch in (8, 32):
        for name in (f"train_b{batch}_r1_precomputed", f"train_b{batch}_r1"):
          print(f"bench.train: {name} again ...", file=sys.stderr, flush=True)
          steps = sorted(results[name]["step_times"] + _run_case(name, workdir)["step_times"])
          results[name].update(step_times=steps, step_s=steps[len(steps) // 2], steps=len(steps))

  per_cpu_s = {name: r["examples"] / r["cpu_s"] for name, r in results.items() if name.startswith(("input_", "warp"))}
  input_rows = [{"stage": name.replace("input_", ""), "examples": results[name]["examples"],
                 "per_s": results[name]["examples"] / results[name]["wall_s"], "per_cpu_s": rate,
                 "peak_rss_mb": results[name]["peak_rss_mb"]} for name, rate in per_cpu_s.items()]
  # Without a GPU the warp runs on the same cores as the input pipeline: what a core does for both.
  input_rows += [{"stage": f"augment{suffix} + warp{suffix}, both on the CPU", "examples": "", "per_s": "",
                  "per_cpu_s": 1.0 / (1.0 / per_cpu_s[f"input_augment{suffix}"] + 1.0 / per_cpu_s[f"warp{suffix}"]),
                  "peak_rss_mb": ""} for suffix in ("", "_precomputed")]
  train_rows = [{"batch_per_replica": TRAIN_CASES[name][0], "replicas": TRAIN_CASES[name][1],
                 "global_features": "precomputed" if TRAIN_CASES[name][2] else "live",
                 "step_s": results[name]["step_s"],
                 "img_per_s": results[name]["global_batch"] / results[name]["step_s"],
                 "peak_rss_mb": results[name]["peak_rss_mb"]} for name in TRAIN_CASES]
  multi_worker_rows = []
  for name, (batch, workers) in MULTI_WORKER_CASES.items():
    alone, together = results[f"train_b{batch}_r1"], results[name]
    alone_rate = alone["global_batch"] / alone["step_s"]
    together_rate = together["global_batch"] / together["step_s"]
    multi_worker_rows += [
        {"processes": 1, "batch_per_process": batch, "step_s": alone["step_s"], "img_per_s": alone_rate,
         "vs_1_process": 1.0, "allreduce_mb": "", "allreduce_s": "", "allreduce_share_of_step": ""},
        {"processes": workers, "batch_per_process": batch, "step_s": together["step_s"], "img_per_s": together_rate,
         "vs_1_process": together_rate / alone_rate, "allreduce_mb": together["allreduce_mb"],
         "allreduce_s": together["allreduce_s"],
         "allreduce_share_of_step": together["allreduce_s"] / together["step_s"]},
    ]
  one_mp, historical = results["colorize_1mp"], results["colorize_historical"]
  colorize_rows = [
      {"what": f"colorize_image, {one_mp['photo']}", "ms": one_mp["ms"], "cpu_ms": one_mp["cpu_ms"],
       "peak_rss_mb": one_mp["peak_rss_mb"]},
      {"what": "  of which the network (predict_ab, batch 1)", "ms": one_mp["network_ms"],
       "cpu_ms": one_mp["network_cpu_ms"], "peak_rss_mb": ""},
      {"what": f"colorize_image, {historical['photos']} historical photos (mean "
               f"{historical['mean_megapixels']:.2f} MP), mean", "ms": historical["mean_ms"],
       "cpu_ms": historical["mean_cpu_ms"], "peak_rss_mb": historical["peak_rss_mb"]},
  ]
  augmented = per_cpu_s["input_augment"]
  img_per_s = {(r["batch_per_replica"], r["replicas"], r["global_features"]): r["img_per_s"] for r in train_rows}
  speedups = [{"batch": b, "live_img_per_s": img_per_s[(b, 1, "live")],
               "precomputed_img_per_s": img_per_s[(b, 1, "precomputed")],
               "ratio": img_per_s[(b, 1, "precomputed")] / img_per_s[(b, 1, "live")]} for b in (8, 32)]
  # Precomputing costs one Inception-ResNet-v2 pass per photo, once (the Embed step's CPU
  # time); it saves, every epoch, the difference between a live and a precomputed step
  # (2 cores, wall time per image: the live step's cost of the frozen forward pass).
  embed_cpu_per_photo = prepared["embed_cpu_s"] / prepared["photos"]
  ingest_cpu_per_photo = prepared["ingest_cpu_s"] / prepared["photos"]
  b8 = speedups[0]
  saved_per_photo_epoch = 1.0 / b8["live_img_per_s"] - 1.0 / b8["precomputed_img_per_s"]
  embedding = [{
      "photos": prepared["photos"],
      "inference_img_per_cpu_s": results["embed"]["img_per_cpu_s"],
      "embed_step_cpu_s_per_photo": embed_cpu_per_photo,
      "ingest_cpu_s_per_photo": ingest_cpu_per_photo,
      "adds_to_ingestion": f"{embed_cpu_per_photo / ingest_cpu_per_photo:.1f}x its CPU time",
      "break_even_epochs": (embed_cpu_per_photo / 2.0) / saved_per_photo_epoch if saved_per_photo_epoch > 0
                           else "never",
  }]
  augmented_pre = per_cpu_s["input_augment_precomputed"]
  goals = [
      {"goal": "input pipeline with augmentation (the warp in the step), per core",
       "target": f">= {GOAL_INPUT_PER_CORE:g} examples/s",
       "measured": f"{augmented:.0f} examples/s", "met": augmented >= GOAL_INPUT_PER_CORE},
      {"goal": "... on precomputed embeddings, per core", "target": f">= {GOAL_INPUT_PER_CORE:g} examples/s",
       "measured": f"{augmented_pre:.0f} examples/s", "met": augmented_pre >= GOAL_INPUT_PER_CORE},
      {"goal": "training step, precomputed vs live, batch 8 and 32, 1 replica",
       "target": f">= {GOAL_PRECOMPUTED_SPEEDUP:g}x",
       "measured": ", ".join(f"{s['ratio']:.2f}x" for s in speedups),
       "met": all(s["ratio"] >= GOAL_PRECOMPUTED_SPEEDUP for s in speedups)},
      {"goal": "colorize a 1-megapixel photo, 2 cores", "target": f"<= {GOAL_COLORIZE_MS:g} ms",
       "measured": f"{one_mp['ms']:.0f} ms", "met": one_mp["ms"] <= GOAL_COLORIZE_MS},
  ]
  return {
      "cpu_count": os.cpu_count(),
      "load_average_1min": os.getloadavg()[0],
      "input_pipeline": input_rows,
      "training_steps": train_rows,
      # 2 worker processes share this machine's 2 cores with each other (1 process already uses
      # both), so here they can only show the cost of distribution: the ratio below 1 is that
      # cost; allreduce_share_of_step is the part of it spent exchanging gradients.
      "multi_worker_training": multi_worker_rows,
      "precomputed_vs_live": speedups,
      "embedding": embedding,
      "colorize": colorize_rows,
      "goals": goals,
  }


if __name__ == "__main__":
  from cli import quiet
  quiet.install()
  print(json.dumps(_case(*sys.argv[1:3])))
