"""The highest rate a server holds within a latency objective: :func:`find_max`.

Each step is one bounded open-loop run (``step_duration_s``) at an offered
rate. A step *passes* when

* the SLO holds on the corrected latency of the successful requests (``p99<50ms``:
  the nearest-rank p99 from the intended send time is under 50 ms),
* the achieved rate is at least 95% of the offered rate (the server kept up), and
* fewer than 1% of the requests failed, and
* the latency was *stable* across the step: the step is cut into
  ``WINDOWS`` windows of intended send time, and the mean corrected latency of
  the last window may not exceed the first window's by more than ``GROWTH``
  times *and* by more than ``GROWTH_FLOOR`` of the SLO's bound
  (``NO_SLO_FLOOR_S`` without one). The mean, not the median: a queue that
  grows raises every request's wait, and the mean follows it, while a median
  of a two-mode mix (cache hits and misses) jumps between the modes when their
  shares move by a few requests. Latency that keeps rising
  means the queue is still growing: a longer step would have missed the SLO,
  so a short step that happens to pass does not count.

Step ``k`` runs with ``seed + k``: its arrivals and request bodies are new,
so a server cache that lives across the steps sees only the repeats a step
asks for (``--repeat``), not the previous step's bodies again.

A step that meets everything but stability is run again at the same rate, up
to ``max_trials`` runs per rate (each trial is reported); it passes only when
a trial is stable. Steps without per-request records (over ``RAW_LIMIT``
requests) cannot be cut into windows and are judged without this rule (the
step says so).

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
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import UsageError
from ..stats import percentile
from .config import LoadConfig
from .generator import LoadOutcome, Progress, run_load, with_rate
from .protocols import OK

__all__ = ["parse_slo", "find_max", "rate_curve", "stability", "max_passing_rate", "ACHIEVED_MIN", "ERROR_MAX"]

ACHIEVED_MIN = 0.95
ERROR_MAX = 0.01
CONVERGED = 0.05
MIN_STEP_REQUESTS = 20
WINDOWS = 3
GROWTH = 1.5
GROWTH_FLOOR = 0.1
NO_SLO_FLOOR_S = 1e-3  # the rise that counts without an SLO to scale it (a --rates curve with no --slo)


def stability(o: LoadOutcome, bound_s: float) -> dict[str, Any]:
    """The stability rule of the module docstring for one run: per window of intended send
    time, the requests, the corrected mean, p50 and p99 of the successful ones (s), and the
    verdict (``stable`` is None when the run kept no per-request records)."""
    r = o.records
    if r is None or not r["intended_s"].size:
        return {"stable": None, "why": "no per-request records: stability not judged"}
    ok = r["error_kind"] == OK
    lat = r["done_s"] - r["intended_s"]
    span = max(o.duration_s, float(r["intended_s"].max()), 1e-9)
    edges = np.linspace(0.0, span, WINDOWS + 1)
    at = np.clip(np.searchsorted(edges, r["intended_s"], side="right") - 1, 0, WINDOWS - 1)
    mean: list[float | None] = []
    p50: list[float | None] = []
    p99: list[float | None] = []
    counts: list[int] = []
    for w in range(WINDOWS):
        x = lat[(at == w) & ok]
        counts.append(int((at == w).sum()))
        mean.append(float(x.mean()) if x.size else None)
        p50.append(percentile(x, 50) if x.size else None)
        p99.append(percentile(x, 99) if x.size else None)
    out: dict[str, Any] = {"windows": WINDOWS, "window_s": span / WINDOWS, "requests": counts, "mean": mean, "p50": p50,
                           "p99": p99,
                           "rule": f"last window's mean > {GROWTH:g}x the first's and by > {GROWTH_FLOOR:.0%} of the bound"}
    first, last = mean[0], mean[-1]
    if first is None or last is None:
        out.update(stable=None, why="a window had no successful request: stability not judged")
    elif last > GROWTH * first and last - first > (GROWTH_FLOOR * bound_s if math.isfinite(bound_s) else NO_SLO_FLOOR_S):
        out.update(stable=False, why=f"latency rising across the step (mean {first * 1e3:.3g} ms in the first of "
                                     f"{WINDOWS} windows, {last * 1e3:.3g} ms in the last): the queue was still growing")
    else:
        out.update(stable=True, why="")
    return out
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
    stable = stability(o, bound)
    if stable["stable"] is False:
        reasons.append(stable["why"])
    return {
        "offered": offered, "scheduled": o.scheduled_rate, "achieved": o.achieved_rate, "goodput": o.goodput,
        "p50": o.latency_percentile(50), "p99": o.latency_percentile(99), name: observed,
        "errors": dict(o.errors), "error_rate": o.error_rate, "requests": o.requests,
        "passed": not reasons, "reasons": reasons, "slo": f"{name}<={bound * 1e3:g}ms" if math.isfinite(bound) else None,
        "generator_late": any(w.startswith("the generator fell behind") for w in o.warnings),
        "stability": stable,
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


def _check_step(start_rate: float, max_steps: int, step_duration_s: float, max_trials: int) -> None:
    if not (math.isfinite(start_rate) and start_rate > 0):
        raise UsageError(f"--start-rate must be above 0 requests/s, got {start_rate!r}")
    for name, v in (("--max-steps", max_steps), ("--max-trials", max_trials)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{name} must be a whole number of at least 1, got {v!r}")
    if not (math.isfinite(step_duration_s) and step_duration_s > 0):
        raise UsageError(f"--step-duration must be above 0 s, got {step_duration_s!r}")
    if start_rate * step_duration_s < MIN_STEP_REQUESTS:
        raise UsageError(f"a step of {step_duration_s:g} s at {start_rate:g}/s sends too few requests to judge; "
                         f"raise the rate or --duration so each step sends at least {MIN_STEP_REQUESTS}")


def _run_rate(cfg: LoadConfig, rate: float, step_duration_s: float, name: str, bound: float, max_trials: int,
              steps: list[LoadOutcome], phase: str, progress: Progress | None, room: int) -> bool:
    """Run ``rate`` until a trial is judged without the instability retry (at most ``max_trials``
    runs, ``room`` left in the step budget), appending every trial to ``steps``; whether it passed."""
    p = float(name[1:])
    for trial in range(1, max_trials + 1):
        if progress is not None:
            progress("step", {"step": len(steps), "rate": rate, "phase": phase, "trial": trial})
        step_cfg = replace(with_rate(cfg, rate, step_duration_s), seed=cfg.seed + len(steps))
        o = run_load(step_cfg, progress=_tagged(progress, len(steps)))
        judged = _judge(o, name, p, bound)
        unstable_only = not judged["passed"] and judged["stability"]["stable"] is False and len(judged["reasons"]) == 1
        retry = unstable_only and trial < max_trials and room > 1
        o.search = {**judged, "step": len(steps), "phase": phase, "trial": trial, "rerun": retry}
        steps.append(o)
        room -= 1
        if progress is not None:
            progress("step-done", dict(o.search))
        if not retry:
            return bool(judged["passed"])
    return False


def find_max(
    cfg: LoadConfig, slo: str, *, start_rate: float = 10.0, max_steps: int = 12, step_duration_s: float = 5.0,
    max_trials: int = 2, progress: Progress | None = None,
) -> list[LoadOutcome]:
    """Search the highest offered rate that meets ``slo`` (see the module docstring).

    ``progress(phase, info)``: ``"step"`` (step, rate, phase, trial) before each run, the run's
    own phases (``run_load``) with ``step`` added, ``"step-done"`` (the verdict) after it.
    Returns every run's outcome in the order run (``max_steps`` at most, re-runs included);
    each carries ``outcome.search`` (offered, achieved, p50/p99 corrected, errors, stability,
    passed, reasons, step index, phase, trial, rerun) and the last one also ``best_rate``
    (alias ``max_rate``), the highest passing rate (also :func:`max_passing_rate`).
    """
    name, bound = parse_slo(slo)
    _check_step(start_rate, max_steps, step_duration_s, max_trials)
    steps: list[LoadOutcome] = []
    lo: float | None = None  # highest pass
    hi: float | None = None  # lowest fail
    rate = float(start_rate)
    while len(steps) < max_steps:
        phase = "double" if hi is None else "bisect"
        if _run_rate(cfg, rate, step_duration_s, name, bound, max_trials, steps, phase, progress, max_steps - len(steps)):
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


def rate_curve(
    cfg: LoadConfig, rates: list[float], *, slo: str | None = None, step_duration_s: float = 5.0,
    max_trials: int = 1, progress: Progress | None = None,
) -> list[LoadOutcome]:
    """One open-loop run per offered rate, in the order given: the latency-vs-offered-load
    curve. Each outcome carries ``search`` judged as a find-max step (against ``slo``, or
    ``p99`` with no bound when there is none, so that only achieved rate, errors and
    stability decide ``passed``)."""
    if not rates:
        raise UsageError("--rates needs at least one rate, e.g. --rates 100,200,400")
    bad = [r for r in rates if not (math.isfinite(r) and r > 0)]
    if bad:
        raise UsageError(f"--rates must all be above 0 requests/s, got {bad[0]!r}")
    name, bound = parse_slo(slo) if slo else ("p99", math.inf)
    _check_step(min(rates), len(rates) * max_trials, step_duration_s, max_trials)
    steps: list[LoadOutcome] = []
    for rate in rates:
        _run_rate(cfg, float(rate), step_duration_s, name, bound, max_trials, steps, "curve", progress,
                  len(rates) * max_trials)
    if steps and steps[-1].search is not None:
        steps[-1].search["best_rate"] = steps[-1].search["max_rate"] = max_passing_rate(steps) if slo else None
    return steps
