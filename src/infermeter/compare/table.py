"""The N-run comparison table: runs (or sweep points) in rows, metrics in columns, ratios to a baseline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from ..result import Estimate, Headline, Result
from ..stats import CONFIDENCE, RATIO_STATISTICS, SIGNIFICANCE_RULE, compare_statistics, inverse_ratio

__all__ = ["METRICS", "MetricCell", "RunRow", "ComparisonTable", "compare_runs", "sweep_points"]

# Metrics with a ratio to the baseline: latency statistics (seconds, higher is worse) and throughput.
METRICS: tuple[str, ...] = (*RATIO_STATISTICS, "throughput")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricCell(_Model):
    """One metric of one run: its value and, for a tested non-baseline run, the ratio to the baseline."""

    metric: str
    unit: Literal["s", "samples/s"]
    value: Estimate | None = None
    ratio: Estimate | None = Field(None, description="this run / baseline, with its CI")
    significant: bool | None = None
    worse: bool | None = Field(None, description="direction of the ratio: slower latency or lower throughput")
    label: str = Field("", description="'20.0% slower', '3.1% higher', 'n.s.' (not significant)")


class RunRow(_Model):
    id: str
    spec: str
    backend: str
    device: str
    batch_size: int
    scenario: str
    status: str
    created: datetime
    count: int = Field(0, description="latency samples")
    axes: dict[str, Any] = Field(default_factory=dict, description="sweep axis values (sweep points)")
    tags: dict[str, str] = Field(default_factory=dict)
    headline: Headline | None = None
    baseline: bool = False
    tested: bool = Field(False, description="compared with the baseline (has samples, is not the baseline)")
    note: str | None = Field(None, description="why a run was not tested")
    p_value: float | None = Field(None, description="two-sided Mann-Whitney U against the baseline")
    cells: dict[str, MetricCell] = Field(default_factory=dict)


class ComparisonTable(_Model):
    """Runs (or sweep points) in rows, metrics in columns, ratios to one baseline run."""

    baseline: str
    metrics: list[str]
    axes: list[str] = Field(default_factory=list)
    confidence: float
    min_effect: float
    rule: str = SIGNIFICANCE_RULE
    method: str = ""
    rows: list[RunRow]

    def pair_summary(self) -> dict[str, Any] | None:
        """For two runs, the candidate's p50/p99 ratios, p-value and verdict (the p50 decides)."""
        if len(self.rows) != 2 or not any(r.tested for r in self.rows):
            return None
        row = next(r for r in self.rows if r.tested)
        p50, p99 = row.cells.get("p50"), row.cells.get("p99")
        if p50 is None or p99 is None or p50.ratio is None:
            return None
        verdict = f"candidate is {p50.label} (significant)" if p50.significant else "no significant difference"
        return {"candidate": row.id, "ratio_p50": p50.ratio.model_dump(), "ratio_p99": p99.ratio.model_dump() if p99.ratio else None,
                "p_value": row.p_value, "significant": bool(p50.significant), "verdict": verdict}



def _has_samples(r: Result) -> bool:
    return r.status == "ok" and r.latency is not None and len(r.latency.samples) >= 2


def _key(r: Result) -> tuple[str, int, str]:
    return (r.model.spec, r.batch_size, r.scenario)


def _describe_key(r: Result) -> str:
    return f"{r.model.spec}, batch {r.batch_size}, {r.scenario}"


def _untested_note(r: Result) -> str:
    if r.status != "ok":
        return f"{r.status}: {(r.error or 'no latency samples').splitlines()[0]}"
    return "no latency samples kept; not tested"


def _check_metrics(metrics: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(metrics))
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UsageError(f"unknown metric(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(METRICS)}")
    return names


def _value(r: Result, metric: str) -> Estimate | None:
    if metric == "throughput":
        return r.throughput.samples_per_s if r.throughput else None
    return getattr(r.latency, metric) if r.latency else None


