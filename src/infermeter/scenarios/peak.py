"""``--find-peak``: the highest offered QPS at which the server scenario stays VALID
under its latency bound.

Search, each step one full server run (its own Result, saved as it finishes):

1. **grow** — from the start QPS (``--qps``, else half the capacity estimated
   during warm-up), double while the run is VALID;
2. **shrink** — if the first run is *over* (see below), halve until one is VALID;
3. **bisect** — once a VALID QPS ``lo`` and an over one ``hi`` are known, try
   their geometric mean, until ``hi / lo - 1 <= precision`` (5%).

A run is *over* when it is INVALID because of the load: the latency bound is
not met, or queries were dropped. A run INVALID only for want of evidence (too
short, too few queries, early stopping not yet passed, the bound met) is
*short*: it neither raises ``lo`` nor lowers ``hi``, and the search moves up
(more QPS is more queries in the same time), to the midpoint below ``hi`` if
one is known.

Bounded: at most ``max_steps`` runs, and no run is started that would, judging
by the longest step so far, end after ``max_time_s``. The search also stops
when a run shows the bound is out of reach at any load (the model's own compute
time alone is over it) or a run fails. The peak is the highest VALID QPS run;
None if no run was VALID. Each step's ``scenario_details["peak_search"]`` says
what was tried, what was known after it and what comes next; the last step
carries ``final: true``, the stop reason and the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..result import Result
from ..timing.clocks import HostClock

__all__ = ["PeakConfig", "PeakOutcome", "find_peak"]


@dataclass(frozen=True)
class PeakConfig:
    max_steps: int = 8
    max_time_s: float = 180.0
    growth: float = 2.0
    precision: float = 0.05


@dataclass
class PeakOutcome:
    results: list[Result] = field(default_factory=list)
    peak_qps: float | None = None
    stop: str = ""


def _valid(r: Result) -> bool:
    return r.status == "ok" and r.verdict is not None and r.verdict.valid


def _over(r: Result) -> bool:
    """INVALID because of the load (bound not met, queries dropped), not for want of evidence."""
    if r.verdict is None or r.status != "ok":
        return True
    bound = r.verdict.checks.get("latency_bound") or {}
    return bound.get("met") is False or bool(r.scenario_details.get("dropped"))


def _unreachable(r: Result) -> bool:
    """The model's own compute time is over the bound at the target percentile: no QPS can be VALID."""
    d = r.scenario_details
    bound, compute = d.get("latency_bound_s"), d.get("compute_s") or {}
    p = d.get("target_percentile", 99.0)
    key = "p99" if p >= 99 else "p90" if p >= 90 else "p50"
    return bound is not None and compute.get(key) is not None and compute[key] > bound


def find_peak(
    run_at: Callable[[float], Result],
    start_qps: float,
    cfg: PeakConfig = PeakConfig(),
    *,
    on_step: Callable[[Result], None] | None = None,
    now_ns: Callable[[], int] | None = None,
) -> PeakOutcome:
    """Search as the module docstring says. ``run_at(qps)`` runs one server step and
    returns its (unsaved) Result; ``on_step(result)`` gets it once its step info is set
    (save it there). A ``KeyboardInterrupt`` propagates; finished steps were handed
    to ``on_step`` already."""
    if not start_qps > 0 or not math.isfinite(start_qps):
        raise ValueError(f"start_qps must be a positive number, got {start_qps}")
    now = now_ns or HostClock().now_ns
    out = PeakOutcome()
    lo: float | None = None
    hi: float | None = None
    q, phase = float(start_qps), "grow"
    t0 = now()
    longest = 0.0
    while True:
        t_step = now()
        r = run_at(q)
        longest = max(longest, (now() - t_step) * 1e-9)
        elapsed = (now() - t0) * 1e-9
        ok = _valid(r)
        over = not ok and _over(r)
        if ok:
            lo = q if lo is None else max(lo, q)
        elif over:
            hi = q if hi is None else min(hi, q)
        nxt: float | None
        stop = ""
        if r.status != "ok":
            nxt, stop = None, "failed"
        elif over and _unreachable(r):
            nxt, stop = None, "unreachable"
        elif not ok and not over:  # short: more load gives more evidence
            nxt, nphase = (q * cfg.growth, "grow") if hi is None else (math.sqrt(q * hi), "bisect")
            if hi is not None and hi / q - 1 <= cfg.precision:
                nxt, stop = None, "converged"
        elif hi is None:
            nxt, nphase = q * cfg.growth, "grow"
        elif lo is None:
            nxt, nphase = q / cfg.growth, "shrink"
        elif hi / lo - 1 <= cfg.precision:
            nxt, stop = None, "converged"
        else:
            nxt, nphase = math.sqrt(lo * hi), "bisect"
        if nxt is not None:
            if len(out.results) + 1 >= cfg.max_steps:
                nxt, stop = None, "max-steps"
            elif elapsed + longest > cfg.max_time_s:
                nxt, stop = None, "max-time"
        info: dict[str, Any] = {
            "step": len(out.results) + 1, "phase": phase, "qps": q, "valid": ok,
            "outcome": "valid" if ok else "over" if over else "short",
            "highest_valid_qps": lo, "lowest_invalid_qps": hi, "next_qps": nxt,
            "elapsed_s": elapsed, "max_steps": cfg.max_steps, "max_time_s": cfg.max_time_s,
            "precision": cfg.precision, "final": nxt is None,
        }
        if nxt is None:
            info.update(stop=stop, peak_qps=lo)
            out.stop, out.peak_qps = stop, lo
        r.scenario_details = {**r.scenario_details, "peak_search": info}
        out.results.append(r)
        if on_step is not None:
            on_step(r)
        if nxt is None:
            return out
        q, phase = nxt, nphase
