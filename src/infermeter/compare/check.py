"""The regression check: pair baseline and candidate runs, and decide which metrics regressed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from ..errors import UsageError
from ..result import Estimate, Result
from ..stats import CONFIDENCE
from .table import _check_metrics, _describe_key, _has_samples, _key, _metric_cells, _Model, _untested_note, _value

__all__ = [
    "DEFAULT_CHECK_METRICS", "REGRESSION_RULE", "PAIRING_RULE", "MetricCheck", "PairCheck", "CheckOutcome",
    "check_regression", "pair_runs", "environment_differences",
]

DEFAULT_CHECK_METRICS: tuple[str, ...] = ("p50", "p99")

REGRESSION_RULE = (
    "a metric regressed when the difference is significant (bootstrap CI of the candidate/baseline "
    "ratio excludes 1, |ratio - 1| >= min effect, and for p50 a Mann-Whitney U test rejects too) "
    "AND the ratio is worse than 1 + max regression (latency: candidate/baseline; throughput, where "
    "lower is worse: baseline/candidate)"
)
PAIRING_RULE = (
    "runs are paired by (spec, batch size, scenario); a NAME=VALUE tag selects the newest ok run "
    "carrying it for each; without --candidate, each baseline is checked against the newest ok run "
    "of the same key that is not a baseline run (and does not carry the baseline's tag)"
)


class MetricCheck(_Model):
    metric: str
    unit: Literal["s", "samples/s"]
    baseline: Estimate | None
    candidate: Estimate | None
    ratio: Estimate | None
    significant: bool
    regressed: bool
    verdict: str


class PairCheck(_Model):
    baseline_id: str
    candidate_id: str
    spec: str
    batch_size: int
    scenario: str
    metrics: list[MetricCheck] = Field(default_factory=list)
    p_value: float | None = None
    regressed: bool = False
    failed: str | None = Field(None, description="the candidate has no samples to check (failed run)")
    environment: list[str] = Field(default_factory=list, description="environment differences worth noting")
    notes: list[str] = Field(default_factory=list)


class CheckOutcome(_Model):
    passed: bool
    max_regression: float
    min_effect: float
    confidence: float
    metrics: list[str]
    pairs: list[PairCheck]
    unpaired: list[str] = Field(default_factory=list, description="runs that found no partner")
    rule: str = REGRESSION_RULE
    pairing: str = PAIRING_RULE



def environment_differences(a: Result, b: Result) -> list[str]:
    """What differs between where and how two runs were measured, worth a reader's attention."""
    out: list[str] = []

    def diff(label: str, x: Any, y: Any) -> None:
        if x != y and (x not in (None, "") or y not in (None, "")):
            out.append(f"{label}: {x if x not in (None, '') else '–'} → {y if y not in (None, '') else '–'}")

    for label in ("backend", "device", "dtype"):
        diff(label, getattr(a.model, label), getattr(b.model, label))
    diff("threads", a.config.get("threads"), b.config.get("threads"))
    ea, eb = a.env, b.env
    if ea is None or eb is None:
        return out
    for label in ("hostname", "cpu_model", "cpu_arch", "cores_logical", "cpu_affinity", "governor", "os", "kernel", "python"):
        diff(label, getattr(ea, label), getattr(eb, label))
    for pkg in sorted(set(ea.versions) | set(eb.versions)):
        diff(pkg, ea.versions.get(pkg), eb.versions.get(pkg))
    diff("gpus", ", ".join(str(g.get("name", "?")) for g in ea.gpus), ", ".join(str(g.get("name", "?")) for g in eb.gpus))
    return out


