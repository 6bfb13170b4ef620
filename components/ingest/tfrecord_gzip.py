"""Gzipped TFRecord files with a chosen deflate level and strategy.

Beam's GZIP always deflates at zlib's level 6. An example is 240 KB of dense uint8
pixels, which deflate barely shrinks; per example, measured on coco128:
  level 6 (Beam's)   ~8 ms   69% of the raw size   (more than decode + all features)
  Huffman only       ~2 ms   78%
  level 0 (stored)   ~0.1 ms 100%                  (240 KB, within the 250 KB goal)
Ingestion's throughput goals (bench/ingest.py) leave no room for even the Huffman
pass, so DEFAULT_LEVEL stores. The files stay ordinary gzip, as the standard Examples
format requires: every reader (tf.data, TFXIO, Beam) reads them like ExampleGen's.
Files go through Beam's FileSystems (local paths, gs://). WriteToGzipTFRecord is Beam's
WriteToTFRecord with this writer, for the Embed step, whose output the Trainer reads every
epoch: a level-6 file costs tf.data ~2.5 ms per example to inflate, a stored one ~0.5 ms.
"""
from typing import Iterable
import zlib

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.io import filebasedsink
from apache_beam.io import tfrecordio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

_GZIP_WBITS = zlib.MAX_WBITS | 16
DEFAULT_LEVEL = 0
DEFAULT_STRATEGY = zlib.Z_DEFAULT_STRATEGY
# TFRecord framing (length, masked CRC32C of length and data) exactly as Beam's WriteToTFRecord writes it.
_FRAMING = tfrecordio._TFRecordUtil


class GzipWriter:
  """Appends TFRecords to a new gzip file (created with its parent folders)."""

  def __init__(self, path: str, level: int = DEFAULT_LEVEL, strategy: int = DEFAULT_STRATEGY):
    self._raw = FileSystems.create(path, "application/octet-stream", CompressionTypes.UNCOMPRESSED)
    self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS, 9, strategy)

  def write(self, data: bytes) -> None:
    """File-like, for the framing: raw bytes into the gzip stream."""
    self._raw.write(self._compressor.compress(data))

  def write_record(self, record: bytes) -> None:
    _FRAMING.write_record(self, record)

  def close(self) -> None:
    self._raw.write(self._compressor.flush())
    self._raw.close()


def write_records(path: str, records: Iterable[bytes]) -> None:
  """Writes one gzipped TFRecord file (possibly empty)."""
  writer = GzipWriter(path)
  for record in records:
    writer.write_record(record)
  writer.close()


class _GzipTFRecordSink(filebasedsink.FileBasedSink):
  """Beam's TFRecord sink with GzipWriter's deflate level instead of Beam's GZIP."""

  def __init__(self, file_path_prefix: str, file_name_suffix: str):
    super().__init__(file_path_prefix, coders.BytesCoder(), file_name_suffix=file_name_suffix,
                     compression_type=CompressionTypes.UNCOMPRESSED)

  def open(self, temp_path):
    return GzipWriter(temp_path)

  def write_encoded_record(self, file_handle, encoded_value):
    file_handle.write_record(encoded_value)


class WriteToGzipTFRecord(beam.PTransform):
  """Serialized records -> gzipped TFRecord shards `<prefix>-SSSSS-of-NNNNN<suffix>` (at DEFAULT_LEVEL)."""

  def __init__(self, file_path_prefix: str, file_name_suffix: str = ".gz"):
    super().__init__()
    self._sink = _GzipTFRecordSink(file_path_prefix, file_name_suffix)

  def expand(self, records):
    return records | beam.io.Write(self._sink)
