"""Peak memory of the image signature on a large photo, per pixel, in a fresh process.

Exports a model (random weights: memory does not depend on them), makes a 24-megapixel
JPEG from a real historical photo, and runs the signature in a subprocess (after a
warm-up on a small photo) that reports its resident memory before the large photo and
at its peak during it; the difference over the pixel count is the cost per pixel. An image over the
export's limit is refused from its header: its row shows the time and memory that costs.

Usage: python -m bench.run bench.serving_memory
       python -m bench.serving_memory SAVED_MODEL_DIR   (an existing export; the 24 MP photo only)
"""
import json
import pathlib
import subprocess
import sys
import tempfile

from PIL import Image

HISTORICAL = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "historical"
LARGE_SIZE = (6000, 4000)
OVER_LIMIT_SIZE = (12000, 10000)

# Resident memory before and at its peak during each photo, in one fresh interpreter. The
# kernel's peak (VmHWM) is reset before each photo (clear_refs 5), so loading the model,
# which peaks higher than a small photo, does not hide the photo's own peak.
_MEASURE = """
import json, sys, time
import tensorflow as tf
model_dir, small, *photos = sys.argv[1:]
colorize = tf.saved_model.load(model_dir).signatures["colorize_image"]
def memory(field):
  for line in open("/proc/self/status"):
    if line.startswith(field + ":"):
      return int(line.split()[1]) * 1024
colorize(image_bytes=tf.constant(open(small, "rb").read()))
rows = []
for photo in photos:
  data = tf.constant(open(photo, "rb").read())
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
  before = memory("VmRSS")
  start = time.perf_counter()
  try:
    colorize(image_bytes=data)
    error = ""
  except tf.errors.InvalidArgumentError as e:
    error = next(line for line in e.message.splitlines() if "megapixels" in line or "rror" in line).strip()
  rows.append({"seconds": time.perf_counter() - start, "before": before, "peak": memory("VmHWM"), "error": error})
print(json.dumps(rows))
"""


def measure(model_dir: str, work_dir: pathlib.Path, over_limit: bool = True) -> list:
  source = Image.open(HISTORICAL / "Detroit_circa_1915.jpg").convert("RGB")
  small = work_dir / "small.jpg"
  source.save(small, quality=90)
  large = work_dir / "large_24mp.jpg"
  source.resize(LARGE_SIZE, Image.BILINEAR).save(large, quality=90)
  photos = [large]
  if over_limit:
    photos.append(work_dir / "over_limit_120mp.jpg")
    Image.new("RGB", OVER_LIMIT_SIZE, (128, 128, 128)).save(photos[-1], quality=50)
  result = subprocess.run([sys.executable, "-c", _MEASURE, model_dir, str(small), *map(str, photos)],
                          capture_output=True, text=True, timeout=1800, check=False)
  if result.returncode != 0:
    raise RuntimeError(result.stderr[-3000:])
  rows = []
  sizes = (LARGE_SIZE, OVER_LIMIT_SIZE)[:len(photos)]
  for row, size in zip(json.loads(result.stdout.strip().splitlines()[-1]), sizes, strict=True):
    pixels = size[0] * size[1]
    grown = row["peak"] - row["before"]
    rows.append({"photo": f"{size[0]}x{size[1]} JPEG", "megapixels": pixels / 1e6, "seconds": row["seconds"],
                 "peak_rss_gb": row["peak"] / 1e9, "peak_growth_gb": grown / 1e9,
                 "bytes_per_pixel": grown / pixels, "error": row["error"][:110] or "-"})
  return rows


def run() -> dict:
  from cli import quiet
  quiet.install()
  import keras

  from trainer import export
  from trainer import model as model_lib
  with tempfile.TemporaryDirectory() as tmp:
    work = pathlib.Path(tmp)
    keras.utils.set_random_seed(0)
    export.export(model_lib.build_model("none"), str(work / "model"))
    return {"image signature, fresh process": measure(str(work / "model"), work)}


if __name__ == "__main__":
  with tempfile.TemporaryDirectory() as tmp_dir:
    print(json.dumps(measure(sys.argv[1], pathlib.Path(tmp_dir), over_limit=False), indent=1))
