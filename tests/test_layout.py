"""The house rules a newcomer relies on: imports point one way, the model imports without TensorFlow."""
import ast
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
# Lower layers never import higher ones, nor packages beside them on the same layer.
LAYERS = {
    "schemas": 0,
    "imaging": 1,
    # Below the components: the endpoint rollout probes a deployed model with the users' own client.
    "serving": 2,
    "components": 3, "trainer": 3,
    "pipelines": 4,
    "cloud": 5, "lineage": 5,
    "cli": 6,
}


def _project_imports(path: pathlib.Path):
  """(line, package) for every import of a project package in the file, at any depth."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split(".")[0]
      if top in LAYERS:
        yield node.lineno, top


def test_imports_point_one_way():
  wrong = []
  for package, layer in LAYERS.items():
    for path in sorted((REPO / package).rglob("*.py")):
      for line, imported in _project_imports(path):
        if imported != package and LAYERS[imported] >= layer:
          wrong.append(f"{path.relative_to(REPO)}:{line} ({package}, layer {layer}) imports {imported} "
                       f"(layer {LAYERS[imported]})")
  assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_every_package_has_a_layer():
  packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
  assert packages == set(LAYERS)


def test_model_definition_and_feature_constants_import_without_tensorflow():
  # The model is also run through another Keras backend on GPU: nothing it imports from this
  # project may need TensorFlow. Keras itself is a stand-in here (its default backend is TF, and
  # no other backend is installed); importing TensorFlow fails.
  code = ("import sys\n"
          "class Anything:\n"
          "  def __getattr__(self, name): return Anything()\n"
          "  def __call__(self, *args, **kwargs): return Anything()\n"
          "sys.modules['tensorflow'] = None\n"
          "sys.modules['keras'] = sys.modules['keras.layers'] = Anything()\n"
          "import schemas.features, schemas.signatures, trainer.settings, trainer.model\n")
  env = dict(os.environ, PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
