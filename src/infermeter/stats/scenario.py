"""Scenario statistics: LoadGen early stopping, offline throughput, server completion rate,
brief summaries of secondary figures."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field  # Field: this module's models document their fields

from ..result import Estimate, Throughput
from ._base import _as_samples, _check_confidence, _Samples
from .percentiles import CONFIDENCE, mean_ci, percentile_sorted

# ---------------------------------------------------------------- scenario verdicts (early stopping), offline, server
# MLPerf LoadGen's early-stopping rule generalised to any percentile, and the
# figures the multi-stream, offline and server scenarios report.


EARLY_STOPPING_CONFIDENCE = 0.99
EARLY_STOPPING_RULE = (
    "LoadGen early stopping (loadgen/early_stopping.cc, results.cc), any percentile p: a query is "
    "'over' when its latency exceeds the bound (server) or the estimate (single/multi-stream). With t "
    "queries over, h(t) is the fewest queries under it such that P(Binomial(h + t, 1 - p/100) <= t) "
    "= I_{p/100}(h, t + 1) <= 1 - confidence, i.e. so few over-queries would be this unlikely if the "
    "true p-th percentile were above the bound. With a bound: passed when n >= h(t) + t, t counted. "
    "Without one: passed when n >= h(1) + 1; the estimate is the t-th largest latency for the largest "
    "t with h(t) + t <= n, a value the true p-th percentile stays under at that confidence. h(0) is "
    "min_samples_for_percentile (459 for p99 at 0.99); h(1) + 1 is 64 for p90 and 662 for p99"
)


@lru_cache(maxsize=8192)
def early_stopping_min_passing(t: int, p: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """LoadGen's ``MinPassingQueriesFinder`` (tolerance 0): the fewest queries under the latency
    that, beside ``t`` queries over it, show at ``confidence`` that the p-th percentile is under it.

    The smallest h with I_q(h, t + 1) <= 1 - confidence, q = p/100 (I the regularised incomplete
    beta: the binomial CDF of t over-queries in h + t). Exponential bracketing, then bisection:
    the odds fall monotonically in h.
    """
    from scipy.special import betainc

    _check_confidence(confidence)
    if not 0.0 < p < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {p}")
    if t < 0:
        raise ValueError(f"the count of over-latency queries must be >= 0, got {t}")
    q, alpha = p / 100.0, 1.0 - confidence

    def odds(h: int) -> float:
        return float(betainc(h, t + 1, q))

    lo, hi = 1, max(2, math.ceil(t * q / (1 - q)))
    while odds(hi) > alpha:
        lo, hi = hi + 1, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if odds(mid) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


class EarlyStopping(BaseModel):
    """The outcome of :func:`early_stopping` (rule: ``EARLY_STOPPING_RULE``), with its inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    passed: bool
    percentile: float
    confidence: float
    n: int = Field(description="queries judged")
    over: int = Field(description="t: queries over the bound, or discarded above the estimate")
    needed: int = Field(description="queries the rule needs for this t: h(t) + t (h(1) + 1 without a bound)")
    bound: float | None = Field(None, description="the latency bound judged against (s), if any")
    estimate: float | None = Field(None, description="without a bound: the early-stopping p-th percentile estimate (s)")


def early_stopping(
    latencies_s: _Samples, p: float, *, bound_s: float | None = None, confidence: float = EARLY_STOPPING_CONFIDENCE
) -> EarlyStopping:
    """LoadGen's early-stopping test of a p-th percentile claim (``EARLY_STOPPING_RULE``).

    With ``bound_s`` (server): do the latencies show, at ``confidence``, that the true p-th
    percentile is within the bound? Without (single-/multi-stream): are there enough queries
    for an early-stopping estimate, and what is it?
    """
    x = np.sort(_as_samples(latencies_s, "latency samples"))
    n = int(x.size)
    if bound_s is not None:
        t = int(n - np.searchsorted(x, bound_s, side="right"))
        needed = early_stopping_min_passing(t, p, confidence) + t
        return EarlyStopping(passed=n >= needed, percentile=p, confidence=confidence, n=n, over=t,
                             needed=needed, bound=float(bound_s))
    needed = early_stopping_min_passing(1, p, confidence) + 1
    if n < needed:
        return EarlyStopping(passed=False, percentile=p, confidence=confidence, n=n, over=0, needed=needed)
    lo, hi = 1, n  # largest t with h(t) + t <= n; h(t) + t grows with t
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if early_stopping_min_passing(mid, p, confidence) + mid <= n:
            lo = mid
        else:
            hi = mid - 1
    return EarlyStopping(passed=True, percentile=p, confidence=confidence, n=n, over=lo, needed=needed,
                         estimate=float(x[n - lo]))


def offline_throughput(
    total_samples: int, wall_s: float, batch_latencies_s: _Samples, confidence: float = CONFIDENCE
) -> Throughput:
    """Offline throughput: every sample over the wall time of the whole run (LoadGen: sample
    count / the last completion). The CI scales it by the per-batch mean latency's Student-t
    CI (relative), since the run is back-to-back batches and its length their sum."""
    if total_samples < 1 or not wall_s > 0:
        raise ValueError(f"offline throughput needs samples >= 1 and a positive wall time, got {total_samples}, {wall_s}")
    value = total_samples / wall_s
    x = _as_samples(batch_latencies_s, "batch latencies")
    m = float(np.mean(x))
    lo, hi = mean_ci(x, confidence)
    return Throughput(
        samples_per_s=Estimate(
            value=value,
            ci_low=value * m / hi if hi is not None and hi > 0 else None,
            ci_high=value * m / lo if lo is not None and lo > 0 else None,
        ),
        method=(
            "total samples / wall time of the whole run; CI: that figure scaled by the per-batch mean "
            f"latency's {confidence:.0%} Student-t CI (relative), bounds inverted"
        ),
    )


def completed_per_second(done_s: _Samples) -> float:
    """LoadGen's server "completed samples per second": (n - 1) / the last completion, times
    from the start of the run (the last completion is the open end of [start, end))."""
    x = _as_samples(done_s, "completion times")
    last = float(np.max(x))
    if x.size < 2 or last <= 0:
        return 0.0
    return (x.size - 1) / last


def brief_summary(samples_s: _Samples) -> dict[str, float | int]:
    """count, mean and nearest-rank p50/p90/p99/max: for secondary figures (schedule lag, queue
    and compute time) that need no CI."""
    x = _as_samples(samples_s)
    s = np.sort(x)
    return {
        "count": int(s.size), "mean": float(np.mean(s)), "p50": percentile_sorted(s, 50),
        "p90": percentile_sorted(s, 90), "p99": percentile_sorted(s, 99), "max": float(s[-1]),
    }
