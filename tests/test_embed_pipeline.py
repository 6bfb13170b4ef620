"""The Embed step in the local pipeline (LocalDagRunner, SQLite ML Metadata): TFX's cache
re-runs it when the weights change and not when only training settings do."""
import json
import pathlib

import pytest

from components import embed
from lineage import summary
from pipelines import config
from pipelines import local_runner
from schemas import artifact_files
from trainer import model as model_lib


@pytest.mark.slow
def test_embedding_reruns_when_the_weights_change_not_when_training_settings_do(coco128, tmp_path):
  settings = {"output_root": str(tmp_path / "runs"),
              "ingest": {"data_root": str(coco128), "max_images": 8, "test_fraction": 0.25}}

  def run_until_embed(**train):
    cfg = config.from_dict({**settings, "train": {"weights": "none", "global_features": "precomputed", **train}})
    local_runner.run(cfg, last_stage="embed")
    store = summary.open_store(cfg.metadata_path)
    _, outputs = summary.latest_run_outputs(store, cfg.pipeline_name)
    embedded = [artifact for component, artifact in outputs if component == "Embed"]
    assert len(embedded) == 1
    return embedded[0], len(store.get_artifacts_by_type("Examples"))

  first, stored = run_until_embed()
  assert stored == 2  # the ingested Examples and the embedded ones
  assert first.custom_properties[embed.WEIGHTS_PROPERTY].string_value == "none"
  assert sum(json.loads(first.custom_properties["split_counts"].string_value).values()) > 0

  again, stored = run_until_embed(epochs=9, batch_size=3, learning_rate=0.01, augment=False, seed=7)
  assert again.id == first.id and stored == 2  # cache hit: training settings are not the embedding's

  # A weights file (the same values as "none", saved): another weights setting, a new embedding.
  weights_file = tmp_path / "irv2.weights.h5"
  model_lib.global_model(model_lib.build_embedder("none")).save_weights(weights_file)
  # The cached ingestion's files cut short since: the new embedding refuses them with one line naming them.
  store = summary.open_store(config.from_dict(settings).metadata_path)
  ingested = next(a for a in store.get_artifacts_by_type("Examples") if a.id != first.id)
  shard = sorted(pathlib.Path(ingested.uri, "Split-train").iterdir())[0]
  written = shard.read_bytes()
  shard.write_bytes(written[:100])
  with pytest.raises(artifact_files.DamagedArtifactError,
                     match=f"the Examples #{ingested.id} at {ingested.uri} is damaged: Split-train/{shard.name}"):
    run_until_embed(weights=str(weights_file))
  shard.write_bytes(written)
  changed, stored = run_until_embed(weights=str(weights_file))
  assert changed.id != first.id and stored == 3
  assert changed.custom_properties[embed.WEIGHTS_PROPERTY].string_value == str(weights_file)
  # Same values, same fingerprint: the Trainer would accept either embedding with either setting.
  assert (changed.custom_properties[embed.FINGERPRINT_PROPERTY].string_value
          == first.custom_properties[embed.FINGERPRINT_PROPERTY].string_value)
