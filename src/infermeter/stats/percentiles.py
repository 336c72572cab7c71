"""Percentiles (nearest-rank) with distribution-free CIs, the mean with its Student-t CI,
the per-run latency summary and single-stream throughput."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from ..result import Estimate, LatencyStats, Throughput
from ._base import _as_samples, _Bound, _check_confidence, _Samples

CONFIDENCE = 0.95
PERCENTILES: dict[str, float] = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9}

PERCENTILE_DEFINITION = "nearest-rank"
PERCENTILE_CI_METHOD = (
    "distribution-free (binomial order statistics): among n samples the number below the true "
    "p-quantile is Binomial(n, p/100), so ranks l = binom.ppf(a/2) and u = binom.isf(a/2) + 1, "
    "a = 1 - confidence, give [x(l), x(u)] with coverage >= confidence and at most a/2 in each "
    "tail; a bound whose rank falls outside 1..n does not exist for this n and is omitted"
)
MEAN_CI_METHOD = "Student t on the sample mean (ddof=1 standard error)"


# ---------------------------------------------------------------- percentiles


def nearest_rank(n: int, p: float) -> int:
    """1-based nearest rank ceil(p/100 * n), clamped to 1..n.

    p/100*n is snapped to an integer when within float rounding of one: without
    that, p99.9 of 1000 samples would be rank 1000 (the max) instead of 999,
    because 99.9/100*1000 evaluates to 999.0000000000001 (numpy has this artifact).
    """
    if not 0.0 < p <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    if n < 1:
        raise ValueError("nearest rank needs at least one sample")
    x = p / 100.0 * n
    r = round(x)
    if abs(x - r) <= 1e-9 * max(1.0, x):
        x = r
    return min(max(math.ceil(x), 1), n)


def percentile_sorted(sorted_arr: npt.NDArray[np.float64], p: float) -> float:
    """Nearest-rank percentile of an already ascending array: O(1), for loops that re-ask often."""
    return float(sorted_arr[nearest_rank(len(sorted_arr), p) - 1])


def percentile(samples: _Samples, p: float) -> float:
    """Nearest-rank percentile (MLPerf LoadGen): the smallest sample with at least p% of samples <= it.

    Equals ``np.percentile(x, p, method="inverted_cdf")`` except where numpy's
    float rounding of p/100*n crosses an integer (see ``nearest_rank``).
    """
    x = _as_samples(samples)
    k = nearest_rank(x.size, p) - 1
    return float(np.partition(x, k)[k])


@lru_cache(maxsize=4096)
def _ci_ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    """1-based order-statistic ranks (l, u) bounding the p-quantile; cached because the
    adaptive stopping loop asks for the same (n, confidence) on every growing array."""
    alpha = 1.0 - confidence
    q = p / 100.0  # unfrozen binom calls: ~80 us for both, a frozen binom(n, q) costs 3x that
    lo = int(sps.binom.ppf(alpha / 2, n, q))  # P(fewer than lo samples below the quantile) < alpha/2
    hi = int(sps.binom.isf(alpha / 2, n, q)) + 1  # P(at least hi samples below it) <= alpha/2
    return (lo if lo >= 1 else None), (hi if hi <= n else None)


def percentile_ci_sorted(
    sorted_arr: npt.NDArray[np.float64], p: float, confidence: float = CONFIDENCE
) -> tuple[_Bound, _Bound]:
    """``percentile_ci`` on an ascending array, in O(1) after the first call for this (n, p, confidence)."""
    _check_confidence(confidence)
    nearest_rank(max(len(sorted_arr), 1), p)  # validates p
    lo, hi = _ci_ranks(len(sorted_arr), float(p), float(confidence))
    return (
        float(sorted_arr[lo - 1]) if lo is not None else None,
        float(sorted_arr[hi - 1]) if hi is not None else None,
    )


def percentile_ci(samples: _Samples, p: float, confidence: float = CONFIDENCE) -> tuple[_Bound, _Bound]:
    """Confidence interval for the true p-th percentile; no assumption on the distribution's shape.

    See ``PERCENTILE_CI_METHOD``. A bound is ``None`` when n is too small to give it:
    p99.9 from 500 samples has no upper bound, because the largest sample is below the
    true p99.9 more often than the confidence allows.
    """
    return percentile_ci_sorted(np.sort(_as_samples(samples)), p, confidence)


def median_ci_halfwidth_rel(sorted_samples: npt.NDArray[np.float64], confidence: float = CONFIDENCE) -> float:
    """Relative half-width of the median's CI, max(p50 - lo, hi - p50) / p50: the precision
    the adaptive stop waits for. ``inf`` while a bound is still missing."""
    if len(sorted_samples) == 0:
        return math.inf
    p50 = percentile_sorted(sorted_samples, 50)
    lo, hi = percentile_ci_sorted(sorted_samples, 50, confidence)
    if lo is None or hi is None:
        return math.inf
    half = max(p50 - lo, hi - p50)
    if p50 <= 0:
        return 0.0 if half == 0 else math.inf
    return half / p50


def min_samples_for_percentile(p: float = 99, confidence: float = 0.99) -> int:
    """Fewest samples for which, with none of them over the bound, LoadGen's early stopping
    can claim the p-th percentile is under it: the smallest n with (p/100)^n <= 1 - confidence
    (the chance that n samples all fall below the true p-quantile). 459 for p99 at 0.99."""
    _check_confidence(confidence)
    if not 0.0 < p < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {p}")
    q, alpha = p / 100.0, 1.0 - confidence
    n = max(1, math.ceil(math.log(alpha) / math.log(q)))
    while n > 1 and q ** (n - 1) <= alpha:  # guard the log ratio's rounding
        n -= 1
    while q**n > alpha:
        n += 1
    return n


# ---------------------------------------------------------------- mean, summary, throughput


def mean_ci(samples: _Samples, confidence: float = CONFIDENCE) -> tuple[_Bound, _Bound]:
    """Student-t interval for the mean. The mean matters for throughput; with the
    thousands of samples a benchmark takes, the CLT makes t adequate even for skewed latency."""
    _check_confidence(confidence)
    x = _as_samples(samples)
    if x.size < 2:
        return None, None
    m, se = float(np.mean(x)), float(sps.sem(x))
    if se == 0.0:
        return m, m
    lo, hi = sps.t.interval(confidence, x.size - 1, loc=m, scale=se)
    return float(lo), float(hi)


def describe_latency(
    samples_s: _Samples,
    *,
    per: Literal["call", "block"] = "call",
    block_size: int = 1,
    confidence: float = CONFIDENCE,
    keep_samples: bool = True,
) -> LatencyStats:
    """All latency figures of one run, each percentile with its CI, raw samples kept so
    any other statistic can be recomputed later."""
    _check_confidence(confidence)
    x = _as_samples(samples_s, "latency samples")
    s = np.sort(x)
    lo, hi = mean_ci(x, confidence)
    pct: dict[str, Estimate] = {}
    for name, p in PERCENTILES.items():
        ci_lo, ci_hi = percentile_ci_sorted(s, p, confidence)
        pct[name] = Estimate(value=percentile_sorted(s, p), ci_low=ci_lo, ci_high=ci_hi)
    return LatencyStats(
        count=int(x.size),
        per=per,
        block_size=block_size,
        percentile_definition=PERCENTILE_DEFINITION,
        ci_method=f"mean: {MEAN_CI_METHOD}; percentiles: {PERCENTILE_CI_METHOD}",
        confidence=confidence,
        mean=Estimate(value=float(np.mean(x)), ci_low=lo, ci_high=hi),
        std=float(np.std(x, ddof=1)) if x.size > 1 else 0.0,
        min=float(s[0]),
        max=float(s[-1]),
        **pct,
        samples=x.tolist() if keep_samples else [],
    )


def throughput(latency: LatencyStats, batch_size: int) -> Throughput:
    """Samples per second of one stream, batch_size / mean latency. The mean, not the median,
    because total work over total time is what a stream delivers."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    m = latency.mean.value
    if m <= 0:
        raise ValueError(f"mean latency must be positive to give a throughput, got {m} s")
    lo, hi = latency.mean.ci_low, latency.mean.ci_high
    return Throughput(
        samples_per_s=Estimate(
            value=batch_size / m,
            ci_low=batch_size / hi if hi is not None and hi > 0 else None,
            ci_high=batch_size / lo if lo is not None and lo > 0 else None,
        ),
        method=(
            "batch_size / mean latency; CI: batch_size over the mean latency's "
            f"{latency.confidence:.0%} Student-t CI, bounds inverted"
        ),
    )
