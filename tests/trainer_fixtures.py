"""Session fixtures for the trainer/serving tests (loaded with `pytest_plugins`)."""
import keras
import numpy as np
import pytest

from schemas import features

# The test model's last-layer bias: a mild warm tint (a* ~ +13, b* ~ +26 before the
# random part), so colorized photos really carry colour through the whole path.
TINT_BIAS = (0.1, 0.2)


@pytest.fixture(scope="session")
def serving_model(tmp_path_factory):
  """(keras model, SavedModel dir): random weights ('none', seeded) with a tinted last
  layer, compiled with Adam slots built (which the export must leave out), exported."""
  from trainer import export
  from trainer import model as model_lib
  keras.utils.set_random_seed(3)
  model = model_lib.compile_model(model_lib.build_model("none"), 1e-3)
  model.optimizer.build(model.trainable_variables)
  last = model.get_layer(features.AB_KEY)
  last.set_weights([last.get_weights()[0], np.array(TINT_BIAS, np.float32)])
  path = tmp_path_factory.mktemp("serving") / "model"
  export.export(model, str(path))
  return model, path
