"""Builds the awkward image files ingestion must handle, from a real photo, and COCO roots cut from coco128
(shared by the ingestion tests)."""
import io
import json
import shutil
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


def claiming_size(data: bytes, width: int, height: int) -> bytes:
  """A JPEG, PNG, GIF or BMP file whose header states width x height (its pixel data unchanged)."""
  data = bytearray(data)
  if data[:2] == b"\xff\xd8":
    at = 2
    while data[at + 1] not in (0xC0, 0xC1, 0xC2):  # walk the markers to the start of frame
      at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
  elif data[:8] == b"\x89PNG\r\n\x1a\n":
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  elif data[:3] == b"GIF":  # the screen, and the first frame (TF decodes at that frame's size)
    data[6:10] = struct.pack("<HH", width, height)
    at = 13 + (3 * (2 << (data[10] & 7)) if data[10] & 0x80 else 0)
    while data[at] == 0x21:  # extensions: label, then sub-blocks up to a zero
      at += 2
      while data[at]:
        at += data[at] + 1
      at += 1
    data[at + 5:at + 9] = struct.pack("<HH", width, height)
  elif data[:2] == b"BM":
    data[18:26] = struct.pack("<ii", width, height)
  else:
    raise ValueError("not a JPEG, PNG, GIF or BMP file")
  return bytes(data)


def with_hidden_colour(photo: Image.Image) -> bytes:
  """PNG of `photo` in three vertical bands: transparent, half transparent, opaque; pure red is stored
  under the transparent band (what a reader that drops alpha shows)."""
  rgba = np.asarray(photo.convert("RGBA")).copy()
  third = rgba.shape[1] // 3
  rgba[:, :third, :3] = (255, 0, 0)
  rgba[:, :third, 3] = 0
  rgba[:, third:2 * third, 3] = 128
  return encode(Image.fromarray(rgba, "RGBA"), "PNG")


COCO_ANNOTATIONS = "annotations/instances_train2017.json"  # below a COCO root


def coco_ids(coco128) -> list:
  """The image ids of coco128's annotations, smallest first."""
  return sorted(i["id"] for i in json.loads((coco128 / COCO_ANNOTATIONS).read_text())["images"])


def coco_annotations(coco128, image_ids) -> dict:
  """coco128's annotations cut down to the images with these ids (in this order) and their objects."""
  full = json.loads((coco128 / COCO_ANNOTATIONS).read_text())
  by_id = {i["id"]: i for i in full["images"]}
  ids = list(image_ids)
  kept = set(ids)
  return dict(full, images=[by_id[i] for i in ids],
              annotations=[a for a in full["annotations"] if a["image_id"] in kept])


def coco_root(coco128, folder, image_ids, missing=()) -> dict:
  """folder: a COCO root holding the coco128 photos with these ids and their annotations, and annotating
  the `missing` ones (last) without their photos. Returns the annotations written."""
  image_ids = list(image_ids)
  annotations = coco_annotations(coco128, [*image_ids, *missing])
  (folder / "train2017").mkdir(parents=True)
  for image in annotations["images"][:len(image_ids)]:
    shutil.copy(coco128 / "train2017" / image["file_name"], folder / "train2017" / image["file_name"])
  (folder / "annotations").mkdir()
  (folder / COCO_ANNOTATIONS).write_text(json.dumps(annotations))
  return annotations
