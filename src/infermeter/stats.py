"""Every statistic and confidence interval infermeter reports, computed in one place.

Why one module: a figure on screen, in JSON, in the store and in a comparison
must mean the same thing. Percentiles are nearest-rank (MLPerf LoadGen's
definition: a value that was actually observed, never an interpolation); every
percentile carries a distribution-free confidence interval, because latency
distributions are skewed and heavy-tailed and normal-theory intervals for
their tails are wrong. Times are seconds here; messages show milliseconds.
"""

from __future__ import annotations

import inspect
import math
import warnings
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from .result import Estimate, LatencyStats, Throughput

__all__ = [
    "CONFIDENCE", "PERCENTILES", "PERCENTILE_DEFINITION", "PERCENTILE_CI_METHOD", "MEAN_CI_METHOD",
    "WARMUP_RULE", "Comparison", "nearest_rank", "percentile", "percentile_sorted", "percentile_ci",
    "percentile_ci_sorted", "mean_ci", "describe_latency", "median_ci_halfwidth_rel",
    "min_samples_for_percentile", "throughput", "noise_warnings", "warmup_steady", "compare_samples",
]

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

# Noise-warning thresholds (pyperf warns at std > 10% of the mean; torch.utils.benchmark on IQR).
MIN_SAMPLES_TO_JUDGE = 20  # below this, a warning would be guessing
CV_WARN = 0.10
DRIFT_MIN_REL = 0.02  # smaller drifts are below what compare_samples calls an effect
OUTLIER_IQR_K = 3.0  # Tukey's "far out" fence
OUTLIER_SHARE_WARN = 0.01

WARMUP_RULE = (
    "two successive warm-up windows are steady when the relative difference of their medians, "
    "|m_cur - m_prev| / m_cur, is below tolerance; or when it is below 2 x tolerance and a "
    "two-sided Mann-Whitney U test does not reject equal distributions at 0.05. A call still "
    "getting faster by more than 2 x tolerance per window is never steady, however noisy"
)

_Samples = npt.ArrayLike
_Bound = float | None


def _as_samples(samples: _Samples, what: str = "samples") -> npt.NDArray[np.float64]:
    """Validate once, here, so every statistic sees the same clean 1-D float array."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of numbers, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty: at least one sample is needed")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values; drop failed calls before computing statistics")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def _ms(seconds: float) -> str:
    """Milliseconds with enough digits to compare two figures by eye."""
    v = seconds * 1e3
    if abs(v) >= 100:
        return f"{v:.1f} ms"
    if abs(v) >= 1:
        return f"{v:.2f} ms"
    return f"{v:.3g} ms"


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


# ---------------------------------------------------------------- quality checks


def noise_warnings(samples_s: _Samples, confidence: float = CONFIDENCE) -> list[str]:
    """One-line warnings that make a reader distrust the figures, so they travel with the
    result (pyperf's "std is X% of the mean", torch.utils.benchmark's IQR warning)."""
    _check_confidence(confidence)
    x = _as_samples(samples_s, "latency samples")
    n = x.size
    if n < MIN_SAMPLES_TO_JUDGE:
        return []
    out: list[str] = []
    mean = float(np.mean(x))
    cv = float(np.std(x, ddof=1)) / mean if mean > 0 else 0.0
    if cv > CV_WARN:
        out.append(
            f"std is {cv * 100:.1f}% of the mean (CV > {CV_WARN:.0%}): results are noisy; "
            "close other programs or pin cores"
        )
    first, second = np.sort(x[: n // 2]), np.sort(x[n // 2 :])
    m1, m2 = percentile_sorted(first, 50), percentile_sorted(second, 50)
    (l1, h1), (l2, h2) = percentile_ci_sorted(first, 50, confidence), percentile_ci_sorted(second, 50, confidence)
    apart = (l2 is not None and h1 is not None and l2 > h1) or (l1 is not None and h2 is not None and l1 > h2)
    if apart and m1 > 0 and abs(m2 - m1) / m1 >= DRIFT_MIN_REL:
        out.append(
            f"drift: median went from {_ms(m1)} to {_ms(m2)} ({(m2 / m1 - 1) * 100:+.1f}%) between the first "
            "and second half of the run; warm up longer and check for throttling or background load"
        )
    s = np.sort(x)
    q1, q3 = percentile_sorted(s, 25), percentile_sorted(s, 75)
    fence = q3 + OUTLIER_IQR_K * (q3 - q1)
    count = int(np.count_nonzero(x > fence))
    if count / n > OUTLIER_SHARE_WARN:
        out.append(
            f"outliers: {count} of {n} samples ({count / n * 100:.1f}%) are above Q3 + 3*IQR ({_ms(fence)}), "
            f"max {_ms(float(s[-1]))}; interruptions (GC, page faults, other processes) hit the run"
        )
    return out


def warmup_steady(prev_window: _Samples, cur_window: _Samples, tolerance: float = 0.05) -> bool:
    """Whether warm-up can stop: see ``WARMUP_RULE``.

    Medians, not means, so one slow call does not restart warm-up. The Mann-Whitney
    branch lets a noisy but flat workload stop (its window medians wander by more than
    ``tolerance`` by chance), and the 2 x tolerance cap keeps a steady trend from
    hiding in that noise. No rule on two windows can see a trend smaller than the
    noise of a window's median: size windows so the median is known to about
    tolerance / 2, roughly n >= (3 * CV / tolerance)^2 calls (20 calls at CV 10%,
    ~300 at CV 30%); with smaller windows a steep decline can pass by chance.
    """
    a = _as_samples(prev_window, "previous window")
    b = _as_samples(cur_window, "current window")
    m_prev, m_cur = float(np.median(a)), float(np.median(b))
    scale = max(abs(m_cur), abs(m_prev))
    if scale == 0.0:
        return True
    rel = abs(m_cur - m_prev) / (abs(m_cur) if m_cur != 0 else scale)
    if rel < tolerance:
        return True
    if rel >= 2 * tolerance:
        return False
    p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return bool(p >= 0.05)  # NaN (degenerate ties) counts as a rejection


# ---------------------------------------------------------------- comparison


class Comparison(BaseModel):
    """b against a (a is the baseline): ratios above 1 mean b is slower."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratio_p50: Estimate
    ratio_p99: Estimate
    p_value: float
    significant: bool
    verdict: str
    method: str
    n_a: int
    n_b: int
    confidence: float


