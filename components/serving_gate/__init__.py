"""The serving gate: the candidate SavedModel, loaded as serving loads it, must answer real photos.

TFX's InfraValidator does this with TF Serving in Docker or Kubernetes; here (and in the
project image on Vertex) the model is loaded by plain TensorFlow in a clean process
(probe.py) that imports no project code. Its output is TFX's standard InfraBlessing, which
the Pusher takes as `infra_blessing`, carrying schemas/gates.py's properties.
"""
import os

PHOTOS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "photos")
JPEG_PHOTO = "000000000072.jpg"
ALPHA_PHOTO = "000000000073_oval_alpha.png"
REPORT_FILE = "serving_gate.json"
