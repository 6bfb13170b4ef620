"""The config object: file + flags -> one validated PipelineConfig, clear errors otherwise."""
import json
import os

import pytest
from click.testing import CliRunner

from pipelines import cli
from pipelines import config as config_lib


def test_defaults_validate():
  cfg = config_lib.from_dict({})
  assert cfg.ingest.test_images == 1000
  assert cfg.metadata_path.endswith("metadata.db")
  assert os.path.isabs(cfg.pipeline_root) and os.path.isabs(cfg.ingest.data_root)


def test_file_then_flags_override(tmp_path):
  path = tmp_path / "c.json"
  path.write_text(json.dumps({"output_root": "gs://bucket/runs", "train": {"epochs": 3, "batch_size": 4},
                              "ingest": {"categories": ["dog", "cat"]}}))
  cfg = config_lib.load(str(path), {"train.epochs": 5, "ingest.max_images": "20"})
  assert (cfg.train.epochs, cfg.train.batch_size, cfg.ingest.max_images) == (5, 4, 20)
  assert cfg.ingest.categories == ("dog", "cat")
  assert cfg.pipeline_root == "gs://bucket/runs/pipeline/colorize"
  assert cfg.serving_model_dir == "gs://bucket/runs/serving_model/colorize"
  assert not cfg.metadata_path.startswith("gs://")  # SQLite stays local for local runs


def test_yaml_file(tmp_path):
  path = tmp_path / "c.yaml"
  path.write_text("train:\n  learning_rate: 0.01\n  augment: false\n")
  cfg = config_lib.load(str(path))
  assert cfg.train.learning_rate == 0.01 and cfg.train.augment is False


@pytest.mark.parametrize("values, message", [
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"weights": "imagenet21k"}}, "train.weights"),
    ({"train": {"batch_size": "many"}}, "train.batch_size"),
    ({"train": {"global_features": "cached"}}, "train.global_features must be live or precomputed"),
    ({"ingest": {"test_fraction": 1.5}}, "ingest.test_fraction"),
    ({"ingest": {"colour": True}}, "unknown config key ingest.'colour'"),
    ({"evaluate": {"mse_upper_bound": -1}}, "evaluate.mse_upper_bound"),
    ({"pipeline_name": "a b"}, "pipeline_name"),
])
def test_bad_values_name_the_key(values, message):
  with pytest.raises(config_lib.ConfigError, match=message.replace(".", r"\.").replace("'", ".")):
    config_lib.from_dict(values)


def test_missing_and_malformed_files(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="not found"):
    config_lib.load(str(tmp_path / "nope.yaml"))
  bad = tmp_path / "bad.json"
  bad.write_text("{not json")
  with pytest.raises(config_lib.ConfigError, match="cannot parse"):
    config_lib.load(str(bad))


def test_cli_reports_bad_config_as_usage_error(tmp_path):
  result = CliRunner().invoke(cli.main, ["run", "--epochs", "0", "--output-root", str(tmp_path)])
  assert result.exit_code == 2
  assert "train.epochs must be >= 1" in result.output
