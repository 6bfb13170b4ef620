"""The config object: file + flags -> one validated PipelineConfig, clear errors otherwise."""
import json
import os
import pathlib
import re

from click.testing import CliRunner
import pytest

from cli import main as cli
from pipelines import cloud_config
from pipelines import config as config_lib

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_defaults_validate():
  cfg = config_lib.from_dict({})
  assert cfg.ingest.test_fraction == 0.2 and cfg.ingest.snapshot == "" and cfg.ingest.span == -1
  assert cfg.metadata_path.endswith("metadata.db")
  assert os.path.isabs(cfg.pipeline_root) and os.path.isabs(cfg.ingest.data_root)


def test_file_then_flags_override(tmp_path):
  path = tmp_path / "c.json"
  path.write_text(json.dumps({"output_root": "gs://bucket/runs", "train": {"epochs": 3, "batch_size": 4},
                              "ingest": {"categories": ["dog", "cat"]}}))
  cfg = config_lib.load(str(path), {"train.epochs": 5, "ingest.max_images": 20})
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
    ({"ingest": {"colour": True}}, "unknown config key ingest.colour"),
    ({"ingest": {"data_root": "/photos [2020]"}}, "ingest.data_root must not contain"),
    ({"output_root": "/runs/[2020]"}, "output_root must not contain *, ? or ["),
    ({"ingest": {"data_root": "/photos/$HOME", "snapshot": "span-{SPAN}"}}, "with ingest.snapshot, ingest.data_root"),
    ({"ingest": {"snapshot": "span-{SPAN}|{SPAN:2}x"}}, "ingest.snapshot must not contain"),
    ({"ingest": {"snapshot": "span-*"}}, "ingest.snapshot must be a folder below data_root without wildcards"),
    ({"ingest": {"snapshot": "../span-{SPAN}"}}, "ingest.snapshot must be a folder below data_root"),
    ({"ingest": {"snapshot": "weekly"}}, "ingest.snapshot 'weekly' needs"),
    ({"ingest": {"snapshot": "{YYYY}-{MM}"}}, "Exactly one of each date spec"),
    ({"ingest": {"snapshot": "span-{SPAN}-{SPAN}"}}, "Only one"),
    ({"ingest": {"snapshot": "v{VERSION}"}}, "Version spec provided, but Span or Date spec is not present"),
    ({"ingest": {"snapshot_files": "train2017/*"}}, "ingest.snapshot_files must be a glob starting with a wildcard"),
    ({"ingest": {"snapshot": "span-{SPAN}", "snapshot_files": "*/{SPAN}"}}, "belong in ingest.snapshot"),
    ({"ingest": {"span": 3}}, "ingest.span 3 needs ingest.snapshot"),
    ({"ingest": {"snapshot": "span-{SPAN}", "span": -2}}, "ingest.span must be -1"),
    ({"ingest": {"train_spans": 0}}, "ingest.train_spans must be >= 1"),
    ({"evaluate": {"mse_upper_bound": -1}}, "evaluate.mse_upper_bound"),
    ({"pipeline_name": "a b"}, "pipeline_name"),
])
def test_bad_values_name_the_key(values, message):
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.from_dict(values)


@pytest.mark.parametrize("values, message", [
    # Wrong types are refused, not coerced.
    ({"train": {"epochs": "3"}}, "train.epochs must be a whole number, got '3'"),
    ({"train": {"epochs": 2.5}}, "train.epochs must be a whole number, got 2.5"),
    ({"train": {"epochs": True}}, "train.epochs must be a whole number, got True"),
    ({"train": {"augment": "no"}}, "train.augment must be true or false, got 'no'"),
    ({"train": {"augment": 0}}, "train.augment must be true or false, got 0"),
    ({"train": {"weights": 5}}, "train.weights must be a string, got 5"),
    ({"ingest": {"categories": [1, 2]}}, "ingest.categories must be a list of strings"),
    ({"output_root": None}, "output_root must be a string, got None"),
    # Non-finite numbers.
    ({"train": {"learning_rate": float("nan")}}, "train.learning_rate must be a number (finite), got nan"),
    ({"evaluate": {"mse_upper_bound": float("inf")}}, "evaluate.mse_upper_bound must be a number (finite)"),
    # Sections that are not mappings.
    ({"train": 5}, "train must be a mapping of keys to values, got 5"),
    ({"ingest": ["a"]}, "ingest must be a mapping of keys to values"),
    ({"cloud": "yes"}, "cloud must be a mapping of keys to values"),
    ({"cloud": {"dataflow": 3}}, "cloud.dataflow must be a mapping of keys to values"),
    ({"cloud": {"training": {"replica_count": "2"}}}, "cloud.training.replica_count must be a whole number"),
    # Empty values where a value is needed.
    ({"ingest": {"data_root": ""}}, "ingest.data_root must be set"),
    ({"output_root": ""}, "output_root must be set"),
])
def test_values_of_the_wrong_type_are_refused(values, message):
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.from_dict(values)


def test_an_empty_section_means_its_defaults(tmp_path):
  path = tmp_path / "c.yaml"
  path.write_text("train:\nevaluate:\n")
  assert config_lib.load(str(path)).train == config_lib.from_dict({}).train