def pair_runs(baselines: Sequence[Result], candidates: Sequence[Result]) -> tuple[list[tuple[Result, Result]], list[str]]:
    """Pairs (baseline, candidate) by ``PAIRING_RULE``, and a note for each run left without a partner."""
    if len(baselines) == 1 and len(candidates) == 1:
        return [(baselines[0], candidates[0])], []
    by_key: dict[tuple[str, int, str], Result] = {}
    for b in sorted(baselines, key=lambda r: r.created):
        by_key[_key(b)] = b  # the newest of a key wins
    pairs, notes, used = [], [], set()
    for c in candidates:
        b = by_key.get(_key(c))
        if b is None:
            notes.append(f"candidate {c.id} ({_describe_key(c)}) has no baseline of the same spec, batch size and scenario")
        elif b.id != c.id:
            pairs.append((b, c))
            used.add(b.id)
    notes += [f"baseline {b.id} ({_describe_key(b)}) has no candidate" for b in by_key.values() if b.id not in used]
    return pairs, notes


def _check_pair(b: Result, c: Result, names: list[str], max_regression: float, min_effect: float,
                confidence: float, seed: int) -> PairCheck:
    pc = PairCheck(baseline_id=b.id, candidate_id=c.id, spec=c.model.spec, batch_size=c.batch_size,
                   scenario=c.scenario, environment=environment_differences(b, c))
    if _key(b) != _key(c):
        pc.notes.append(f"baseline is {_describe_key(b)}; candidate is {_describe_key(c)}")
    if not _has_samples(b):
        raise UsageError(f"baseline run {b.id} has no latency samples ({_untested_note(b)}); choose a baseline that finished")
    if not _has_samples(c):
        pc.failed = f"candidate run {c.id} has no latency samples ({_untested_note(c)})"
        return pc
    cells, pc.p_value, _ = _metric_cells(b, c, names, min_effect=min_effect, confidence=confidence, seed=seed)
    for m in names:
        cell = cells[m]
        ratio = cell.ratio
        worse_by = None if ratio is None else (1 / ratio.value if m == "throughput" else ratio.value)
        regressed = bool(cell.significant and worse_by is not None and worse_by > 1 + max_regression)
        if ratio is None:
            verdict = cell.label
        elif regressed:
            verdict = f"regressed ({cell.label})"
        elif cell.significant and cell.worse:
            verdict = f"{cell.label}, within {max_regression:.0%}"
        elif cell.significant:
            verdict = f"improved ({cell.label})"
        else:
            verdict = "no significant difference"
        pc.metrics.append(MetricCheck(metric=m, unit=cell.unit, baseline=_value(b, m), candidate=cell.value, ratio=ratio,
                                      significant=bool(cell.significant), regressed=regressed, verdict=verdict))
    pc.regressed = any(mc.regressed for mc in pc.metrics)
    return pc


def check_regression(
    baseline: Result | Sequence[Result],
    candidate: Result | Sequence[Result],
    max_regression: float = 0.05,
    metrics: Sequence[str] = DEFAULT_CHECK_METRICS,
    min_effect: float = 0.02,
    *,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> CheckOutcome:
    """Did the candidate regress against the baseline? See ``REGRESSION_RULE`` and ``PAIRING_RULE``.

    ``passed`` is False when any metric of any pair regressed or a candidate has no samples.
    """
    if max_regression < 0:
        raise UsageError(f"max regression must be at least 0, got {max_regression}")
    names = _check_metrics(metrics)
    bases = [baseline] if isinstance(baseline, Result) else list(baseline)
    cands = [candidate] if isinstance(candidate, Result) else list(candidate)
    pairs, notes = pair_runs(bases, cands)
    if not pairs:
        raise UsageError("no candidate run pairs with a baseline of the same spec, batch size and scenario; " + "; ".join(notes))
    checked = [_check_pair(b, c, names, max_regression, min_effect, confidence, seed) for b, c in pairs]
    return CheckOutcome(
        passed=not any(p.regressed or p.failed for p in checked), max_regression=max_regression,
        min_effect=min_effect, confidence=confidence, metrics=names, pairs=checked, unpaired=notes,
    )