_BOOTSTRAP_HAS_RNG = "rng" in inspect.signature(sps.bootstrap).parameters  # scipy >= 1.15


def _thin(x: npt.NDArray[np.float64], cap: int) -> npt.NDArray[np.float64]:
    """Deterministic subsample for the bootstrap: evenly spaced order statistics keep the
    distribution's shape; the CI is then the one for ``cap`` samples, i.e. wider (conservative)."""
    if x.size <= cap:
        return x
    s = np.sort(x)
    return s[np.linspace(0, s.size - 1, cap).round().astype(np.intp)]


def _ratio_stat(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], axis: int = -1) -> npt.NDArray[np.float64]:
    """[p50(b)/p50(a), p99(b)/p99(a)], nearest-rank, vectorised along ``axis`` for the bootstrap."""
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    ka = [nearest_rank(a.shape[-1], 50) - 1, nearest_rank(a.shape[-1], 99) - 1]
    kb = [nearest_rank(b.shape[-1], 50) - 1, nearest_rank(b.shape[-1], 99) - 1]
    pa = np.moveaxis(np.partition(a, ka, axis=-1)[..., ka], -1, 0)
    pb = np.moveaxis(np.partition(b, kb, axis=-1)[..., kb], -1, 0)
    return pb / pa


def compare_samples(
    a_s: _Samples,
    b_s: _Samples,
    *,
    confidence: float = CONFIDENCE,
    min_effect: float = 0.02,
    seed: int = 0,
    n_resamples: int = 2000,
    max_samples: int = 5000,
) -> Comparison:
    """Is b faster or slower than a, and by how much? Three gates must all pass before we say
    "significant": the rank test rejects, the bootstrap CI of the median ratio excludes 1,
    and the effect is at least ``min_effect`` (with 10^5 samples, 0.3% is "significant" but
    not worth reporting)."""
    _check_confidence(confidence)
    a, b = _as_samples(a_s, "baseline samples (a)"), _as_samples(b_s, "candidate samples (b)")
    if a.size < 2 or b.size < 2:
        raise ValueError("comparing needs at least 2 samples on each side")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("latency samples must be positive to form ratios")
    r50, r99 = (float(v) for v in _ratio_stat(a, b))
    kw: dict[str, Any] = dict(
        n_resamples=n_resamples, vectorized=True, paired=False, method="percentile",
        confidence_level=confidence, batch=max(1, 5_000_000 // max_samples),  # bounds memory
    )
    data = (_thin(a, max_samples), _thin(b, max_samples))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) data: handled as missing bounds
        kw["rng" if _BOOTSTRAP_HAS_RNG else "random_state"] = np.random.default_rng(seed)
        boot = sps.bootstrap(data, _ratio_stat, **kw)
        p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    p = 1.0 if math.isnan(p) else p
    lows, highs = boot.confidence_interval

    def est(v: float, i: int) -> Estimate:
        lo, hi = float(lows[i]), float(highs[i])
        return Estimate(value=v, ci_low=lo if math.isfinite(lo) else None, ci_high=hi if math.isfinite(hi) else None)

    ratio_p50, ratio_p99 = est(r50, 0), est(r99, 1)
    lo, hi = ratio_p50.ci_low, ratio_p50.ci_high
    excludes_one = (lo is not None and lo > 1.0) or (hi is not None and hi < 1.0)
    significant = p < 1.0 - confidence and excludes_one and abs(r50 - 1.0) >= min_effect
    if significant:
        verdict = f"candidate is {abs(r50 - 1) * 100:.1f}% {'slower' if r50 > 1 else 'faster'} (significant)"
    else:
        verdict = "no significant difference"
    thinned = ""
    if max(a.size, b.size) > max_samples:
        thinned = f", each side thinned to {max_samples} evenly spaced order statistics"
    method = (
        f"ratio = nearest-rank percentile of b / of a; {confidence:.0%} CI: percentile bootstrap "
        f"(scipy.stats.bootstrap, {n_resamples} resamples, seed {seed}{thinned}); p-value: two-sided "
        f"Mann-Whitney U; significant when p < {1 - confidence:.2g}, the p50 ratio CI excludes 1 "
        f"and |ratio - 1| >= {min_effect:.0%}"
    )
    return Comparison(
        ratio_p50=ratio_p50, ratio_p99=ratio_p99, p_value=p, significant=significant,
        verdict=verdict, method=method, n_a=int(a.size), n_b=int(b.size), confidence=confidence,
    )
