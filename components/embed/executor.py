"""Embed's Beam executor: every split's examples, through Inception-ResNet-v2 with RunInference.

The Beam graph (the output has the input's `Split-<name>/` gzipped TFRecords, so the
standard Trainer and Evaluator read it unchanged):
  ReadFromTFRecord per split -> ((split, serialized example), its grey 299x299 image)
    -> one RunInference for all splits (keyed, batches of `batch_size`) -> class vector
    -> the example with `embedding` added (float16) -> by split -> WriteToGzipTFRecord

The model handler is Beam's base ModelHandler around the project's own Keras embedder,
named by import path as the Trainer's run_fn is (EMBEDDER_FN_PARAMETER, by default
trainer/model.py build_embedder: weights -> Keras model): Beam's TFModelHandlerNumpy loads only saved models or
weights files and imports tensorflow_hub, which needs pkg_resources (not installed here),
while "imagenet" and "none" are built by Keras. RunInference loads the model once per
worker process and batches; on Dataflow the workers can be GPU machines
(docs/vertex.md). Each worker fingerprints the weights it built (schemas/embedding_info.py)
and leaves the fingerprint as a file name in FINGERPRINTS_DIR: one
name afterwards is the embedding's fingerprint; more means workers built different
weights (another Keras version building "none", another file), which fails the run.

The output artifact records the weights in custom properties (components/embed/__init__.py)
and in schemas/embedding_info.py's file inside it, which is what the Trainer checks.
"""
import posixpath
from typing import Any, Dict, List, Sequence

from absl import logging
import apache_beam as beam
from apache_beam.ml.inference import base as inference
from apache_beam.options import pipeline_options
import numpy as np
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import import_utils

from components import embed
from components import worker_progress
from components.ingest import tfrecord_gzip
from schemas import artifact_files
from schemas import embedding_info
from schemas import features
from serving import beam_workers

GZIP = beam.io.filesystem.CompressionTypes.GZIP
EXAMPLES_KEY = "examples"
EMBEDDED_EXAMPLES_KEY = "embedded_examples"
WEIGHTS_PARAMETER = "weights"
BATCH_SIZE_PARAMETER = "batch_size"
EMBEDDER_FN_PARAMETER = "embedder_fn"
DEFAULT_EMBEDDER_FN = "trainer.model.build_embedder"
DEFAULT_BATCH_SIZE = 32
METRICS_NAMESPACE = "colorize_embed"
FINGERPRINTS_DIR = "_weights_fingerprints"


class EmbeddingError(RuntimeError):
  """The embedding cannot be made as asked; the message says why."""


class EmbedderHandler(inference.ModelHandler):
  """RunInference model handler: uint8 grey images [299, 299, 1] -> class vectors [1000]."""

  def __init__(self, embedder_fn: str, weights: str, fingerprints_dir: str, batch_size: int):
    super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
    self._embedder_fn = embedder_fn
    self._weights = weights
    self._fingerprints_dir = fingerprints_dir
    self._progress = worker_progress.Counter("embedded")

  def load_model(self):
    module, name = self._embedder_fn.rsplit(".", 1)
    embedder = import_utils.import_func_from_module(module, name)(self._weights)
    fingerprint = embedding_info.fingerprint(embedder.get_weights())
    with tf.io.gfile.GFile(posixpath.join(self._fingerprints_dir, fingerprint), "w") as f:
      f.write(self._weights)
    # One trace for every batch size (Keras' predict_on_batch traces again per new shape, ~5 s each).
    return tf.function(lambda gray: embedder(features.gray_to_model(gray), training=False),
                       input_signature=[tf.TensorSpec((None,) + features.GRAY_SHAPE, tf.uint8)])

  def run_inference(self, batch: Sequence[np.ndarray], model, inference_args=None) -> List[np.ndarray]:
    del inference_args
    vectors = list(model(np.stack(batch)).numpy())
    self._progress.add(len(batch))
    return vectors

  def get_metrics_namespace(self) -> str:
    return METRICS_NAMESPACE


def _gray(serialized: bytes, split: str):
  """-> ((split, serialized), the example's grey image as stored)."""
  feature = tf.train.Example.FromString(serialized).features.feature
  if features.GRAY_KEY not in feature:
    raise EmbeddingError(f"an example has no {features.GRAY_KEY!r} feature: Embed takes CocoIngest's Examples")
  return (split, serialized), features.decode_gray_numpy(feature[features.GRAY_KEY].bytes_list.value[0])


