"""The model card: what a pushed model is, what it was trained and judged on, and what it is for."""
ARTIFACT_TYPE = "components.ModelCardArtifact"  # importable by this name: components/__init__.py says why
MARKDOWN_FILE = "model_card.md"
HTML_FILE = "model_card.html"
GRID_FILE = "grid.png"
PUSHED_FOLDER = "model_card"            # inside each pushed version: <serving_model_dir>/<version>/model_card/
LOCATION = "card_location"              # custom property: where the pushed copy is ("" when nothing was pushed)
