"""schema.pbtxt and schemas/features.py describe the same example."""
from google.protobuf import text_format
import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from schemas import features


def test_schema_file_lists_exactly_the_feature_spec():
  with open(features.SCHEMA_FILE) as f:
    schema = text_format.Parse(f.read(), schema_pb2.Schema())
  types = {tf.int64: schema_pb2.INT, tf.string: schema_pb2.BYTES, tf.float32: schema_pb2.FLOAT}
  assert {f.name: f.type for f in schema.feature} == {
      k: types[v.dtype] for k, v in features.feature_spec().items()}


def test_encode_then_parse_round_trip():
  rng = np.random.default_rng(0)
  l_star = rng.uniform(0, 100, features.L_SHAPE)
  ab = rng.uniform(-128, 127, features.AB_SHAPE)
  gray = rng.uniform(0, 255, features.GRAY_SHAPE)
  embedding = rng.dirichlet(np.ones(features.EMBEDDING_SHAPE))  # a softmax output: sums to 1
  example = tf.train.Example(features=tf.train.Features(feature={
      features.IMAGE_ID_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
      features.SOURCE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x.jpg"])),
      features.L_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[features.encode_l(l_star)])),
      features.AB_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[features.encode_ab(ab)])),
      features.GRAY_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[features.encode_gray(gray)])),
      features.EMBEDDING_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[features.encode_embedding(embedding)])),
  }))
  serialized = tf.constant([example.SerializeToString()])
  parsed = features.parse_examples(serialized)
  assert features.EMBEDDING_KEY not in parsed  # only parsed when asked for
  precomputed = features.parse_examples(serialized, features.MODEL_KEYS_PRECOMPUTED)
  assert sorted(precomputed) == sorted(features.MODEL_KEYS_PRECOMPUTED)
  # float16: 11 significant bits.
  np.testing.assert_allclose(precomputed["embedding"][0].numpy(), embedding, rtol=2 ** -11, atol=1e-7)
  assert len(example.features.feature["embedding"].bytes_list.value[0]) == 2000
  np.testing.assert_array_equal(features.decode_embedding_numpy(features.encode_embedding(embedding)),
                                precomputed["embedding"][0].numpy())
  # Quantisation: L to 100/255/2, ab to 0.5 before scaling to the model's [-1, 1].
  np.testing.assert_allclose(parsed["l"][0].numpy(), l_star / 50 - 1, atol=100 / 255 / 50 / 2 + 1e-6)
  np.testing.assert_allclose(parsed["ab"][0].numpy(), ab / 128, atol=0.5 / 128 + 1e-6)
  np.testing.assert_allclose(parsed["gray"][0].numpy(), gray / 127.5 - 1, atol=0.5 / 127.5 + 1e-6)
  assert parsed["l"].shape == (1,) + features.L_SHAPE
  assert parsed["image_id"].numpy().tolist() == [7]
  np.testing.assert_allclose(features.decode_ab_numpy(features.encode_ab(ab)), ab, atol=0.5 + 1e-6)
  np.testing.assert_allclose(features.decode_l_numpy(features.encode_l(l_star)), l_star, atol=0.2)
