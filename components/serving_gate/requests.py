"""What the serving gate asks the model and what counts as an answer (no TFX, no subprocess).

Every signature of schemas/signatures.py is called on the real photos of photos/: a JPEG, a
PNG with alpha and, through the REST signature production calls, the JPEG enlarged to just
under the model's size limit. An answer must have the documented keys and shapes: each
colorized photo a JPEG at the input's own size, ab finite in [-1, 1].
"""
import dataclasses
import io
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from components.ingest import make_examples
from components.serving_gate import ALPHA_PHOTO
from components.serving_gate import JPEG_PHOTO
from components.serving_gate import PHOTOS_DIR
from imaging import images
from schemas import features
from schemas import signatures

LARGE_PHOTO_QUALITY = 90


@dataclasses.dataclass
class Request:
  name: str
  signature: str
  inputs: Dict[str, np.ndarray]
  expect: Dict[str, tuple]   # output key -> ("images", [(h, w), ...]) or ("ab", batch size)


def photo_bytes(name: str) -> bytes:
  with open(os.path.join(PHOTOS_DIR, name), "rb") as f:
    return f.read()


def large_photo(jpeg: bytes, max_pixels: int) -> Tuple[bytes, Tuple[int, int]]:
  """The photo enlarged, at its aspect ratio, to the most pixels the model takes (at most max_pixels),
  and its (height, width).
  """
  image = Image.open(io.BytesIO(jpeg)).convert("RGB")
  scale = math.sqrt(max_pixels / (image.width * image.height))
  width, height = math.floor(image.width * scale), math.floor(image.height * scale)
  out = io.BytesIO()
  image.resize((width, height), Image.BILINEAR).save(out, format="JPEG", quality=LARGE_PHOTO_QUALITY)
  return out.getvalue(), (height, width)


def _size(data: bytes):
  width, height = Image.open(io.BytesIO(data)).size
  return height, width


def requests(max_pixels: int) -> List[Request]:
  """Every signature, on the real photos."""
  jpeg, png = photo_bytes(JPEG_PHOTO), photo_bytes(ALPHA_PHOTO)
  large, (height, width) = large_photo(jpeg, max_pixels)
  arrays = [images.to_arrays(p) for p in (jpeg, png)]
  examples = [make_examples.example_bytes({}, {features.L_KEY: features.encode_l(a.l),
                                               features.GRAY_KEY: features.encode_gray(a.gray)}, {})
              for a in arrays]
  l_bytes = np.stack([np.frombuffer(features.encode_l(a.l), np.uint8).reshape(features.L_SHAPE) for a in arrays])
  photos = lambda *data: np.array(data, dtype=object)  # noqa: E731
  return [
      Request(f"{signatures.REST_SIGNATURE}: the JPEG and the PNG with alpha in one request",
              signatures.REST_SIGNATURE, {signatures.IMAGE_INPUT: photos(jpeg, png)},
              {signatures.REST_OUTPUT: ("images", [_size(jpeg), _size(png)])}),
      Request(f"{signatures.REST_SIGNATURE}: a {width}x{height} JPEG ({width * height / 1e6:.1f} megapixels, "
              f"the model's limit {max_pixels / 1e6:g})",
              signatures.REST_SIGNATURE, {signatures.IMAGE_INPUT: photos(large)},
              {signatures.REST_OUTPUT: ("images", [(height, width)])}),
      *(Request(f"{signatures.IMAGE_SIGNATURE}: {name}", signatures.IMAGE_SIGNATURE,
                {signatures.IMAGE_INPUT: np.array(data, dtype=object)},
                {signatures.JPEG_OUTPUT: ("images", [_size(data)]),
                 signatures.RGB_OUTPUT: ("shape", [*_size(data), 3])})
        for name, data in ((JPEG_PHOTO, jpeg), (ALPHA_PHOTO, png))),
      Request(f"{signatures.EXAMPLES_SIGNATURE}: tf.Examples of both photos", signatures.EXAMPLES_SIGNATURE,
              {signatures.EXAMPLES_INPUT: photos(*examples)}, {signatures.AB_OUTPUT: ("ab", len(examples))}),
      Request(f"{signatures.L_SIGNATURE}: L of both photos", signatures.L_SIGNATURE,
              {signatures.L_INPUT: features.l_to_model(l_bytes).numpy()},
              {signatures.AB_OUTPUT: ("ab", len(arrays))}),
  ]


def problems(request: Request, answer: dict, max_seconds: float) -> List[str]:
  """What is wrong with one answer of the probe (an empty list: a good answer)."""
  if "error" in answer:
    return [f"{request.name}: {answer['error']}"]
  found = []
  if answer["seconds"] > max_seconds:
    found.append(f"{request.name}: took {answer['seconds']:.1f} s, over the budget of {max_seconds:g} s")
  outputs = answer["outputs"]
  for key, (kind, want) in request.expect.items():
    got = outputs.get(key)
    problem = None if got is not None else f"no output {key!r} (got {sorted(outputs)})"
    if problem is None and kind == "images":
      sizes = [tuple(s[:2]) if s else None for s in got.get("images", [])]
      if sizes != [tuple(w) for w in want]:
        problem = f"{key!r} should be JPEGs of {[tuple(w) for w in want]} (height, width), got {sizes}"
    elif problem is None and kind == "shape" and got["shape"] != list(want):
      problem = f"{key!r} should have shape {list(want)}, got {got['shape']}"
    elif problem is None and kind == "ab":
      shape = [want, *features.AB_SHAPE]
      if got["shape"] != shape or not got["finite"] or got["min"] < -1 or got["max"] > 1:
        problem = (f"{key!r} should be {shape} finite values in [-1, 1], got {got['shape']} "
                   f"in [{got.get('min')}, {got.get('max')}] (finite: {got.get('finite')})")
    if problem:
      found.append(f"{request.name}: {problem}")
  return found


def missing_signatures(present: Sequence[str]) -> Optional[str]:
  wanted = (signatures.REST_SIGNATURE, signatures.EXAMPLES_SIGNATURE, signatures.IMAGE_SIGNATURE,
            signatures.L_SIGNATURE)
  missing = [s for s in wanted if s not in present]
  return f"the SavedModel lacks the signature(s) {missing} (it has {sorted(present)})" if missing else None
