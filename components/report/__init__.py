"""The evaluation report: test MSE beside its baselines, picture metrics, a PNG grid.

Runs after the Evaluator (TFMA) for what TFMA cannot compute cleanly: PSNR, SSIM and
colorfulness need L with the predicted ab, the mean-ab baseline needs the training split.
"""
# The artifact's type name and the custom properties `colorize run` and `colorize lineage`
# read from ML Metadata (light module: no TFX import).
# "namespace.Name", the namespace a module holding the class: the Kubeflow v2 / Vertex compiler
# rejects other names, and its entrypoint imports the type by this name (components/__init__.py).
ARTIFACT_TYPE = "components.ColorizationReport"
REPORT_FILE = "report.json"
GRID_FILE = "grid.png"