@pytest.mark.parametrize("text, message", [
    ("train: 5\n", "train must be a mapping"), ("- a\n- b\n", "must hold a mapping"),
    ("train: {epochs: [1]}\n", "train.epochs must be a whole number"),
    ("ingest:\n  max_images: .nan\n", "ingest.max_images must be a whole number"),
    ("train: {epochs: [1\n", "cannot parse config file"),  # a YAML syntax error
    ("train:\n\tepochs: 3\n", "cannot parse config file"),  # a tab
    ("train: {epochs: 100000000000000000000000}\n", "train.epochs must be a whole number (64-bit)"),
    ("train: {epochs: 1000000000}\n", "train.epochs must be from 1 to 100,000"),
    ("train: {steps_per_epoch: 1000000000000}\n", "train.steps_per_epoch must be at most 1,000,000,000"),
    ("train: {batch_size: 10000000}\n", "train.batch_size must be from 1 to 65,536"),
    ("[" * 1_100, "cannot parse config file"),  # nesting deeper than the parser goes
    ("train: {epochs: 3}\n".encode("utf-16"), "is not UTF-8 text (byte 0xff at offset 0)"),
    ("ingest: {categories: caf\u00e9}\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 24)"),
    (b"\xef\xbb\xbftrain: {epochs: 0}\n", "train.epochs must be from 1"),  # a UTF-8 BOM is fine
    (b"x" * 1_000_001, "is over 1000 kB"),
    # A key twice: PyYAML would keep the last silently.
    ("train:\n  epochs: 3\n  epochs: 5\n", "key 'epochs' appears twice in one mapping"),
    ("? {a: 1}\n: 2\n", "found unhashable key"),
])
def test_cli_reports_a_bad_config_file_in_one_line(tmp_path, text, message):
  path = tmp_path / "c.yaml"
  path.write_bytes(text.encode() if isinstance(text, str) else text)
  _assert_one_line_usage_error(["run", "--config", str(path), "--output-root", str(tmp_path)], message)


def _assert_one_line_usage_error(args, message, env=None):
  result = CliRunner().invoke(cli.main, args, env=env)
  assert result.exit_code == 2, result.output
  assert result.exception is None or isinstance(result.exception, SystemExit)
  error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
  assert len(error_lines) == 1 and "Traceback" not in result.output, result.output
  assert message in error_lines[0], result.output


def test_config_paths_that_are_no_files_are_one_line(tmp_path):
  os.mkfifo(tmp_path / "fifo.yaml")  # opening it for reading would wait for a writer for ever
  (tmp_path / "folder.yaml").mkdir()
  for name, message in (("fifo.yaml", "is not a regular file"), ("folder.yaml", "is a directory"),
                        ("missing.yaml", "config file not found")):
    _assert_one_line_usage_error(["run", "--config", str(tmp_path / name), "--output-root", str(tmp_path)], message)


@pytest.mark.parametrize("variable, value, message", [
    ("TF_CONFIG", "{not json", "TF_CONFIG is not a cluster description"),
    ("TF_CONFIG", "[1, 2]", "TF_CONFIG must be a JSON object"),
    ("TF_CONFIG", '{"cluster": ["w:1"]}', "TF_CONFIG: 'cluster' must map roles"),
    ("TF_CONFIG", '{"cluster": {"worker": "w:1"}}', "cluster.worker must be a list of \"host:port\" strings"),
    ("TF_CONFIG", '{"cluster": {"worker": [1, 2]}}', "cluster.worker must be a list"),
    ("TF_CONFIG", '{"cluster": {"worker": ["w:1"]}, "task": {"type": ["worker"]}}', "a role name as 'type'"),
    ("TF_CONFIG", '{"cluster": {"worker": ["w:1"]}, "task": {"type": "worker", "index": true}}',
     "a whole number as 'index'"),
    ("TF_CONFIG", '{"cluster": {"worker": ["w:1"]}, "task": "worker"}', "'task' must be"),
    ("CLUSTER_SPEC", '{"cluster": {"workerpool0": ["c:1"]}, "task": {"type": "workerpool0", "index": 3}}',
     "is not in its cluster"),
])
def test_malformed_cluster_descriptions_are_one_line(tmp_path, variable, value, message):
  _assert_one_line_usage_error(["run", "--output-root", str(tmp_path)], message, env={variable: value})


def test_every_config_the_docs_mention_is_a_file_that_loads():
  mentioned = set()
  for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
    mentioned |= set(re.findall(r"configs/[\w.-]+\.yaml", doc.read_text()))
  shipped = {f"configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")}
  assert mentioned and mentioned <= shipped, mentioned - shipped
  for name in sorted(shipped):
    cfg = config_lib.load(str(REPO / name))
    if cfg.cloud is not None:
      cloud_config.require(cfg)  # what compile/submit/schedule check


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
  assert "train.epochs must be from 1 to 100,000" in result.output


def test_a_setting_carries_its_help_and_a_fresh_mutable_default():
  import dataclasses

  from schemas import config_fields

  @dataclasses.dataclass
  class Section:
    size: int = config_fields.setting(3, "How many.")
    tags: dict = config_fields.setting({"a": "b"}, "Labels.")

  first, second = Section(), Section()
  first.tags["c"] = "d"
  assert second.tags == {"a": "b"} and second.size == 3
  assert {f.name: f.metadata[config_fields.HELP] for f in dataclasses.fields(Section)} == {
      "size": "How many.", "tags": "Labels."}
