"""The data gate: per-photo statistics at ingestion, and StatisticsGen -> ExampleValidator -> DataGate on real spans.

The slow test runs `colorize run` (LocalDagRunner, SQLite ML Metadata, real TFX components)
over one store, span after span, all built from the real coco128 and historical photos: two
ordinary COCO spans pass; toned, shrunk, mostly broken and mostly black-and-white spans are
stopped before training; `data_gate.accept` lets a known change through.
"""
import io
import json
import math

from click.testing import CliRunner
from image_files import rotated_with_exif
import numpy as np
from PIL import Image
import pytest
import yaml

from cli import main as cli
from components.data_gate import checks
from imaging import color
from imaging import images
from lineage import graph
from lineage import summary
from pipelines import config as config_lib
from schemas import features
from schemas import gates

THRESHOLDS = checks.Thresholds(**{k: v for k, v in vars(config_lib.DataGateConfig()).items() if k != "accept"})


def test_photo_statistics_of_a_real_photo(coco128):
  path = coco128 / "train2017" / "000000000009.jpg"
  photo = Image.open(path)
  arrays = images.to_arrays(path.read_bytes())
  assert arrays.source_size == photo.size  # the full size, though draft mode decoded it smaller
  small, _ = images.square_resizes(images.decode(path.read_bytes()))
  assert arrays.colorfulness == pytest.approx(float(color.colorfulness(small)))
  assert arrays.colorfulness > 20  # a bowl of fruit and vegetables
  # Viewed upright, a photo stored sideways with an EXIF rotation is as tall as it is shown.
  sideways = images.to_arrays(rotated_with_exif(photo.convert("RGB")))
  assert sideways.source_size == photo.size


def test_span_shares_count_black_and_white_apart_from_other_skips():
  assert features.GRAYSCALE_SKIP_REASON == images.SkipReason.GRAYSCALE.value
  shares = features.span_shares({"train": 6, "eval": 1, "test": 1}, {"grayscale": 2, "truncated": 3, "missing": 1}, 0)
  assert shares == {features.SKIP_SHARE: 4 / 14, features.BW_SHARE: 2 / 10}
  kept = features.span_shares({"train": 8, "eval": 1, "test": 1}, {}, 5)  # keep_grayscale: 5 of the 10 are B&W
  assert kept == {features.SKIP_SHARE: 0.0, features.BW_SHARE: 0.5}


def test_pooled_moments_are_those_of_the_union():
  rng = np.random.default_rng(0)
  parts = [rng.normal(40, 12, n) for n in (23, 3, 6)]
  pooled = checks.pool([checks.Moments(len(p), p.mean(), p.std()) for p in parts])
  union = np.concatenate(parts)
  assert (pooled.count, pooled.mean, pooled.std) == (32, pytest.approx(union.mean()), pytest.approx(union.std()))
  assert math.isnan(checks.pool([]).mean)


def test_thresholds_stop_what_moved_and_accept_names_it():
  before = {name: checks.Moments(60, 40.0, 10.0) for name in checks.STATISTICS}
  now = dict(before, mean_b=checks.Moments(30, 41.0, 3.0), source_width=checks.Moments(30, 75.0, 10.0))
  shares = {features.SKIP_SHARE: 0.0, features.BW_SHARE: 0.0}
  verdict = checks.judge(now, before, shares, [], THRESHOLDS, [])
  assert not verdict.passed
  assert "mean_b: standard deviation 3.0, last accepted span 10.0 (0.30x" in verdict.line
  assert "source_width: mean 75.0, last accepted span 40.0 (moved 3.5" in verdict.line
  accepted = checks.judge(now, before, shares, [], THRESHOLDS, ["mean_b", "source_width"])
  assert accepted.passed and accepted.accepted == ["mean_b", "source_width"]
  # A schema anomaly is accepted only by 'all'.
  # Too few photos: the shares and the schema only, and the verdict says so.
  few = {name: checks.Moments(8, m.mean, m.std) for name, m in now.items()}
  small = checks.judge(few, before, shares, [], THRESHOLDS, [])
  assert small.passed and "too few photos to compare with the last accepted span: fewer than 20" in small.line
  broken = checks.judge(before, before, shares, ["mean_l in train: Out-of-range values"], THRESHOLDS, ["mean_l"])
  assert not broken.passed and "schema: mean_l in train: Out-of-range values" in broken.line
  assert checks.judge(before, before, shares, ["x"], THRESHOLDS, [checks.ACCEPT_ALL]).passed


