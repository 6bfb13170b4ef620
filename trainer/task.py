"""The TFX Trainer's `run_fn` (referenced as "trainer.task.run_fn"): train, log, export.

Hyper-parameters come from `fn_args.custom_config["train"]`, the fields of
`trainer.settings.TrainConfig`.

train.global_features: live trains the fusion model (Inception-ResNet-v2 frozen inside
every step); precomputed trains only the colorizer head on the `embedding` feature of
the Embed component's Examples, after checking that those embeddings were made with
train.weights, and exports the head joined with that Inception-ResNet-v2: the same
SavedModel either way.

Resuming: TFX gives every execution new output directories, so a re-run of a killed
Trainer cannot find state in its own. Resume state (model + optimizer, saved every
`checkpoint_steps` steps and at each epoch end) lives beside the Trainer's outputs, in
`<pipeline_root>/<Trainer node>/resume/<fingerprint of inputs and config>`; a re-run
of the same training restores it and continues at the step where the killed run last
saved, seeing the same batches an uninterrupted run would (trainer/data.py). It is
deleted once the model is exported. The chief holds a lease on it (trainer/resume_lease.py):
a run never adopts, nor deletes, the state of another run that is still training.

TensorBoard (`fn_args.model_run_dir`): the Keras epoch loss curves (train/validation),
the training loss every few steps, and (gray | predicted | truth) triplets of the first
eval photos after each epoch. `training.json` there records what ran.

Multi-worker (several workers in TF_CONFIG or Vertex's CLUSTER_SPEC, trainer/strategy.py):
every worker runs this same run_fn with the same output paths and trains in lock-step.
Only the chief writes them (model, TensorBoard, resume state); the others write their
copies to a local scratch directory that is removed at the end. Every worker restores
the chief's resume state, and they check that they agree on the step before training.
Each worker logs "Training summary:" with a digest of its final weights.
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

from absl import logging
import keras
import tensorflow as tf

from schemas import artifact_files
from schemas import embedding_info
from schemas import features
from schemas import training as training_summary
from trainer import data
from trainer import export
from trainer import model as model_lib
from trainer import resume_lease
from trainer import settings
from trainer import strategy as strategy_lib
from trainer import tf_color
from trainer import training_model

SUMMARY_FILE = training_summary.SUMMARY_FILE
TENSORBOARD_IMAGES = 3
# Set by Vertex AI Training when the job has a TensorBoard: the folder it uploads from.
VERTEX_TENSORBOARD_DIR = "AIP_TENSORBOARD_LOG_DIR"


def run_fn(fn_args) -> None:
  """Trains the fusion model on the train split and exports it to fn_args.serving_model_dir."""
  cfg = train_config(fn_args.custom_config)
  # Cached Examples may have been damaged since they were written: one line naming them, not a DataLossError.
  for uri in artifact_files.artifact_uris(list(fn_args.train_files) + list(fn_args.eval_files)):
    artifact_files.check(uri, "the Examples")
  precomputed = cfg.global_features == settings.PRECOMPUTED
  embedder = None
  if precomputed:
    # Checked before anything else, and kept for the export (float32, outside the strategy).
    embedder = model_lib.build_embedder(cfg.weights)
    embedding_info.check(list(fn_args.train_files) + list(fn_args.eval_files), cfg.weights,
                         embedding_info.fingerprint(embedder.get_weights()))
  keras.utils.set_random_seed(cfg.seed)
  strategy = strategy_lib.select(cfg.strategy)
  resume_dir = resume_directory(fn_args)
  with _scratch_directory(strategy, resume_dir) as scratch:
    _train(fn_args, cfg, strategy, resume_dir, scratch, embedder)


def _train(fn_args, cfg, strategy, resume_dir, scratch, embedder) -> None:
  """run_fn's work; `scratch` is None on the chief, else where this worker's own copies go.

  embedder: the frozen global-features network when training on precomputed embeddings
  (joined to the trained colorizer at export), else None.
  """
  chief = scratch is None
  precomputed = embedder is not None
  # The chief's lease: no other live run adopts or removes its state (trainer/resume_lease.py).
  lease = resume_lease.claim(resume_dir) if chief else None
  replicas = strategy.num_replicas_in_sync
  global_batch = cfg.batch_size * replicas
  steps_per_epoch = cfg.steps_per_epoch or _full_batches(fn_args.train_files, global_batch)
  total_steps = cfg.epochs * steps_per_epoch
  policy = strategy_lib.dtype_policy(cfg.mixed_precision, strategy)
  logging.info("Training on %d replica(s) of %d worker(s) (%s, %s): global batch %d, %d epochs x %d steps",
               replicas, strategy_lib.worker_count(strategy), type(strategy).__name__, policy, global_batch,
               cfg.epochs, steps_per_epoch)

  with strategy_lib.dtype_policy_scope(policy), strategy.scope():
    network = model_lib.build_colorizer() if precomputed else model_lib.build_model(cfg.weights)
    model = model_lib.compile_model(training_model.TrainingModel(network), cfg.learning_rate)
    model.optimizer.build(model.trainable_variables)
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(checkpoint, resume_dir if chief else os.path.join(scratch, "resume"),
                                       max_to_keep=1)
  # Every worker restores the chief's state, the only one kept: the resume directory must be
  # on storage all workers see (the pipeline root: gs:// on Vertex).
  latest = tf.train.latest_checkpoint(resume_dir)
  if latest:
    checkpoint.restore(latest).assert_existing_objects_matched()
  start_step = int(model.optimizer.iterations.numpy())
  strategy_lib.check_same_on_all_workers(strategy, f"the step to resume from (from {resume_dir})", start_step)
  if start_step:
    logging.info("Resuming from %s at step %d of %d", latest, start_step, total_steps)

  # Validation is a training monitor (the Evaluator scores the test split): full batches only.
  full_batches = data.count_examples(fn_args.eval_files) // global_batch
  eval_steps = min(cfg.eval_steps, full_batches) if cfg.eval_steps else full_batches
  if eval_steps:
    # Finite, of known length, and no validation_steps: Keras starts it afresh every epoch.
    eval_ds = data.make_dataset(fn_args.eval_files, global_batch, training=False, drop_remainder=True,
                                precomputed=precomputed)
    validation = dict(validation_data=eval_ds.take(eval_steps).apply(
        tf.data.experimental.assert_cardinality(eval_steps)))
  else:
    logging.warning("The eval split holds fewer examples than one global batch (%d): no validation loss",
                    global_batch)
    validation = {}
  log_dir = fn_args.model_run_dir if chief else os.path.join(scratch, "model_run")
  callbacks = [
      keras.callbacks.TensorBoard(log_dir, update_freq="epoch"),
      _Progress(manager, cfg.checkpoint_steps, log_dir, _triplet_inputs(fn_args.eval_files, precomputed)),
  ]
  if chief and os.environ.get(VERTEX_TENSORBOARD_DIR):
    # A Vertex AI Training job with a TensorBoard (cloud.training.tensorboard) streams this folder there.
    callbacks.append(keras.callbacks.TensorBoard(os.environ[VERTEX_TENSORBOARD_DIR], update_freq="epoch"))
  # A run resumed mid-epoch first finishes that epoch, then runs the remaining ones.
  step = start_step
  while step < total_steps:
    epoch, done_in_epoch = divmod(step, steps_per_epoch)
    last_epoch = cfg.epochs if done_in_epoch == 0 else epoch + 1
    train_ds = data.make_dataset(fn_args.train_files, global_batch, training=True, augment=cfg.augment,
                                 seed=cfg.seed, skip_batches=step, precomputed=precomputed)
    model.fit(train_ds, initial_epoch=epoch, epochs=last_epoch, steps_per_epoch=steps_per_epoch - done_in_epoch,
              callbacks=callbacks, verbose=2, **validation)
    step = int(model.optimizer.iterations.numpy())

  summary = {
      "config": dataclasses.asdict(cfg), "strategy": type(strategy).__name__, "replicas": replicas,
      "workers": strategy_lib.worker_count(strategy), "global_batch": global_batch, "dtype_policy": policy,
      "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "resumed_from_step": start_step,
      "final_step": step, "weights_sha256": _weights_digest(model)}
  # Every worker logs it: in a multi-worker run the digests show that all hold the same model.
  logging.info("Training summary: %s", json.dumps(summary))
  _write_summary(log_dir, summary)
  if chief:
    # Only the chief exports: the export copies the weights into a fresh model outside the
    # strategy, which needs no other worker (TF's rule that every worker saves is for saves of
    # distributed variables, such as the checkpoints above).
    export.export(model.network, fn_args.serving_model_dir, embedder=embedder)
    # Its files' sizes and SHA-256: NewModelCheck names a model damaged since, in the cache or as the baseline.
    artifact_files.record_model(fn_args.serving_model_dir)
    lease.finish()  # removes the resume state
  # The other workers wait for the chief's export: the TFX Trainer checks in every process that
  # the model exists once run_fn returns.
  strategy_lib.check_same_on_all_workers(strategy, "the final step", step)


def train_config(custom_config) -> settings.TrainConfig:
  """custom_config["train"] (TrainConfig as a dict) -> a validated TrainConfig."""
  try:
    return settings.from_dict(dict((custom_config or {})["train"]))
  except KeyError as e:
    raise ValueError("the Trainer needs custom_config={'train': dataclasses.asdict(TrainConfig)}") from e


def resume_directory(fn_args) -> str:
  """Where this training's resume state lives: the same for every re-run of the same training.

  TFX writes outputs to <pipeline_root>/<node>/<output>/<execution id>; the state sits
  under <pipeline_root>/<node>/resume/, keyed by the input files and the config.
  """
  key = json.dumps({"train": sorted(fn_args.train_files), "eval": sorted(fn_args.eval_files),
                    "config": fn_args.custom_config["train"]}, sort_keys=True)
  node_dir = os.path.dirname(os.path.dirname(fn_args.model_run_dir.rstrip("/")))
  return os.path.join(node_dir, "resume", hashlib.sha256(key.encode()).hexdigest()[:16])


def _full_batches(patterns, global_batch) -> int:
  count = data.count_examples(patterns)
  if count < global_batch:
    raise ValueError(f"the train split has {count} examples, fewer than one global batch ({global_batch}); "
                     "lower train.batch_size or ingest more images")
  return count // global_batch


@contextlib.contextmanager
def _scratch_directory(strategy, resume_dir):
  """None on the chief. On the other workers of a multi-worker run: a private local directory
  for their copies of checkpoints and logs (they must take part in every save, TF's multi-worker
  rule, but nobody reads their copies), removed when run_fn ends. Its name is fixed per training
  and worker, so a re-run after kill -9 removes what the killed run left.
  """
  if strategy_lib.is_chief(getattr(strategy, "cluster_resolver", None)):
    yield None
    return
  resolver = strategy.cluster_resolver
  key = hashlib.sha256(resume_dir.encode()).hexdigest()[:16]
  scratch = os.path.join(tempfile.gettempdir(), f"colorize_{key}_{resolver.task_type}{resolver.task_id}")
  shutil.rmtree(scratch, ignore_errors=True)
  os.makedirs(scratch)
  try:
    yield scratch
  finally:
    shutil.rmtree(scratch, ignore_errors=True)


def _weights_digest(model) -> str:
  digest = hashlib.sha256()
  for weights in model.get_weights():
    digest.update(weights.tobytes())
  return digest.hexdigest()


def _write_summary(model_run_dir, summary) -> None:
  tf.io.gfile.makedirs(model_run_dir)
  with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_FILE), "w") as f:
    f.write(json.dumps(summary, indent=2))


def _triplet_inputs(eval_files, precomputed):
  """The first few eval photos, for the TensorBoard image triplets."""
  return next(iter(data.make_dataset(eval_files, TENSORBOARD_IMAGES, training=False, precomputed=precomputed)),
              None)


def _lab_to_rgb(l, ab):
  return tf_color.lab_to_rgb_keep_lightness(tf.concat([(l + 1.0) * 50.0, ab * features.AB_SCALE], axis=-1))


class _Progress(keras.callbacks.Callback):
  """Saves resume state; logs the loss by global step and the image triplets by epoch."""

  def __init__(self, manager, every, log_dir, triplet_inputs):
    super().__init__()
    self._manager = manager
    self._every = every
    self._saved_step = None
    self._writer = tf.summary.create_file_writer(os.path.join(log_dir, "progress"))
    self._triplets = triplet_inputs

  def _save(self, step):
    if step != self._saved_step:
      self._manager.save(checkpoint_number=step)
      self._saved_step = step

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations.numpy())
    if step % self._every == 0:
      self._save(step)
    with self._writer.as_default():
      tf.summary.scalar("train_loss_running_mean", logs["loss"], step=step)

  def on_epoch_end(self, epoch, logs=None):
    self._save(int(self.model.optimizer.iterations.numpy()))
    if self._triplets is None:
      return
    inputs, truth = self._triplets
    l = inputs[features.L_KEY]
    predicted = self.model(inputs, training=False)  # a few photos: not worth distributing
    triplets = tf.concat([_lab_to_rgb(l, tf.zeros_like(truth)), _lab_to_rgb(l, predicted), _lab_to_rgb(l, truth)],
                         axis=2)
    with self._writer.as_default():
      tf.summary.image("gray | predicted | truth", triplets, step=epoch + 1, max_outputs=TENSORBOARD_IMAGES)
    self._writer.flush()