def _metric_cells(
    base: Result, run: Result, metrics: Sequence[str], *, min_effect: float, confidence: float, seed: int
) -> tuple[dict[str, MetricCell], float | None, str]:
    """Cells of ``run`` against ``base`` (both with samples): one bootstrap for every statistic."""
    stats_needed = [m for m in metrics if m in RATIO_STATISTICS]
    if "throughput" in metrics and "mean" not in stats_needed:
        stats_needed.append("mean")
    cmp = compare_statistics(base.latency.samples, run.latency.samples, stats_needed,  # type: ignore[union-attr]
                             confidence=confidence, min_effect=min_effect, seed=seed)
    cells: dict[str, MetricCell] = {}
    for m in metrics:
        if m == "throughput":
            tb, tr, mean = _value(base, m), _value(run, m), cmp.ratios["mean"]
            if tb is None or tr is None or tb.value <= 0 or tr.value <= 0:
                cells[m] = MetricCell(metric=m, unit="samples/s", value=tr, label="no throughput")
                continue
            # throughput = batch / mean latency: its ratio and CI follow the mean latency ratio's.
            ratio = inverse_ratio(mean.ratio, (tr.value / tb.value) * mean.ratio.value)
            sig, worse = mean.significant, ratio.value < 1
            label = f"{abs(ratio.value - 1) * 100:.1f}% {'lower' if worse else 'higher'}" if sig else "n.s."
            cells[m] = MetricCell(metric=m, unit="samples/s", value=tr, ratio=ratio, significant=sig, worse=worse, label=label)
        else:
            sr = cmp.ratios[m]
            worse = sr.ratio.value > 1
            label = f"{abs(sr.ratio.value - 1) * 100:.1f}% {'slower' if worse else 'faster'}" if sr.significant else "n.s."
            cells[m] = MetricCell(metric=m, unit="s", value=_value(run, m), ratio=sr.ratio,
                                  significant=sr.significant, worse=worse, label=label)
    return cells, cmp.p_value, cmp.method


def _row(r: Result) -> RunRow:
    return RunRow(
        id=r.id, spec=r.model.spec, backend=r.model.backend, device=r.model.device, batch_size=r.batch_size,
        scenario=r.scenario, status=r.status, created=r.created, count=r.latency.count if r.latency else 0,
        axes=dict(r.sweep.axes) if r.sweep else {}, tags=dict(r.tags), headline=r.headline,
    )


def compare_runs(
    results: Sequence[Result],
    baseline: int | str = 0,
    metrics: Sequence[str] = ("p50", "p99", "mean", "throughput"),
    *,
    min_effect: float = 0.02,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> ComparisonTable:
    """Compare every run in ``results`` with the baseline (an index into ``results`` or a run id).

    Rows keep the order given. A run without samples (failed) is shown but not tested; the
    baseline must have samples and at least one other run must, else ``UsageError``.
    """
    names = _check_metrics(metrics)
    if not results:
        raise UsageError("nothing to compare: give at least two run ids or a sweep")
    if isinstance(baseline, int):
        if not -len(results) <= baseline < len(results):
            raise UsageError(f"baseline index {baseline} is out of range for {len(results)} runs")
        base = results[baseline]
    else:
        found = [r for r in results if r.id == baseline] or [r for r in results if r.id.startswith(baseline)]
        if len({r.id for r in found}) != 1:
            raise UsageError(f"baseline {baseline!r} is not {'uniquely ' if found else ''}one of the runs compared")
        base = found[0]
    if not _has_samples(base):
        raise UsageError(f"baseline run {base.id} has no latency samples ({_untested_note(base)}); choose another baseline")
    if sum(_has_samples(r) for r in results) < 2:
        raise UsageError("comparing needs at least two runs with latency samples; the others failed or kept none")
    rows, method = [], ""
    for r in results:
        row = _row(r)
        if r is base:
            row.baseline = True
            row.cells = {m: MetricCell(metric=m, unit="samples/s" if m == "throughput" else "s", value=_value(r, m),
                                       label="baseline") for m in names}
        elif not _has_samples(r):
            row.note = _untested_note(r)
            row.cells = {m: MetricCell(metric=m, unit="samples/s" if m == "throughput" else "s", value=_value(r, m),
                                       label="not tested") for m in names}
        else:
            row.cells, row.p_value, method = _metric_cells(base, r, names, min_effect=min_effect, confidence=confidence, seed=seed)
            row.tested = True
        rows.append(row)
    axes = list(dict.fromkeys(k for r in rows for k in r.axes))
    return ComparisonTable(baseline=base.id, metrics=names, axes=axes, confidence=confidence,
                           min_effect=min_effect, method=method, rows=rows)


def sweep_points(results: Sequence[Result]) -> list[Result]:
    """One result per sweep point (and repeat), in point order: the merged result of a repeated
    point (repeat None) when there is one; of several attempts (a resumed sweep), the newest ok."""
    by_point: dict[str, list[Result]] = {}
    for r in results:
        if r.sweep is not None:
            by_point.setdefault(r.sweep.point_key, []).append(r)
    chosen: list[Result] = []
    for rs in by_point.values():
        merged = [r for r in rs if r.sweep.repeat is None]  # type: ignore[union-attr]
        by_repeat: dict[int | None, list[Result]] = {}
        for r in merged or rs:
            by_repeat.setdefault(r.sweep.repeat, []).append(r)  # type: ignore[union-attr]
        for group in by_repeat.values():
            chosen.append(max(group, key=lambda r: (r.status == "ok", r.created)))
    return sorted(chosen, key=lambda r: (r.sweep.index, -1 if r.sweep.repeat is None else r.sweep.repeat))  # type: ignore[union-attr]