def test_gate_config_is_checked():
  with pytest.raises(config_lib.ConfigError, match="data_gate.accept: unknown mean_x"):
    config_lib.from_dict({"data_gate": {"accept": ["mean_x"]}})
  with pytest.raises(config_lib.ConfigError, match="data_gate.max_skip_share must be in"):
    config_lib.from_dict({"data_gate": {"max_skip_share": 1.5}})
  accepted = config_lib.from_dict({"data_gate": {"accept": "mean_b, colorfulness"}}).data_gate.accept
  assert accepted == ("mean_b", "colorfulness")


def _jpeg(rgb: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(rgb).save(buffer, "JPEG", quality=90)
  return buffer.getvalue()


def _toned(data: bytes) -> bytes:
  """A sepia-toned copy (80% sepia, 20% the photo's own colour), as a faded warm print scans."""
  rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)
  sepia = np.clip(rgb @ np.array([[.393, .769, .189], [.349, .686, .168], [.272, .534, .131]]).T, 0, 255)
  return _jpeg(np.rint(0.2 * rgb + 0.8 * sepia).astype(np.uint8))


def _shrunk(data: bytes) -> bytes:
  image = Image.open(io.BytesIO(data)).convert("RGB")
  image.thumbnail((80, 80))
  return _jpeg(np.asarray(image))


def _span(root, number, files):
  folder = root / f"span-{number}"
  folder.mkdir(parents=True)
  for name, data in files:
    (folder / name).write_bytes(data)


def _verdicts(cfg):
  return summary.open_store(cfg.metadata_path).get_artifacts_by_type("Statistics")


def _report(artifact):
  with open(artifact.custom_properties[gates.REPORT].string_value) as f:
    return json.load(f)


def _section(output, title):
  """The lines of one section of the printed run summary."""
  lines = output.splitlines()
  start = lines.index(title) + 1
  end = next((i for i in range(start, len(lines)) if not lines[i].startswith("  ")), len(lines))
  return lines[start:end]


