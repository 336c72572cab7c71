"""The highest rate a server holds within a latency objective: :func:`find_max`.

Each step is one bounded open-loop run (``step_duration_s``) at an offered
rate. A step *passes* when

* the SLO holds on the corrected latency of the successful requests (``p99<50ms``:
  the nearest-rank p99 from the intended send time is under 50 ms),
* the achieved rate is at least 95% of the offered rate (the server kept up), and
* fewer than 1% of the requests failed.

The rate doubles from ``start_rate`` until a step fails, then bisects between
the highest pass and the lowest fail until they are within 5% or the steps
run out (``max_steps`` runs in all). A first step that fails bisects down
from it (until a step would send fewer than 20 requests). A step whose
generator saturated its CPU counts as a fail (it cannot show the server kept
up); one whose generator was only late (``generator_late``) is judged as
usual, since latency runs from the intended send times anyway.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError
from .config import LoadConfig
from .generator import LoadOutcome, Progress, run_load, with_rate

__all__ = ["parse_slo", "find_max", "max_passing_rate", "ACHIEVED_MIN", "ERROR_MAX"]

ACHIEVED_MIN = 0.95
ERROR_MAX = 0.01
CONVERGED = 0.05
MIN_STEP_REQUESTS = 20
def parse_slo(text: str) -> tuple[str, float]:
    """``'p99<50ms'`` -> ``('p99', 0.05)``: the planner's SLO syntax (``load.plan.parse_slo``, the one
    parser), limited to percentiles, which is what a search step is judged on."""
    from .plan import parse_slo as parse

    name, bound = parse(str(text or ""))
    if not name.startswith("p") or not 0 < float(name[1:]) < 100:
        raise UsageError(f"--find-max judges a percentile between p0 and p100 (exclusive); write the SLO as e.g. "
                         f"p99<50ms, not '{text}'")
    return name, bound


def _judge(o: LoadOutcome, name: str, p: float, bound: float) -> dict[str, Any]:
    offered = o.offered_rate or 0.0
    # a seeded Poisson schedule sends a little more or less than the rate asked for: judge the
    # server against what this schedule actually offered
    realised = o.scheduled_rate or offered
    observed = o.latency_percentile(p)
    reasons = []
    if observed is None:
        reasons.append("no request succeeded")
    elif observed > bound:
        reasons.append(f"{name} {observed * 1e3:.3g} ms > {bound * 1e3:g} ms")
    if o.achieved_rate < ACHIEVED_MIN * realised:
        reasons.append(f"achieved {o.achieved_rate:.4g}/s < {ACHIEVED_MIN:.0%} of offered {realised:.4g}/s")
    if o.error_rate >= ERROR_MAX:
        reasons.append(f"errors {o.error_rate:.1%} >= {ERROR_MAX:.0%}")
    if any(w.startswith("the generator saturated") for w in o.warnings):
        reasons.append("the generator saturated its CPU (cannot tell whether the server kept up)")
    return {
        "offered": offered, "scheduled": o.scheduled_rate, "achieved": o.achieved_rate, "goodput": o.goodput,
        "p50": o.latency_percentile(50), "p99": o.latency_percentile(99), name: observed,
        "errors": dict(o.errors), "error_rate": o.error_rate, "requests": o.requests,
        "passed": not reasons, "reasons": reasons, "slo": f"{name}<={bound * 1e3:g}ms",
        "generator_late": any(w.startswith("the generator fell behind") for w in o.warnings),
    }


def _tagged(progress: Progress | None, step: int) -> Progress | None:
    if progress is None:
        return None
    report = progress

    def inner(phase: str, info: dict[str, Any]) -> None:
        report(phase, {**info, "step": step})

    return inner


def max_passing_rate(steps: list[LoadOutcome]) -> float | None:
    """The highest offered rate among the steps that passed (None when none did)."""
    rates = [s.search["offered"] for s in steps if s.search and s.search["passed"]]
    return max(rates) if rates else None


def find_max(
    cfg: LoadConfig, slo: str, *, start_rate: float = 10.0, max_steps: int = 12, step_duration_s: float = 5.0,
    progress: Progress | None = None,
) -> list[LoadOutcome]:
    """Search the highest offered rate that meets ``slo`` (see the module docstring).

    ``progress(phase, info)``: ``"step"`` (step, rate, phase) before each run, the run's own
    phases (``run_load``) with ``step`` added, ``"step-done"`` (the verdict) after it.
    Returns every step's outcome in the order run; each carries ``outcome.search``
    (offered, achieved, p50/p99 corrected, errors, passed, reasons, step index, phase)
    and the last one also ``best_rate`` (alias ``max_rate``), the highest passing rate
    (also :func:`max_passing_rate`).
    """
    name, bound = parse_slo(slo)
    p = float(name[1:])
    if not (math.isfinite(start_rate) and start_rate > 0):
        raise UsageError(f"--start-rate must be above 0 requests/s, got {start_rate!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise UsageError(f"--max-steps must be a whole number of at least 1, got {max_steps!r}")
    if not (math.isfinite(step_duration_s) and step_duration_s > 0):
        raise UsageError(f"--step-duration must be above 0 s, got {step_duration_s!r}")
    if start_rate * step_duration_s < MIN_STEP_REQUESTS:
        raise UsageError(f"a step of {step_duration_s:g} s at {start_rate:g}/s sends too few requests to judge; "
                         f"raise --start-rate or --step-duration so each step sends at least {MIN_STEP_REQUESTS}")
    steps: list[LoadOutcome] = []
    lo: float | None = None  # highest pass
    hi: float | None = None  # lowest fail
    rate = float(start_rate)
    while len(steps) < max_steps:
        phase = "double" if hi is None else "bisect"
        if progress is not None:
            progress("step", {"step": len(steps), "rate": rate, "phase": phase})
        o = run_load(with_rate(cfg, rate, step_duration_s), progress=_tagged(progress, len(steps)))
        o.search = {**_judge(o, name, p, bound), "step": len(steps), "phase": phase}
        steps.append(o)
        if progress is not None:
            progress("step-done", dict(o.search))
        if o.search["passed"]:
            lo = rate if lo is None else max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
        if hi is None:
            rate *= 2
            continue
        low = lo or 0.0
        if low > 0 and (hi - low) / low <= CONVERGED:
            break
        rate = (low + hi) / 2
        if rate * step_duration_s < MIN_STEP_REQUESTS:  # too few requests left to judge a step
            break
    if steps and steps[-1].search is not None:
        steps[-1].search["best_rate"] = steps[-1].search["max_rate"] = max_passing_rate(steps)
    return steps
