"""The evaluation report: test MSE beside its baselines, picture metrics, a PNG grid.

Runs after the Evaluator (TFMA) for what TFMA cannot compute cleanly: PSNR, SSIM and
colorfulness need L with the predicted ab, the mean-ab baseline needs the training split.
"""
# The artifact's type name and the custom properties `colorize run` and `colorize lineage`
# read from ML Metadata (light module: no TFX import).
# "namespace.Name": the Kubeflow v2 / Vertex compiler rejects custom types without a namespace.
ARTIFACT_TYPE = "colorize.ColorizationReport"
REPORT_FILE = "report.json"
GRID_FILE = "grid.png"