@pytest.fixture(scope="module")
def spans(coco128, historical, tmp_path_factory):
  """Each span through `colorize run` in one store: (exit code, output, verdict artifact) per run."""
  tmp = tmp_path_factory.mktemp("gate")
  photos = sorted((coco128 / "train2017").glob("*.jpg"))
  coco = [(p.name, p.read_bytes()) for p in photos]
  _span(tmp / "data", 1, coco[:64])
  _span(tmp / "data", 2, coco[64:])
  _span(tmp / "data", 3, [(n, _toned(d)) for n, d in coco[64:96]])
  _span(tmp / "data", 4, [(n, _shrunk(d)) for n, d in coco[64:96]])
  # 24 of 32 photos cut short, as an interrupted upload leaves them.
  _span(tmp / "data", 5, [(n, d[:len(d) // 3] if i < 24 else d) for i, (n, d) in enumerate(coco[64:96])])
  # A delivery of 20 COCO photos (one black-and-white) mixed with the 13 historical photographs: 14 of 33.
  _span(tmp / "data", 6, coco[96:116] + [(p.name, p.read_bytes()) for p in sorted(historical.iterdir())])
  settings = {"output_root": str(tmp / "runs"), "train": {"weights": "none"},
              "ingest": {"data_root": str(tmp / "data"), "snapshot": "span-{SPAN}", "snapshot_files": "*"}}
  config_file = tmp / "config.yaml"
  config_file.write_text(yaml.safe_dump(settings))
  accepting = tmp / "accept.yaml"
  accepting.write_text(yaml.safe_dump({**settings, "data_gate": {"accept": [features.BW_SHARE]}}))
  cfg = config_lib.from_dict(settings)

  runs = {}
  # Ordinary spans stop at the gate (nothing to train here); the others run the whole pipeline, to show it stops.
  for name, span, config, until in [("first", 1, config_file, ["--until", "gate"]),
                                    ("ordinary", 2, config_file, ["--until", "gate"]),
                                    ("toned", 3, config_file, []), ("shrunk", 4, config_file, []),
                                    ("broken", 5, config_file, []), ("historical", 6, config_file, []),
                                    ("accepted", 6, accepting, ["--until", "gate"])]:
    result = CliRunner().invoke(cli.main, ["run", "--config", str(config), "--span", str(span), *until])
    runs[name] = (result.exit_code, result.output, max(_verdicts(cfg), key=lambda a: a.id))
  runs["cfg"] = cfg
  return runs


@pytest.mark.slow
def test_ordinary_coco_spans_pass(spans):
  code, output, verdict = spans["first"]
  assert code == 0, output
  assert verdict.custom_properties[gates.PASSED].int_value == 1
  assert "data gate passed: the schema and the span's shares (first span" in output
  code, output, verdict = spans["ordinary"]
  assert code == 0, output
  report = _report(verdict)
  assert report["passed"] and report["span"] == 2 and report["baseline_span"] == 1 and not report["findings"]
  assert "photo statistics against the last accepted span" in verdict.custom_properties[gates.VERDICT].string_value
  # The run summary: the resolved last verdict (span 1's) is no gate of this run; the outputs of steps with long
  # names (last_data_gate_verdict) line up with the others.
  gate_lines = _section(output, "Gates:")
  assert [line.split()[:2] for line in gate_lines] == [["DataGate", "passed"]], output
  outputs = _section(output, "Outputs:")
  assert any(line.split()[0] == "last_data_gate_verdict" for line in outputs), output
  columns = {line.index(" /") + 1 if line[2] != " " else len(line) - len(line.lstrip()) for line in outputs}
  assert len(columns) == 1, output  # every URI and description in one column
  # The first run's resolver found no verdict (TFX records that as FAILED): the run is still complete.
  runs = graph.pipeline_runs(summary.open_store(spans["cfg"].metadata_path))
  assert [r["status"] for r in runs] == ["complete", "complete"] + ["failed"] * 4 + ["complete"]


@pytest.mark.slow
@pytest.mark.parametrize("run, named", [
    ("toned", ["mean_a: standard deviation", "mean_b: standard deviation", "colorfulness: standard deviation"]),
    ("shrunk", ["source_width: mean", "source_height: mean"]),
    ("broken", ["skip_share: 75% of the span (limit 20%)"]),
    ("historical", ["black_and_white_share: 42% of the span (limit 25%)"]),
])
def test_changed_spans_are_stopped_before_training_with_one_line(spans, run, named):
  code, output, verdict = spans[run]
  assert code == 1
  assert verdict.custom_properties[gates.PASSED].int_value == 0
  line = verdict.custom_properties[gates.VERDICT].string_value
  assert line.startswith("data gate stopped the run before training: ")
  for text in named:
    assert text in line
  # The CLI ends with the verdict (after the run summary), with no traceback.
  assert f"Error: {line}" in output.splitlines()
  assert "Traceback" not in output
  # The steps not run were skipped by this run's gate, not by the earlier verdict the resolver found.
  assert [line.split()[:2] for line in _section(output, "Gates:")] == [["DataGate", "STOPPED"]], output
  assert "last_data_gate_verdict stopped" not in output and "Nothing pushed: DataGate: " in output
  # Compared with span 2, the last span that passed: a stopped span never becomes the reference.
  assert _report(verdict)["baseline_span"] == 2
  store = summary.open_store(spans["cfg"].metadata_path)
  assert not store.get_executions_by_type("tfx.components.trainer.component.Trainer")


@pytest.mark.slow
def test_accepting_a_known_change_passes_and_makes_the_span_the_reference(spans):
  code, output, verdict = spans["accepted"]
  assert code == 0, output
  report = _report(verdict)
  assert report["passed"] and report["accepted"] == [features.BW_SHARE]
  assert "accepted: black_and_white_share: 42%" in verdict.custom_properties[gates.VERDICT].string_value
  with open(verdict.uri + "/baseline.json") as f:
    assert json.load(f)["span"] == 6
