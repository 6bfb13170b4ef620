"""What a Beam worker of CocoIngest runs: example serialization, shard files, and nothing heavier."""
import subprocess
import sys

import pytest
import tensorflow as tf

from components.ingest import make_examples
from components.ingest import shard_writer


@pytest.mark.parametrize("int64s, byte_strings, floats", [
    ({"image_id": 9, "license": 0}, {"source": b"train2017/000000000009.jpg", "l": bytes(range(256)) * 196},
     {"mean_l": 47.25, "mean_a": -3.5}),
    ({"image_id": 2 ** 63 - 1, "license": -1}, {"source": "é/名前 with spaces.png".encode(), "empty": b""},
     {"colorfulness": 0.0, "tiny": 1e-30}),
])
def test_example_bytes_parse_as_the_tf_example_tensorflow_builds(int64s, byte_strings, floats):
  expected = tf.train.Example(features=tf.train.Features(feature={
      **{k: tf.train.Feature(int64_list=tf.train.Int64List(value=[v])) for k, v in int64s.items()},
      **{k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v])) for k, v in byte_strings.items()},
      **{k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in floats.items()},
  }))
  assert tf.train.Example.FromString(make_examples.example_bytes(int64s, byte_strings, floats)) == expected


def test_worker_modules_load_without_tensorflow_or_tfx():
  """Each worker process imports these; TensorFlow and TFX would cost it ~9 CPU s and ~700 MB."""
  code = ("import sys; import components.ingest.make_examples, components.ingest.listing_files, "
          "components.ingest.commit; "
          "print(sorted(m for m in ('tensorflow', 'tfx', 'keras') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_a_bundle_committed_twice_is_an_error_not_duplicates(coco128, tmp_path):
  photos = sorted((coco128 / "train2017").glob("*.jpg"))[:3]
  attempts = []
  for _ in range(2):  # the same bundle, run twice, both committed
    bundle = shard_writer.BundleShards(str(tmp_path / "temp"))
    for i, photo in enumerate(photos):
      bundle.write("train", i, photo.read_bytes())
    attempts += bundle.close()
  written = tf.data.TFRecordDataset(attempts[0].path, compression_type="GZIP").as_numpy_iterator()
  assert list(written) == [p.read_bytes() for p in photos] and attempts[0].image_ids == [0, 1, 2]
  with pytest.raises(shard_writer.DuplicateExamplesError, match="image 0 is in two committed shards"):
    shard_writer.check_unique(attempts)
