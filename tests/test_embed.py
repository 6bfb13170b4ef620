"""The Embed component's executor (real Beam RunInference) on real coco128 photos, the
Trainer's check of the embedding's weights, and the exported model of a colorizer head
trained on precomputed embeddings."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from trainer_fixtures import TINT_BIAS

from components import embed
from components.embed import executor
from components.ingest import tfrecord_gzip
from schemas import embedding_info
from schemas import features
from schemas import signatures
from trainer import export
from trainer import model as model_lib
from trainer import settings
from trainer import task

PHOTOS_PER_SPLIT = {"train": 3, "eval": 2, "test": 2}
# The float16 embedding against the float32 class vector: 11 significant bits.
FLOAT16_RTOL = 2.0 ** -11


def _records(examples, split):
  files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*"))
  return [r.numpy() for r in tf.data.TFRecordDataset(sorted(files), "GZIP")]


@pytest.fixture(scope="module")
def small_examples(coco128_examples, tmp_path_factory):
  """A few real ingested photos per split, as an Examples artifact laid out as CocoIngest writes one."""
  small = standard_artifacts.Examples()
  small.uri = str(tmp_path_factory.mktemp("small_examples"))
  small.split_names = coco128_examples.split_names
  for split, n in PHOTOS_PER_SPLIT.items():
    tfrecord_gzip.write_records(os.path.join(artifact_utils.get_split_uri([small], split), "data_tfrecord-0.gz"),
                                _records(coco128_examples, split)[:n])
  small.set_string_custom_property("split_counts", json.dumps(PHOTOS_PER_SPLIT))
  small.set_string_custom_property("skip_report", "elsewhere")
  return small


@pytest.fixture(scope="module")
def embedded(small_examples, tmp_path_factory):
  out = standard_artifacts.Examples()
  out.uri = str(tmp_path_factory.mktemp("embedded"))
  executor.Executor().Do({executor.EXAMPLES_KEY: [small_examples]}, {executor.EMBEDDED_EXAMPLES_KEY: [out]},
                         {executor.WEIGHTS_PARAMETER: "none", executor.BATCH_SIZE_PARAMETER: 2,
                          executor.EMBEDDER_FN_PARAMETER: executor.DEFAULT_EMBEDDER_FN})
  return out


@pytest.fixture(scope="module")
def embedder():
  return model_lib.build_embedder("none")


def test_every_example_gets_the_class_vector_of_its_grey_image(small_examples, embedded, embedder):
  assert artifact_utils.decode_split_names(embedded.split_names) == list(features.SPLITS)
  for split, n in PHOTOS_PER_SPLIT.items():
    before = {tf.train.Example.FromString(r).features.feature["image_id"].int64_list.value[0]: r
              for r in _records(small_examples, split)}
    after = [tf.train.Example.FromString(r) for r in _records(embedded, split)]
    assert len(after) == n and {e.features.feature["image_id"].int64_list.value[0] for e in after} == set(before)
    for example in after:
      feature = example.features.feature
      original = tf.train.Example.FromString(before[feature["image_id"].int64_list.value[0]])
      # Every stored feature is kept as it was; `embedding` is added.
      assert set(feature) == set(original.features.feature) | {features.EMBEDDING_KEY}
      for key in original.features.feature:
        assert feature[key] == original.features.feature[key]
    stored = np.stack([features.decode_embedding_numpy(e.features.feature[features.EMBEDDING_KEY].bytes_list.value[0])
                       for e in after])
    grays = np.stack([features.decode_gray_numpy(e.features.feature[features.GRAY_KEY].bytes_list.value[0])
                      for e in after])
    np.testing.assert_allclose(stored, embedder.predict_on_batch(features.gray_to_model(grays)),
                               rtol=FLOAT16_RTOL, atol=1e-7)
    np.testing.assert_allclose(stored.sum(axis=1), 1.0, atol=1e-2)  # a softmax


def test_embedded_files_are_stored_gzip_as_ingestion_writes_them(embedded):
  """The Trainer inflates these every epoch: deflated (Beam's level 6) they cost it 5x the
  CPU of stored ones. Stored gzip is a little larger than its records, deflate ~30% smaller."""
  for split in PHOTOS_PER_SPLIT:
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([embedded], split), "*.gz"))
    assert files
    payload = sum(len(r) for r in _records(embedded, split))
    assert sum(os.path.getsize(f) for f in files) > payload


def test_artifact_records_the_weights_that_made_it(embedded, embedder):
  fingerprint = embedding_info.fingerprint(embedder.get_weights())
  props = embedded.mlmd_artifact.custom_properties
  assert props[embed.WEIGHTS_PROPERTY].string_value == "none"
  assert props[embed.FINGERPRINT_PROPERTY].string_value == fingerprint
  assert json.loads(props["split_counts"].string_value) == PHOTOS_PER_SPLIT
  assert props["payload_format"].string_value == "FORMAT_TF_EXAMPLE"
  assert "skip_report" not in props  # the ingestion's, not this artifact's
  assert embedding_info.read(embedded.uri) == {"weights": "none", "fingerprint": fingerprint}
  assert not os.path.exists(os.path.join(embedded.uri, executor.FINGERPRINTS_DIR))


def test_trainer_refuses_embeddings_of_other_weights(embedded, embedder, small_examples):
  patterns = [os.path.join(embedded.uri, "Split-train", "*"), os.path.join(embedded.uri, "Split-eval", "*")]
  embedding_info.check(patterns, "none", embedding_info.fingerprint(embedder.get_weights()))
  # The weights train.weights names now are not those the embedding was made with (another
  # file at the same path, say): the fingerprints differ.
  variable = model_lib.global_model(embedder).weights[-1]
  original = variable.numpy()
  variable.assign(original + 0.01)
  try:
    other_fingerprint = embedding_info.fingerprint(embedder.get_weights())
  finally:
    variable.assign(original)
  with pytest.raises(embedding_info.EmbeddingError, match=r"made with Inception-ResNet-v2 weights 'none'.*"
                     r"Re-run the Embed step"):
    embedding_info.check(patterns, "/models/irv2.h5", other_fingerprint)
  # Examples without embeddings (the ingested ones) are refused by run_fn before any training.
  train = dict(settings.TrainConfig(weights="none", global_features="precomputed", strategy="cpu").__dict__)
  with pytest.raises(embedding_info.EmbeddingError, match="holds no precomputed embeddings"):
    task.run_fn(FnArgs(train_files=[os.path.join(small_examples.uri, "Split-train", "*")],
                       eval_files=[os.path.join(small_examples.uri, "Split-eval", "*")],
                       serving_model_dir="/nonexistent/model", model_run_dir="/nonexistent/run",
                       custom_config={"train": train}))


def test_served_model_equals_the_colorizer_head_on_the_stored_embedding(embedded, embedder, small_examples,
                                                                       tmp_path):
  keras.utils.set_random_seed(5)
  head = model_lib.build_colorizer()
  last = head.get_layer(features.AB_KEY)
  last.set_weights([last.get_weights()[0], np.array(TINT_BIAS, np.float32)])
  export.export(head, str(tmp_path / "model"), embedder=embedder)
  serve = tf.saved_model.load(str(tmp_path / "model")).signatures[signatures.EXAMPLES_SIGNATURE]

  # One real photo: the served model computes Inception-ResNet-v2 itself, from the
  # ingested example (no embedding in it); the head reads the stored float16 embedding.
  ingested = _records(small_examples, "test")[0]
  stored = [r for r in _records(embedded, "test")
            if tf.train.Example.FromString(r).features.feature["image_id"] ==
            tf.train.Example.FromString(ingested).features.feature["image_id"]]
  served = serve(**{signatures.EXAMPLES_INPUT: tf.constant([ingested])})[signatures.AB_OUTPUT].numpy()
  inputs = features.parse_examples(tf.constant(stored), features.MODEL_KEYS_PRECOMPUTED)
  from_head = np.asarray(head({k: inputs[k] for k in (features.L_KEY, features.EMBEDDING_KEY)}))
  assert np.abs(served).max() > 0.05  # really coloured (the tint), not a trivial zero
  np.testing.assert_allclose(served, from_head, atol=2e-3)
