"""The picture of an evaluation: one test image per row, grayscale input | prediction | truth."""
from typing import Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw

COLUMNS = ("grayscale input", "prediction", "ground truth")
HEADER_HEIGHT = 20


def render(rows: Sequence[Sequence[np.ndarray]]) -> Image.Image:
  """Rows of (gray, prediction, truth) uint8 HxWx3 images -> one RGB image with a header line."""
  if not rows:
    raise ValueError("the grid needs at least one row")
  height, width = rows[0][0].shape[:2]
  canvas = Image.new("RGB", (width * len(COLUMNS), HEADER_HEIGHT + height * len(rows)), "white")
  draw = ImageDraw.Draw(canvas)
  for column, title in enumerate(COLUMNS):
    draw.text((column * width + 6, 4), title, fill="black")
  for row, images in enumerate(rows):
    for column, image in enumerate(images):
      canvas.paste(Image.fromarray(image), (column * width, HEADER_HEIGHT + row * height))
  return canvas


def expected_size(num_rows: int, image_size: int):
  """(width, height) in pixels of a grid of `num_rows` square images of `image_size`."""
  return image_size * len(COLUMNS), HEADER_HEIGHT + image_size * num_rows
