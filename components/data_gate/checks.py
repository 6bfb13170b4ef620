"""The data gate's judgement: a span's statistics against the schema, its shares and the last accepted span.

Pure functions on plain numbers (no TFX, no Beam), so every threshold is testable alone.
The executor (executor.py) feeds them StatisticsGen's statistics, ExampleValidator's schema
anomalies and the skip report's counts.

The checks, each a name the report and `data_gate.accept` use:
  schema      ExampleValidator's anomalies against schemas/schema.pbtxt: a missing or mistyped
              feature, a value outside its domain. Never accepted by `data_gate.accept` but by 'all'.
  skip_share, black_and_white_share  (schemas/features.py defines them) above their maxima:
              absolute limits, the same for every span, first one included.
  each photo statistic (features.PHOTO_FLOAT_STATS + PHOTO_INT_STATS) against the last accepted
              span: its mean moved by more than max_mean_shift of that span's standard
              deviations, or its standard deviation changed by more than max_spread_ratio
              either way. Means and standard deviations pool every split of the span. Only
              with at least min_photos photos: the standard deviation of 8 ordinary COCO photos
              was 0.31x that of 62 on a*, a "change" a larger span would not show.
Why not TFDV's Jensen-Shannon comparator: on 30-photo COCO spans its histogram distance between
two ordinary spans reached 0.28 and a sepia-toned span scored 0.47, too close for one threshold;
a mean shift or a spread ratio separates them by 2x or more (README, "Data gate").
"""
import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Sequence

from schemas import features

SCHEMA = "schema"
ACCEPT_ALL = "all"
STATISTICS = features.PHOTO_FLOAT_STATS + features.PHOTO_INT_STATS
SHARES = (features.SKIP_SHARE, features.BW_SHARE)


class Stopped(RuntimeError):  # noqa: N818 (a verdict, as images.Skip)
  """The data gate stopped the run; the message is the verdict's one line."""


@dataclasses.dataclass(frozen=True)
class Moments:
  """A statistic over a span: how many photos, their mean and (population) standard deviation."""
  count: int
  mean: float
  std: float


@dataclasses.dataclass(frozen=True)
class Thresholds:
  max_mean_shift: float
  max_spread_ratio: float
  max_skip_share: float
  max_bw_share: float
  min_photos: int


@dataclasses.dataclass(frozen=True)
class Verdict:
  passed: bool
  line: str               # one line: what stopped the run, or what was checked
  findings: List[str]     # every check that failed, accepted or not
  accepted: List[str]     # the failed checks `data_gate.accept` let through


def pool(splits: Sequence[Moments]) -> Moments:
  """The moments of the union of splits (exact: population variances)."""
  count = sum(s.count for s in splits)
  if not count:
    return Moments(0, math.nan, math.nan)
  mean = sum(s.count * s.mean for s in splits) / count
  second = sum(s.count * (s.std ** 2 + s.mean ** 2) for s in splits) / count
  return Moments(count, mean, math.sqrt(max(second - mean ** 2, 0.0)))


def drift(name: str, now: Moments, before: Moments, thresholds: Thresholds) -> Optional[str]:
  """What moved too far in statistic `name` since the last accepted span, or None."""
  if not now.count:
    return f"{name}: no values in this span"
  shift = abs(now.mean - before.mean) / max(before.std, 1e-9)
  if shift > thresholds.max_mean_shift:
    return (f"{name}: mean {now.mean:.1f}, last accepted span {before.mean:.1f} (moved {shift:.1f} of its "
            f"standard deviations {before.std:.1f}; limit {thresholds.max_mean_shift:g})")
  ratio = max(now.std, 1e-9) / max(before.std, 1e-9)
  if max(ratio, 1 / ratio) > thresholds.max_spread_ratio:
    return (f"{name}: standard deviation {now.std:.1f}, last accepted span {before.std:.1f} ({ratio:.2f}x; "
            f"limit {thresholds.max_spread_ratio:g}x either way)")
  return None


def share_findings(shares: Mapping[str, float], thresholds: Thresholds) -> Dict[str, str]:
  limits = {features.SKIP_SHARE: thresholds.max_skip_share, features.BW_SHARE: thresholds.max_bw_share}
  return {name: f"{name}: {shares[name]:.0%} of the span (limit {limits[name]:.0%})"
          for name in SHARES if shares[name] > limits[name]}


def judge(statistics: Mapping[str, Moments], baseline: Optional[Mapping[str, Moments]],
          shares: Mapping[str, float], schema_problems: Sequence[str], thresholds: Thresholds,
          accept: Sequence[str]) -> Verdict:
  """Every check of the module doc; `baseline` None for the first span (no accepted span before)."""
  found: Dict[str, str] = {}
  if schema_problems:
    found[SCHEMA] = "schema: " + "; ".join(schema_problems)
  found.update(share_findings(shares, thresholds))
  compared = baseline is not None and min(m.count for m in statistics.values()) >= thresholds.min_photos
  if compared:
    for name in STATISTICS:
      problem = drift(name, statistics[name], baseline[name], thresholds)
      if problem:
        found[name] = problem
  accepted = [name for name in found if ACCEPT_ALL in accept or (name in accept and name != SCHEMA)]
  stopping = [found[name] for name in found if name not in accepted]
  checked = (f"the schema, the span's shares and {len(STATISTICS)} photo statistics against the last accepted span"
             if compared else "the schema and the span's shares (" + (
                 "first span: no accepted span to compare with" if baseline is None else
                 f"too few photos to compare with the last accepted span: fewer than {thresholds.min_photos}") + ")")
  if stopping:
    line = "data gate stopped the run before training: " + "; ".join(stopping)
    if not accepted:
      line += " (accept a known change with data_gate.accept)"
  else:
    line = f"data gate passed: {checked}"
    if accepted:
      line += "; accepted: " + "; ".join(found[name] for name in accepted)
  return Verdict(passed=not stopping, line=line, findings=list(found.values()), accepted=accepted)


def to_json(moments: Mapping[str, Moments]) -> Dict[str, Dict[str, float]]:
  return {name: dataclasses.asdict(m) for name, m in moments.items()}


def from_json(values: Mapping[str, Mapping[str, float]]) -> Dict[str, Moments]:
  return {name: Moments(int(v["count"]), float(v["mean"]), float(v["std"])) for name, v in values.items()}