def _with_embedding(keyed_vector):
  """-> (split, the serialized example with its embedding)."""
  (split, serialized), vector = keyed_vector
  example = tf.train.Example.FromString(serialized)
  example.features.feature[features.EMBEDDING_KEY].bytes_list.value.append(features.encode_embedding(vector))
  return split, example.SerializeToString()


class Executor(base_beam_executor.BaseBeamExecutor):
  """Writes the embedded Examples; see the module docstring."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],  # noqa: N802 (TFX's executor API)
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    source = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    embedded = artifact_utils.get_single_instance(output_dict[EMBEDDED_EXAMPLES_KEY])
    weights = exec_properties[WEIGHTS_PARAMETER]
    batch_size = int(exec_properties[BATCH_SIZE_PARAMETER])
    if batch_size < 1:
      raise EmbeddingError(f"batch_size must be >= 1, got {batch_size}")
    artifact_files.check(source.uri, f"the Examples #{source.id}")
    split_names = artifact_utils.decode_split_names(source.split_names)
    embedded.split_names = source.split_names
    fingerprints_dir = posixpath.join(embedded.uri, FINGERPRINTS_DIR)
    tf.io.gfile.makedirs(fingerprints_dir)
    handler = inference.KeyedModelHandler(EmbedderHandler(
        exec_properties.get(EMBEDDER_FN_PARAMETER) or DEFAULT_EMBEDDER_FN, weights, fingerprints_dir, batch_size))

    patterns = {split: posixpath.join(artifact_utils.get_split_uri([source], split), "*") for split in split_names}
    for split, pattern in patterns.items():
      if not tf.io.gfile.glob(pattern):
        raise EmbeddingError(f"split {split!r} of {source.uri} holds no files")

    options = pipeline_options.PipelineOptions(list(self._beam_pipeline_args or []))
    with beam_workers.cores_shared(options), self._make_beam_pipeline() as pipeline:
      # One RunInference: the model is loaded once per worker, not once per split.
      embedded_splits = (
          [pipeline
           | f"Read[{split}]" >> beam.io.ReadFromTFRecord(pattern, compression_type=GZIP)
           | f"Gray[{split}]" >> beam.Map(_gray, split=split) for split, pattern in patterns.items()]
          | "AllSplits" >> beam.Flatten()
          | "Embed" >> inference.RunInference(handler)
          | "AddEmbedding" >> beam.Map(_with_embedding)
          | "BySplit" >> beam.Partition(lambda keyed, n: split_names.index(keyed[0]), len(split_names)))
      for split, examples in zip(split_names, embedded_splits, strict=True):
        _ = (examples
             | f"Payload[{split}]" >> beam.Map(lambda keyed: keyed[1])
             | f"Write[{split}]" >> tfrecord_gzip.WriteToGzipTFRecord(
                 posixpath.join(artifact_utils.get_split_uri([embedded], split),
                                write_split.DEFAULT_TF_RECORD_FILE_NAME)))

    fingerprints = tf.io.gfile.listdir(fingerprints_dir)
    tf.io.gfile.rmtree(fingerprints_dir)
    if len(fingerprints) != 1:
      raise EmbeddingError(f"the workers built {len(fingerprints)} different Inception-ResNet-v2 weights from "
                           f"{weights!r} ({fingerprints}): they must all run the same project image")
    fingerprint = fingerprints[0]
    for key, value in source.mlmd_artifact.custom_properties.items():
      if key in embed.COPIED_PROPERTIES:
        embedded.mlmd_artifact.custom_properties[key].CopyFrom(value)
    examples_utils.set_payload_format(embedded, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(embedded, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    embedded.set_string_custom_property(embed.WEIGHTS_PROPERTY, weights)
    embedded.set_string_custom_property(embed.FINGERPRINT_PROPERTY, fingerprint)
    embedding_info.write(embedded.uri, weights, fingerprint)
    artifact_files.record(embedded.uri)
    logging.info("Embedded %s -> %s with Inception-ResNet-v2 weights %r (%s)", source.uri, embedded.uri, weights,
                 fingerprint[:16])
