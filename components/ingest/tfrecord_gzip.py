"""WriteToTFRecord, but gzip with a chosen deflate level and strategy.

Beam's GZIP always deflates at zlib's level 6. An example is 240 KB of dense uint8
pixels, which deflate barely shrinks; per example, measured on coco128:
  level 6 (Beam's)   ~8 ms   69% of the raw size   (more than decode + all features)
  Huffman only       ~2 ms   78%
  level 0 (stored)   ~0.1 ms 100%                  (240 KB, within the 250 KB goal)
Ingestion's throughput goals (bench/ingest.py) leave no room for even the Huffman
pass, so DEFAULT_LEVEL stores. The files stay ordinary gzip, as the standard Examples
format requires: every reader (tf.data, TFXIO, Beam) reads them like ExampleGen's.
"""
from typing import Iterable
import zlib

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import tfrecordio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_GZIP_WBITS = zlib.MAX_WBITS | 16
DEFAULT_LEVEL = 0
DEFAULT_STRATEGY = zlib.Z_DEFAULT_STRATEGY


class _GzipWriter:
  """File-like: gzip-compresses what is written into an uncompressed Beam file handle."""

  def __init__(self, raw, level: int, strategy: int):
    self._raw = raw
    self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS, 9, strategy)

  def write(self, data: bytes) -> None:
    self._raw.write(self._compressor.compress(data))

  def close(self) -> None:
    self._raw.write(self._compressor.flush())
    self._raw.close()


class _GzipTFRecordSink(tfrecordio._TFRecordSink):

  def __init__(self, file_path_prefix: str, file_name_suffix: str, level: int, strategy: int):
    super().__init__(file_path_prefix, coders.BytesCoder(), file_name_suffix, num_shards=0,
                     shard_name_template=None, compression_type=CompressionTypes.UNCOMPRESSED)
    self._level = level
    self._strategy = strategy

  def open(self, temp_path):
    return _GzipWriter(FileSystems.create(temp_path, self.mime_type, CompressionTypes.UNCOMPRESSED),
                       self._level, self._strategy)


def write_records(path: str, records: Iterable[bytes], level: int = DEFAULT_LEVEL,
                  strategy: int = DEFAULT_STRATEGY) -> None:
  """Writes one gzipped TFRecord file directly (for a handful of records, where a Beam Write costs more)."""
  writer = _GzipWriter(FileSystems.create(path, "application/octet-stream", CompressionTypes.UNCOMPRESSED),
                       level, strategy)
  for record in records:
    tfrecordio._TFRecordUtil.write_record(writer, record)
  writer.close()


class WriteToGzipTFRecord(beam.PTransform):
  """Writes serialized records to `<prefix>-SSSSS-of-NNNNN<suffix>` as gzipped TFRecords."""

  def __init__(self, file_path_prefix: str, file_name_suffix: str = ".gz",
               level: int = DEFAULT_LEVEL, strategy: int = DEFAULT_STRATEGY):
    super().__init__()
    self._sink = _GzipTFRecordSink(file_path_prefix, file_name_suffix, level, strategy)

  def expand(self, pcoll):
    return pcoll | beam.io.Write(self._sink)
