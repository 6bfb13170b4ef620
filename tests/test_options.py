"""The flags are generated from the config's fields: every key has one, with its help, and sets it."""
import os
import subprocess
import sys

import click
from click.testing import CliRunner
import pytest

from cli import main as cli
from cli import options
from pipelines import cloud_config
from pipelines import config as config_lib
from schemas import config_fields
from trainer import settings

# A mapping key's flag takes text the test cannot make up from the default: one sample each.
MAPPING_SAMPLES = {
    "cloud.labels": ("team=vision", {"team": "vision"}),
    "cloud.step_resources": ("{Trainer: {cpu: 2}}", {"Trainer": cloud_config.StepResources(cpu=2.0)}),
}
HEAVY = ("tensorflow", "tfx", "ml_metadata", "numpy", "PIL", "apache_beam")


def _flags(command: click.Command):
  return {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def _sample(key: options.Key):
  """(command-line text, the value the key should then hold), unlike the default."""
  d = key.default
  if key.dotted in MAPPING_SAMPLES:
    return MAPPING_SAMPLES[key.dotted]
  if key.dotted in options.CHOICES:
    choice = next(c for c in options.CHOICES[key.dotted] if c != d)
    return choice, choice
  if isinstance(d, bool):
    return None, not d
  if isinstance(d, int):
    return str(d + 3), d + 3
  if isinstance(d, float):
    return str(d / 2 or 0.5), d / 2 or 0.5
  if isinstance(d, tuple):
    return ("a,b", ("a,b",)) if key.dotted in options.WHOLE_VALUES else ("a,b", ("a", "b"))
  assert isinstance(d, str), f"{key.dotted}: add a sample for a {type(d).__name__} key to MAPPING_SAMPLES"
  return "/tmp/sample-value", "/tmp/sample-value"


def _every_key():
  return list(options.keys())


def test_every_config_field_is_declared_with_help_text():
  for key in _every_key():
    assert len(key.help) > 10, f"{key.dotted} has no help: declare it with config_fields.setting(default, 'help')"


@pytest.mark.parametrize("key", _every_key(), ids=lambda k: k.dotted)
def test_a_flag_sets_its_key(key, monkeypatch):
  # Ranges and cross-key rules are test_config.py's; here only flag -> key -> value.
  for section in (config_lib.PipelineConfig, settings.TrainConfig, cloud_config.CloudConfig):
    monkeypatch.setattr(section, "validate", lambda self: self)
  command = cli.main.commands["compile" if key.dotted.startswith("cloud.") else "run"]
  flag = _flags(command)[key.flag.split("/")[0]]
  assert flag.help == key.help or flag.help.startswith(key.help + "  [default: ")
  text, expected = _sample(key)
  on, _, off = key.flag.partition("/")
  args = [on if expected else off] if isinstance(key.default, bool) else [on, text]
  params = command.make_context(command.name, args).params
  cfg = options.load_config(None, {k: v for k, v in params.items() if k in {x.param for x in _every_key()}})
  value = cfg
  for part in key.dotted.split("."):
    value = getattr(value, part)
  assert value == expected


def test_each_command_shows_only_the_flags_it_uses():
  ingest, run, compile_ = (_flags(cli.main.commands[c]) for c in ("ingest", "run", "compile"))
  for key in _every_key():
    section = key.dotted.split(".")[0] if "." in key.dotted else ""
    flag = key.flag.split("/")[0]
    assert (flag in ingest) == (section in ("", "ingest")), key.dotted
    assert (flag in run) == (section != "cloud"), key.dotted
    assert flag in compile_, key.dotted


def test_every_flag_of_every_command_has_help():
  def walk(command, path):
    for param in command.params:
      assert isinstance(param, click.Argument) or param.help, f"{path} {param.opts[0]} has no help"
    for name, sub in getattr(command, "commands", {}).items():
      walk(sub, f"{path} {name}")

  walk(cli.main, "colorize")


def test_todays_flag_names_still_work():
  flags = _flags(cli.main.commands["compile"])
  for flag in ("--data-root", "--epochs", "--mse-upper-bound", "--beam-arg", "--no-cache", "--drop-grayscale",
               "--label", "--gpu-type", "--trainer-replicas", "--no-vertex-training", "--deploy", "--endpoint-name",
               "--dataflow-max-workers", "--test-fraction", "--categories", "--global-features"):
    assert flag in flags, flag


def test_a_new_setting_gets_a_flag_without_code():
  import dataclasses
  from typing import Optional

  @dataclasses.dataclass
  class Report:
    dpi: int = config_fields.setting(96, "Dots per inch.")

  @dataclasses.dataclass
  class Top:
    name: str = config_fields.setting("x", "A name.")
    report: Report = dataclasses.field(default_factory=Report)
    extra: Optional[Report] = None
    by_step: dict = config_fields.setting({}, "By step.")

  walked = [(dotted, default) for dotted, _, default in config_fields.leaves(Top)]
  assert walked == [("name", "x"), ("report.dpi", 96), ("extra.dpi", 96), ("by_step", {})]
  assert options.flag_name("evaluate.report_dpi", 96) == "--report-dpi"
  assert options.flag_name("cloud.deploy.autoscale", True) == "--deploy-autoscale/--no-deploy-autoscale"


def test_a_bundled_config_by_name():
  assert config_lib.load("demo").train.epochs == config_lib.load(os.path.join(config_lib.CONFIGS_DIR,
                                                                               "demo.yaml")).train.epochs
  result = CliRunner().invoke(cli.main, ["run", "--config", "nodemo"])
  assert result.exit_code == 2 and "bundled configs: demo, vertex" in result.output


def test_help_imports_nothing_heavy():
  code = ("import sys\nfrom cli import main\ntry:\n  main.main(['--help'])\nexcept SystemExit:\n  pass\n"
          f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:]


@pytest.mark.parametrize("pattern", [
    "span-{SPAN}", "span-{SPAN:3}", "{YYYY}-{MM}-{DD}", "span-{SPAN}/v{VERSION}", "{YYYY}{MM}{DD}/v{VERSION:2}",
    "{YYYY}-{MM}", "span-{SPAN}-{SPAN}", "v{VERSION}", "{SPAN}/{YYYY}{MM}{DD}", "s{SPAN}/v{VERSION}{VERSION}",
    "{YYYY}{YYYY}{MM}{DD}", "plain", "{SPAN:}"])
def test_snapshot_specs_are_checked_as_tfx_checks_them(pattern):
  # The config check answers without importing TensorFlow; TFX's driver must agree with it.
  from tfx.components.example_gen import utils
  from tfx.proto import example_gen_pb2

  from components.ingest import snapshot

  try:
    spans, dates, _ = utils.verify_split_pattern_specs(example_gen_pb2.Input.Split(name="x", pattern=pattern + "/*"))
    tfx_ok = spans or dates
  except ValueError:
    tfx_ok = False
  assert (snapshot.spec_problem(pattern) is None) == bool(tfx_ok), snapshot.spec_problem(pattern)


def _output_options(command, path="colorize"):
  """(command path, option) of every option naming where a command writes, in every command."""
  for param in command.params:
    writes = any(word in o for o in param.opts for word in ("--output", "--dest", "--workdir"))
    # --output-root is a config key (where runs go), checked with the config.
    if isinstance(param, click.Option) and writes and "--output-root" not in param.opts:
      yield path, param
  for name, sub in getattr(command, "commands", {}).items():
    yield from _output_options(sub, f"{path} {name}")


def test_every_output_option_is_checked_before_any_work(tmp_path):
  found = list(_output_options(cli.main))
  assert len(found) >= 6, found
  for path, param in found:
    assert isinstance(param.type, options.OutputPath), f"{path} {param.opts[0]}"
  (tmp_path / "a_file").write_text("")
  os.symlink("nowhere", tmp_path / "broken")
  os.symlink("loop", tmp_path / "loop")
  os.mkfifo(tmp_path / "pipe")
  missing, under_file = str(tmp_path / "missing" / "x.json"), str(tmp_path / "a_file" / "x")
  for args, message in [
      (["lineage", "--output", missing], f"cannot write {missing!r}: {tmp_path / 'missing'} does not exist"),
      (["lineage", "model", "--format", "json", "--output", missing], "does not exist: create it first"),
      (["compile", "--output", under_file], f"{tmp_path / 'a_file'} is not a folder"),
      (["download-coco", "--dest", str(tmp_path / "a_file" / "coco" / "x")], f"{tmp_path / 'a_file'} is not a folder"),
      (["photos", str(tmp_path), "-o", str(tmp_path / "broken"), "--model", str(tmp_path)], "it is a broken link"),
      (["lineage", "--output", ""], "an empty path names nothing to write"),
      (["lineage", "--output", str(tmp_path / "loop")], "it is a link loop"),
      # Writing into a FIFO would wait for a reader; a folder that is one cannot hold anything.
      (["compile", "--output", str(tmp_path / "pipe")], "it is a named pipe (FIFO)"),
      (["rehearse", str(tmp_path / "a_file"), "--workdir", str(tmp_path / "pipe")], "it is a named pipe (FIFO)"),
  ]:
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2 and message in result.output.splitlines()[-1], (args, result.output)
  assert not (tmp_path / "missing").exists()
  written = CliRunner().invoke(cli.main, ["lineage", "--metadata-file", str(tmp_path / "none.db"), "--output",
                                          str(tmp_path / "a_file")])  # an existing file: replaced, not refused
  assert written.exit_code == 1 and "no ML Metadata store" in written.output, written.output
