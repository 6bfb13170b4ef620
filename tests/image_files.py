"""Builds the awkward image files ingestion must handle, from a real photo (shared by the ingestion tests)."""
import io
import struct
import zlib

import numpy as np
from PIL import Image
import tensorflow as tf


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, fmt, **kwargs)
  return buffer.getvalue()


def rotated_with_exif(photo: Image.Image) -> bytes:
  """A JPEG stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise to view): upright it is `photo`."""
  exif = Image.Exif()
  exif[0x0112] = 6
  return encode(photo.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


def rgba_half_transparent(photo: Image.Image) -> bytes:
  """PNG whose left half is fully transparent (-> white) and right half opaque."""
  rgba = photo.convert("RGBA")
  alpha = np.full(rgba.size[::-1], 255, np.uint8)
  alpha[:, : rgba.size[0] // 2] = 0
  rgba.putalpha(Image.fromarray(alpha))
  return encode(rgba, "PNG")


def palette_with_transparency(photo: Image.Image) -> bytes:
  """Palette PNG whose most common palette entry is transparent."""
  palette = photo.quantize(64)
  index = int(np.bincount(np.asarray(palette).ravel()).argmax())
  return encode(palette, "PNG", transparency=index)


def gray16(photo: Image.Image) -> bytes:
  return encode(Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257, "I;16"), "PNG")


def rgb16(photo: Image.Image) -> bytes:
  return tf.io.encode_png(np.asarray(photo).astype(np.uint16) * 257).numpy()


def float_tiff(photo: Image.Image) -> bytes:
  return encode(Image.fromarray(np.asarray(photo.convert("L")).astype(np.float32), "F"), "TIFF")


def decompression_bomb() -> bytes:
  """A PNG header claiming 20000x20000 pixels (over PIL's limit), with a token IDAT."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def corrupt_png(photo: Image.Image) -> bytes:
  data = bytearray(encode(photo, "PNG"))
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(64)
  return bytes(data)
