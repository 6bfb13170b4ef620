"""The exported SavedModel's interface: signature names, input and output keys.

trainer/export.py builds the signatures; the Evaluator's config, the evaluation report,
`colorize photos` and any client call them by these names. Kept here, TF-free, so that
reading them never imports the model.

Signatures:

  REST_SIGNATURE "serving_default": what TF Serving and Vertex AI prediction call over REST.
    in  IMAGE_INPUT "image_bytes": string [batch] encoded photos, each as IMAGE_SIGNATURE takes
    out REST_OUTPUT "colorized_bytes": string [batch] each colorized photo as JPEG, as
        IMAGE_SIGNATURE's JPEG_OUTPUT
    The `_bytes` suffixes make the REST API carry both as base64:
      POST .../models/colorize:predict  {"instances": [{"b64": "<JPEG>"}, ...]}
      ->  {"predictions": [{"b64": "<colorized JPEG>"}, ...]}
    Photos of different sizes cannot share a tensor, so they are colorized one after the
    other inside the request: memory is that of the largest photo, not of the batch.
    It is the default signature because Vertex AI's prebuilt TensorFlow containers call
    only the default one.

  EXAMPLES_SIGNATURE "predict": what TFMA's Evaluator feeds.
    in  EXAMPLES_INPUT "examples": string [batch] serialized tf.Examples (only `l` and
        `gray` are read; `ab` may be absent)
    out AB_OUTPUT "ab": float32 [batch, 224, 224, 2], predicted a*b* / 128 in [-1, 1]
        (the scale of the `ab` label, schemas/features.py)
    Models exported before REST_SIGNATURE existed have this signature as "serving_default";
    TFMA, given no signature name, uses "predict" and else "serving_default", so such a
    model still works as the Evaluator's baseline (pipelines/evaluation.py).

  IMAGE_SIGNATURE "colorize_image": a whole photo.
    in  IMAGE_INPUT "image_bytes": string [] one encoded JPEG/PNG/GIF/BMP image of at most
        the SavedModel's `max_pixels` (MAX_MEGAPIXELS million unless the export said otherwise;
        checked in the header before decoding: a larger image is an InvalidArgumentError
        saying its size and the limit). Grey, RGB or with alpha: transparency is composited
        on white exactly as ingestion does it (imaging/color.py, flatten_alpha).
    out JPEG_OUTPUT "colorized_jpeg": string [] the colorized photo as JPEG (quality 95,
        no chroma subsampling) at the ORIGINAL resolution
        RGB_OUTPUT "colorized_rgb": uint8 [height, width, 3] the same pixels, for clients
        that encode themselves
    The full frame is resized to 224x224 (and 299x299 for the global features), ab is
    predicted at 224, resized back to the original size and merged with the original
    full-resolution L (colours the sRGB gamut lacks at that lightness are desaturated,
    not clipped, so the photo's L is kept).

  L_SIGNATURE "predict_ab": the bare network on L.
    in  L_INPUT "l": float32 [batch, 224, 224, 1], L* / 50 - 1 in [-1, 1]; NaN or Inf is an
        InvalidArgumentError
    out AB_OUTPUT "ab": float32 [batch, 224, 224, 2], a*b* / 128 in [-1, 1]
"""
from schemas import features

REST_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "predict"
IMAGE_SIGNATURE = "colorize_image"
L_SIGNATURE = "predict_ab"

EXAMPLES_INPUT = "examples"
IMAGE_INPUT = "image_bytes"
L_INPUT = features.L_KEY
AB_OUTPUT = features.AB_KEY
JPEG_OUTPUT = "colorized_jpeg"
RGB_OUTPUT = "colorized_rgb"
REST_OUTPUT = "colorized_bytes"

# The image signature's default size limit. Its peak memory above the loaded model's is ~8
# bytes per pixel (bench/serving_memory.py: 7.5 on a 24-megapixel JPEG), so 100 megapixels
# (a 12000x8000 scan) cost ~0.8 GB; phones and most cameras take 12-50.
MAX_MEGAPIXELS = 100.0
MAX_PIXELS = "max_pixels"  # the SavedModel's variable holding the limit in pixels
# Width, height, megapixels, the limit in megapixels (str.format and tf.strings.format alike; no
# quote marks, which TensorFlow's assertion message would escape).
TOO_LARGE_MESSAGE = "image is {}x{} pixels ({} megapixels): over the limit of this model, {} megapixels (set at export)"
# The longest side a photo may have, JPEG's own limit. Recombination upsamples a*b* to the photo's
# width before its rows (~1.8 kB a column, several copies), so a 1x20,000,000 PNG of 82 kB, within
# the pixel limit, would take tens of GB; at this limit it takes ~120 MB.
MAX_SIDE = 65535
TOO_LONG_MESSAGE = "image is {}x{} pixels: a side over {} pixels, the longest a JPEG can have"
TOO_MANY_FRAMES_MESSAGE = ("GIF of {} frames of {}x{} pixels ({} megapixels decoded in all): over the limit of this "
                           "model, {} megapixels (set at export)")
