"""One result from a point measured in N fresh processes (``--processes N``).

Samples are concatenated (each process weighs by how many samples it took) and
described again by ``stats.describe_latency``; the between-process spread
(``stats.process_spread``) goes to ``scenario_details["process_spread"]``, with
one line per process under ``scenario_details["processes"]``. Phases: import,
load and first inference are the median over processes; warm-up and measure
times and warm-up counts are summed. Memory peaks are the largest. The merged
result is ``ok`` only when every process was; otherwise it is ``failed`` and its
error names the processes that failed (figures from the others are still kept).
A latency-percentile headline is recomputed on the merged samples; another
headline (offline throughput) is the median over processes, without a CI. The
verdict is VALID only when every process's was.
"""

from __future__ import annotations

import re
import statistics
from typing import Any, Optional, Sequence

import numpy as np

from ..result import Headline, Memory, Phases, Result, SweepPoint, Verdict
from ..stats import describe_latency, percentile, percentile_ci, process_spread, throughput
from ..store import new_id

__all__ = ["merge_repeats"]

def _median(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(statistics.median(vals)) if vals else None


def _max(values: Sequence[Optional[int]]) -> Optional[int]:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def merge_repeats(repeats: Sequence[Result], sweep: SweepPoint, invocation: str) -> Result:
    """The point's result over all its processes (``sweep.repeat`` is None for it)."""
    if not repeats:
        raise ValueError("merge_repeats needs at least one result")
    ordered = sorted(repeats, key=lambda r: (r.sweep.repeat if r.sweep and r.sweep.repeat is not None else 0))
    usable = [r for r in ordered if r.latency is not None and r.latency.samples]
    blocks = {r.latency.block_size for r in usable if r.latency is not None}
    first = usable[0] if usable else ordered[0]
    warnings: list[str] = []
    for r in usable:
        for w in r.warnings:
            if w not in warnings:
                warnings.append(w)
    latency = tput = None
    details: dict[str, Any] = {k: v for k, v in first.scenario_details.items() if k != "sweep_process"}
    if usable:
        groups = [r.latency.samples for r in usable if r.latency is not None]
        samples = np.concatenate([np.asarray(g, dtype=float) for g in groups])
        block = max(blocks)
        latency = describe_latency(samples, per="block" if block > 1 else "call", block_size=block)
        tput = throughput(latency, first.batch_size)
        spread = process_spread(groups)
        details["process_spread"] = spread.model_dump()
        warnings.extend(spread.warnings)
        if len(blocks) > 1:
            warnings.append(
                f"processes timed in different block sizes ({', '.join(map(str, sorted(blocks)))}); merged samples mix "
                "block means of different lengths"
            )
    details["processes"] = [
        {
            "repeat": r.sweep.repeat if r.sweep else None, "id": r.id, "status": r.status,
            "p50_s": r.latency.p50.value if r.latency else None, "count": r.latency.count if r.latency else 0,
            "stop_reason": r.stop_reason, "error": r.error,
            "pid": (r.scenario_details.get("sweep_process") or {}).get("pid"),
        }
        for r in ordered
    ]
    failed = [r for r in ordered if r.status != "ok"]
    error = None
    if failed:
        which = ", ".join(str(r.sweep.repeat if r.sweep else "?") for r in failed)
        error = f"{len(failed)} of {len(ordered)} processes failed (repeat {which}): {failed[0].error or 'no reason given'}"
    stops = sorted({r.stop_reason or "?" for r in usable})
    return Result(
        id=new_id(),
        invocation=invocation,
        status="failed" if failed or latency is None else "ok",
        error=error if failed else (None if latency is not None else "no process measured any sample"),
        model=first.model.model_copy(deep=True),
        batch_size=first.batch_size,
        scenario=first.scenario,
        config=dict(first.config),
        env=first.env,
        phases=Phases(
            import_s=_median([r.phases.import_s for r in usable]),
            load_s=_median([r.phases.load_s for r in usable]),
            first_inference_s=_median([r.phases.first_inference_s for r in usable]),
            warmup_iters=sum(r.phases.warmup_iters for r in usable),
            warmup_s=sum(r.phases.warmup_s for r in usable),
            warmup_samples=list(first.phases.warmup_samples),
            measure_s=sum(r.phases.measure_s for r in usable),
        ),
        latency=latency,
        throughput=tput,
        memory=Memory(
            load_peak_rss_bytes=_max([r.memory.load_peak_rss_bytes for r in usable]),
            inference_peak_rss_bytes=_max([r.memory.inference_peak_rss_bytes for r in usable]),
            rss_accounting=first.memory.rss_accounting,
            device_peak_bytes=_max([r.memory.device_peak_bytes for r in usable]),
            device_accounting=first.memory.device_accounting,
        ),
        timer=first.timer.model_copy(deep=True),
        stop_reason=f"merged {len(usable)} processes ({', '.join(stops)})" if usable else "failed",
        warnings=warnings,
        tags=dict(first.tags),
        headline=_headline(usable, latency),
        verdict=_verdict(usable),
        scenario_details=details,
        sweep=sweep,
    )


def _latency_percentile(h: Headline) -> Optional[float]:
    """p for a 'p90 latency'-style headline in seconds (also plain 'p90'), else None."""
    m = re.fullmatch(r"p(\d+(?:\.\d+)?)(?: latency)?", h.metric.strip())
    return float(m.group(1)) if m and h.unit == "s" else None


def _headline(usable: Sequence[Result], latency: Any) -> Optional[Headline]:
    """A latency-percentile headline is recomputed on the merged samples when every process's headline
    was that percentile of its own samples; anything else (throughput …) is the median over processes, no CI."""
    heads = [(r, r.headline) for r in usable if r.headline is not None]
    if not heads:
        return None
    h = heads[0][1]
    same = [x for _, x in heads if x.metric == h.metric and x.unit == h.unit]
    p = _latency_percentile(h)
    if p is not None and latency is not None and len(same) == len(usable) and all(
        r.latency is not None and r.latency.samples and abs(percentile(r.latency.samples, p) - x.value) <= 1e-12 * max(1.0, abs(x.value))
        for r, x in heads
    ):
        lo, hi = percentile_ci(latency.samples, p)
        return Headline(metric=h.metric, value=percentile(latency.samples, p), unit=h.unit, ci_low=lo, ci_high=hi)
    return Headline(metric=h.metric, value=float(statistics.median(x.value for x in same)), unit=h.unit)


def _verdict(usable: Sequence[Result]) -> Optional[Verdict]:
    verdicts = [(r.sweep.repeat if r.sweep else i, r.verdict) for i, r in enumerate(usable) if r.verdict is not None]
    if not verdicts:
        return None
    reasons = [f"process {i}: {why}" for i, v in verdicts for why in v.reasons]
    recs: list[str] = []
    for _, v in verdicts:
        recs.extend(x for x in v.recommendations if x not in recs)
    return Verdict(
        valid=all(v.valid for _, v in verdicts), reasons=reasons, recommendations=recs,
        checks={"processes": [{"repeat": i, "valid": v.valid} for i, v in verdicts]},
    )
