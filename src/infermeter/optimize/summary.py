"""From the candidates' measurements to the report: speed-ups with CIs against the
baseline, accuracy deltas, the Pareto front, verdicts and the choice.

The store keeps only facts (each candidate's Result, with its
:class:`~infermeter.optimize.schema.CandidateRecord` in
``scenario_details["optimize"]``); this module derives everything else, so the
command's table and a report made later from the store say the same thing.
Speed-ups come from ``stats.compare_statistics`` (bootstrap CI of the ratio of
the objective's statistic), the one place ratios of latency samples are formed.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..result import Result
from ..stats.compare import compare_statistics, inverse_ratio
from .pareto import Candidate, choose, pareto_front, verdict
from .schema import CandidateRecord, OptimizeReport, Row

__all__ = ["build_report", "reports_of", "record_of", "MIN_EFFECT", "BASELINE_REPEAT"]

BASELINE_REPEAT = "baseline-repeat"  # the family of the baseline's second measurement, after the candidates
MIN_EFFECT = 0.02  # a candidate must be at least 2% faster, at its CI's lower end, to count as faster


def record_of(r: Result) -> CandidateRecord | None:
    data = r.scenario_details.get("optimize")
    if not isinstance(data, dict):
        return None
    try:
        return CandidateRecord.model_validate(data)
    except Exception:
        return None


def _statistic(objective: str) -> str:
    return {"latency-p50": "p50", "latency-p99": "p99", "throughput": "mean"}[objective]


def _has_samples(r: Result | None) -> bool:
    return r is not None and r.status == "ok" and r.latency is not None and len(r.latency.samples) >= 2


def _speedup(base: Result, cand: Result, objective: str, confidence: float) -> tuple[float, float | None, float | None]:
    stat = _statistic(objective)
    cmp = compare_statistics(base.latency.samples, cand.latency.samples, (stat,), confidence=confidence,  # type: ignore[union-attr]
                             min_effect=MIN_EFFECT)
    ratio = cmp.ratios[stat].ratio  # candidate / baseline, of a latency statistic
    scale = cand.batch_size / base.batch_size if objective == "throughput" else 1.0
    s = inverse_ratio(ratio, scale)  # baseline / candidate: above 1 is faster (throughput: per sample)
    return s.value, s.ci_low, s.ci_high


def _objective_value(r: Result | None, objective: str) -> float | None:
    if r is None or r.latency is None:
        return None
    if objective == "latency-p99":
        return r.latency.p99.value
    return r.latency.p50.value


def build_report(pairs: Sequence[tuple[CandidateRecord, Result | None]], *, confidence: float = 0.95,
                 cpu_flags: dict[str, bool] | None = None, notes: Sequence[str] = ()) -> OptimizeReport:
    """The report for one session from its (record, result) pairs; the baseline must be among them."""
    if not pairs:
        raise ValueError("no candidates to report")
    base_pair = next(((rec, res) for rec, res in pairs if rec.family == "baseline"), None)
    if base_pair is None:
        raise ValueError("the baseline is missing from the optimize results")
    brec, bres = base_pair
    objective = brec.objective
    notes = list(notes)
    repeat = next(((rec, res) for rec, res in pairs if rec.family == BASELINE_REPEAT), None)
    if repeat is not None and _has_samples(repeat[1]) and _has_samples(bres):
        # The baseline was measured first and again last: speed-ups are taken against the faster
        # of the two, so a slow moment of the machine never inflates every candidate's gain.
        s_val, s_lo, s_hi = _speedup(bres, repeat[1], objective, confidence)  # type: ignore[arg-type]
        drift = s_lo is not None and s_hi is not None and (s_lo > 1 + MIN_EFFECT or s_hi < 1 - MIN_EFFECT)
        if s_val > 1.0:
            bres = repeat[1]
        if drift:
            notes.append(f"the baseline measured again at the end ran {s_val:.2f}x [{s_lo:.2f}, {s_hi:.2f}] as fast as at the "
                         "start: the machine's speed drifted; speed-ups are against the faster of the two (conservative)")
        else:
            notes.append(f"the baseline measured again at the end ran {s_val:.2f}x [{s_lo:.2f}, {s_hi:.2f}] as fast as at the "
                         "start (no drift beyond ±2%)")
    flags = cpu_flags if cpu_flags is not None else (bres.env.cpu_flags if bres is not None and bres.env is not None else {})
    rows: list[Row] = []
    cands: list[Candidate] = []
    for rec, res in pairs:
        row = Row(record=rec, result_id=res.id if res is not None else None, objective_value_s=_objective_value(res, objective))
        if res is not None and res.throughput is not None:
            row.throughput = res.throughput.samples_per_s.value
        if res is not None:
            row.peak_memory_bytes = res.memory.inference_peak_rss_bytes
        ok = rec.status == "ok" and _has_samples(res) and _has_samples(bres)
        if ok and res is bres:
            row.speedup, row.speedup_ci_low, row.speedup_ci_high = 1.0, 1.0, 1.0
        elif ok:
            row.speedup, row.speedup_ci_low, row.speedup_ci_high = _speedup(bres, res, objective, confidence)  # type: ignore[arg-type]
        if rec.accuracy is not None and brec.accuracy is not None:
            row.accuracy_delta = rec.accuracy - brec.accuracy
        rows.append(row)
        if rec.family == BASELINE_REPEAT:
            continue  # a measurement of the baseline, not a candidate: no front, no choice
        cands.append(Candidate(
            name=rec.name, kind=rec.kind if rec.family != "baseline" else "baseline", lineage=rec.lineage,
            status="ok" if (ok and rec.status == "ok") else "failed",
            reason=rec.reason or ("" if ok else "no latency samples"),
            speedup=row.speedup, speedup_ci_low=row.speedup_ci_low, speedup_ci_high=row.speedup_ci_high,
            accuracy=rec.accuracy, higher_is_better=rec.higher_is_better, size_bytes=rec.size_bytes,
            peak_memory_bytes=row.peak_memory_bytes,
        ))
    base_c = next(c for c in cands if c.kind == "baseline")
    max_drop = brec.max_drop
    front = set(pareto_front(cands, base_c))
    choice = choose(cands, base_c, max_drop, min_effect=MIN_EFFECT)
    by_name = {c.name: c for c in cands}
    for row in rows:
        c = by_name.get(row.record.name)
        if row.record.family == BASELINE_REPEAT:
            row.verdict = "the baseline, measured again after the candidates" if row.record.status == "ok" else \
                f"the baseline's second measurement failed: {row.record.reason}"
            continue
        assert c is not None
        if row.record.status == "skipped":
            row.verdict = f"skipped: {row.record.reason}"
        else:
            row.verdict = verdict(c, base_c, max_drop, min_effect=MIN_EFFECT, cpu_flags=flags)
        row.on_front = c.name in front
        row.chosen = c.name == choice.chosen
    return OptimizeReport(
        session=brec.session, model=bres.model.spec if bres is not None else "", objective=objective,
        batch_size=brec.batch_size, accuracy_name=brec.accuracy_name, higher_is_better=brec.higher_is_better,
        max_drop=max_drop, rows=rows, choice=choice, confidence=confidence, notes=notes,
    )


def reports_of(results: Sequence[Result]) -> list[OptimizeReport]:
    """One report per optimize session among ``results`` (results of other commands are ignored)."""
    sessions: dict[str, list[tuple[CandidateRecord, Result]]] = {}
    for r in results:
        rec = record_of(r)
        if rec is not None:
            sessions.setdefault(rec.session, []).append((rec, r))
    out = []
    for pairs in sessions.values():
        if any(rec.family == "baseline" for rec, _ in pairs):
            notes: list[Any] = []
            for rec, r in pairs:
                if rec.family == "baseline":
                    notes = list(r.scenario_details.get("optimize_notes") or [])
            out.append(build_report(pairs, notes=notes))
    return out
