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


# ---------------------------------------------------------------- shapes for charts
# The HTML/PNG report draws these; it computes no statistic itself.

__all__ += ["Histogram", "histogram", "ecdf", "rolling_median", "rolling_window"]


class Histogram(BaseModel):
    """Bin counts over ``edges`` (len(counts) + 1 ascending edges, seconds); samples outside
    [edges[0], edges[-1]] are not binned but counted in ``below`` / ``above`` so a chart can say so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: list[int]
    edges: list[float]
    below: int = 0
    above: int = 0

    @property
    def count(self) -> int:
        return sum(self.counts) + self.below + self.above


def histogram(
    samples: _Samples,
    *,
    lower: float | None = None,
    upper: float | None = None,
    min_bins: int = 10,
    max_bins: int = 120,
) -> Histogram:
    """Freedman-Diaconis bins (robust to the heavy tails latency has, unlike Sturges or
    Scott) over [lower, upper] (default: min and max), clamped to min_bins..max_bins so a
    tight distribution still shows a shape and a wide one stays readable."""
    if min_bins < 1 or max_bins < min_bins:
        raise ValueError(f"need 1 <= min_bins <= max_bins, got {min_bins}, {max_bins}")
    x = _as_samples(samples, "latency samples")
    lo = float(np.min(x)) if lower is None else float(lower)
    hi = float(np.max(x)) if upper is None else float(upper)
    if not hi >= lo:
        raise ValueError(f"histogram range is empty: lower {lo} > upper {hi}")
    inside = x[(x >= lo) & (x <= hi)]
    if hi == lo:  # all samples equal: one bin of nominal width
        half = abs(lo) * 1e-3 or 1e-9
        edges = np.array([lo - half, lo + half])
    else:
        n_bins = max_bins
        if inside.size >= 2:
            q1, q3 = np.percentile(inside, [25, 75])
            width = 2.0 * float(q3 - q1) / inside.size ** (1 / 3)
            if width > 0:
                n_bins = math.ceil((hi - lo) / width)
        edges = np.linspace(lo, hi, min(max(n_bins, min_bins), max_bins) + 1)
    counts, _ = np.histogram(inside, bins=edges)
    return Histogram(
        counts=[int(c) for c in counts],
        edges=[float(e) for e in edges],
        below=int(np.count_nonzero(x < lo)),
        above=int(np.count_nonzero(x > hi)),
    )


def ecdf(samples: _Samples, max_points: int | None = None) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Empirical CDF as steps: the i-th smallest sample x(i) and F = i/n, the share of samples
    <= it. Consistent with nearest rank: the p-th percentile is the first x(i) with F >= p/100.

    ``max_points`` keeps that many evenly spaced ranks (always the first and the last), so a
    chart of 10^6 samples stays small; every kept point is still an exact (x(i), i/n)."""
    x = np.sort(_as_samples(samples, "latency samples"))
    n = x.size
    ranks = np.arange(1, n + 1)
    if max_points is not None and n > max_points:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        ranks = np.unique(np.linspace(1, n, max_points).round().astype(np.intp))
    return x[ranks - 1], ranks / n


def rolling_window(n: int) -> int:
    """Default rolling-median window for n samples: about n/25 (so ~25 independent medians
    span the run), odd so it centres on a sample, within 5..201, never more than n."""
    if n < 1:
        raise ValueError("a rolling window needs at least one sample")
    w = min(max(n // 25, 5), 201)
    w -= 1 - w % 2
    return max(1, min(w, n if n % 2 else n - 1))


def rolling_median(samples: _Samples, window: int | None = None) -> npt.NDArray[np.float64]:
    """Centred rolling median, one value per sample: how the typical latency moved during a run
    (drift, throttling, warm-up), insensitive to single slow calls as a rolling mean is not.
    Near the ends the window is cut off by the end of the run (it keeps at least half a window
    of samples), so the line spans the whole run without a single-sample wobble at its ends.
    The median of an even-sized window is numpy's (the mean of the two middle samples)."""
    x = _as_samples(samples, "latency samples")
    n = x.size
    w = rolling_window(n) if window is None else int(window)
    if w < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    half = w // 2
    out = np.empty(n)
    if n > 2 * half:
        view = np.lib.stride_tricks.sliding_window_view(x, 2 * half + 1)
        chunk = max(1, 2_000_000 // (2 * half + 1))  # bounds memory for long runs
        for start in range(0, view.shape[0], chunk):
            med = np.median(view[start : start + chunk], axis=1)
            out[half + start : half + start + med.size] = med
    for i in list(range(min(half, n))) + list(range(max(n - half, half), n)):
        out[i] = float(np.median(x[max(0, i - half) : i + half + 1]))
    return out


# ---------------------------------------------------------------- comparison of several statistics

# The statistics whose candidate/baseline ratio ``compare_statistics`` estimates: a nearest-rank
# percentile (its p) or the mean (None).
RATIO_STATISTICS: dict[str, float | None] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9, "mean": None}

SIGNIFICANCE_RULE = (
    "a statistic differs significantly when the bootstrap CI of its candidate/baseline ratio excludes 1 "
    "and |ratio - 1| >= min_effect; for p50 the two-sided Mann-Whitney U test must also reject at "
    "1 - confidence (the rule of compare_samples). The rank test speaks to the centre of the "
    "distributions, not to their tails or means, so for those the bootstrap CI alone is the test"
)


class StatisticRatio(BaseModel):
    """One statistic of b over the same statistic of a (above 1: b is slower)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statistic: str
    ratio: Estimate
    significant: bool
    verdict: str


class StatisticsComparison(BaseModel):
    """b against a (a is the baseline) for several statistics from one bootstrap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ratios: dict[str, StatisticRatio]
    p_value: float
    method: str
    n_a: int
    n_b: int
    confidence: float
    min_effect: float


def _ratios_stat(names: tuple[str, ...]) -> Any:
    """A vectorised statistic returning [stat(b)/stat(a) for each name] along ``axis``."""

    def stat(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], axis: int = -1) -> npt.NDArray[np.float64]:
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        pcts = [p for p in (RATIO_STATISTICS[n] for n in names) if p is not None]
        ka = sorted({nearest_rank(a.shape[-1], p) - 1 for p in pcts})
        kb = sorted({nearest_rank(b.shape[-1], p) - 1 for p in pcts})
        pa = np.partition(a, ka, axis=-1) if ka else a
        pb = np.partition(b, kb, axis=-1) if kb else b
        out = []
        for n in names:
            p = RATIO_STATISTICS[n]
            if p is None:
                out.append(np.mean(b, axis=-1) / np.mean(a, axis=-1))
            else:
                out.append(pb[..., nearest_rank(b.shape[-1], p) - 1] / pa[..., nearest_rank(a.shape[-1], p) - 1])
        return np.stack(out, axis=0)

    return stat


def compare_statistics(
    a_s: _Samples,
    b_s: _Samples,
    statistics: tuple[str, ...] | list[str] = ("p50", "p99", "mean"),
    *,
    confidence: float = CONFIDENCE,
    min_effect: float = 0.02,
    seed: int = 0,
    n_resamples: int = 2000,
    max_samples: int = 5000,
) -> StatisticsComparison:
    """Ratios b/a of several statistics (names from ``RATIO_STATISTICS``), each with a percentile
    bootstrap CI and a significance decision (``SIGNIFICANCE_RULE``). One bootstrap serves all
    of them, so asking for the mean beside p50 and p99 costs little. With the same seed, p50 and
    p99 come out as ``compare_samples`` gives them."""
    _check_confidence(confidence)
    names = tuple(dict.fromkeys(statistics))
    unknown = [n for n in names if n not in RATIO_STATISTICS]
    if unknown or not names:
        raise ValueError(f"unknown statistic(s) {unknown or names}; choose from {', '.join(RATIO_STATISTICS)}")
    if not 0.0 <= min_effect < 1.0:
        raise ValueError(f"min_effect must be in [0, 1), got {min_effect}")
    a, b = _as_samples(a_s, "baseline samples (a)"), _as_samples(b_s, "candidate samples (b)")
    if a.size < 2 or b.size < 2:
        raise ValueError("comparing needs at least 2 samples on each side")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("latency samples must be positive to form ratios")
    stat = _ratios_stat(names)
    points = [float(v) for v in stat(a, b)]
    kw: dict[str, Any] = dict(
        n_resamples=n_resamples, vectorized=True, paired=False, method="percentile",
        confidence_level=confidence, batch=max(1, 5_000_000 // max_samples),
    )
    data = (_thin(a, max_samples), _thin(b, max_samples))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate (constant) data: handled as missing bounds
        kw["rng" if _BOOTSTRAP_HAS_RNG else "random_state"] = np.random.default_rng(seed)
        boot = sps.bootstrap(data, stat, **kw)
        p = float(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    p = 1.0 if math.isnan(p) else p
    lows, highs = (np.atleast_1d(v) for v in boot.confidence_interval)
    ratios: dict[str, StatisticRatio] = {}
    for i, (name, r) in enumerate(zip(names, points)):
        lo, hi = float(lows[i]), float(highs[i])
        est = Estimate(value=r, ci_low=lo if math.isfinite(lo) else None, ci_high=hi if math.isfinite(hi) else None)
        excludes_one = (est.ci_low is not None and est.ci_low > 1.0) or (est.ci_high is not None and est.ci_high < 1.0)
        significant = excludes_one and abs(r - 1.0) >= min_effect and (name != "p50" or p < 1.0 - confidence)
        verdict = (
            f"{abs(r - 1) * 100:.1f}% {'slower' if r > 1 else 'faster'} (significant)" if significant
            else "no significant difference"
        )
        ratios[name] = StatisticRatio(statistic=name, ratio=est, significant=significant, verdict=verdict)
    thinned = ""
    if max(a.size, b.size) > max_samples:
        thinned = f", each side thinned to {max_samples} evenly spaced order statistics"
    method = (
        f"ratio = statistic of b / of a (percentiles nearest-rank); {confidence:.0%} CI: percentile bootstrap "
        f"(scipy.stats.bootstrap, {n_resamples} resamples, seed {seed}{thinned}); p-value: two-sided "
        f"Mann-Whitney U; min effect {min_effect:.0%}; {SIGNIFICANCE_RULE}"
    )
    return StatisticsComparison(
        ratios=ratios, p_value=p, method=method, n_a=int(a.size), n_b=int(b.size),
        confidence=confidence, min_effect=min_effect,
    )


def inverse_ratio(ratio: Estimate, scale: float = 1.0) -> Estimate:
    """``scale / ratio`` with its CI bounds inverted (and swapped): the throughput ratio from a
    mean-latency ratio, since throughput = batch_size / mean latency (scale = ratio of batch sizes)."""
    if ratio.value <= 0 or scale <= 0:
        raise ValueError("ratios and scales must be positive to invert")
    lo, hi = ratio.ci_low, ratio.ci_high
    return Estimate(
        value=scale / ratio.value,
        ci_low=scale / hi if hi is not None and hi > 0 else None,
        ci_high=scale / lo if lo is not None and lo > 0 else None,
    )


__all__ += ["RATIO_STATISTICS", "SIGNIFICANCE_RULE", "StatisticRatio", "StatisticsComparison", "compare_statistics", "inverse_ratio"]


# ---------------------------------------------------------------- between-process spread


class ProcessSpread(BaseModel):
    """How much a figure moves between fresh processes of the same measurement (sweep ``--processes N``).

    Memory layout, allocator state and thread placement are fixed for the life of a
    process, so samples within one process are not independent of it: two processes
    can disagree by more than either one's CI admits. This says whether they did.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    processes: int
    counts: list[int]
    medians: list[float]
    median_of_medians: float
    min_median: float
    max_median: float
    range_rel: float
    cv_of_medians: float | None
    within_halfwidth_rel: float | None
    p_value: float | None
    significant: bool
    method: str
    warnings: list[str]


PROCESS_SPREAD_METHOD = (
    "per process: nearest-rank median; range_rel = (max - min) / median of the process medians; "
    "cv_of_medians = std (ddof=1) / mean of the process medians; within_halfwidth_rel = the largest "
    "relative half-width of a process's own 95% median CI (distribution-free); p_value: Kruskal-Wallis H "
    "test that all processes draw from one distribution; significant when p < 1 - confidence and "
    "range_rel >= DRIFT_MIN_REL and range_rel exceeds twice within_halfwidth_rel"
)


def process_spread(groups: list[_Samples], confidence: float = CONFIDENCE) -> ProcessSpread:
    """Between-process spread of the median, from each process's latency samples (one group per process)."""
    _check_confidence(confidence)
    arrays = [_as_samples(g, f"samples of process {i}") for i, g in enumerate(groups)]
    if not arrays:
        raise ValueError("process_spread needs the samples of at least one process")
    sorted_arrays = [np.sort(a) for a in arrays]
    medians = [percentile_sorted(s, 50) for s in sorted_arrays]
    mom = float(np.median(medians))
    lo, hi = min(medians), max(medians)
    range_rel = (hi - lo) / mom if mom > 0 else 0.0
    cv = None
    if len(medians) > 1:
        mean = float(np.mean(medians))
        cv = float(np.std(medians, ddof=1)) / mean if mean > 0 else 0.0
    halfwidths = [median_ci_halfwidth_rel(s, confidence) for s in sorted_arrays]
    finite = [h for h in halfwidths if math.isfinite(h)]
    within = max(finite) if finite else None
    p: float | None = None
    if len(arrays) > 1 and all(a.size >= 2 for a in arrays):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = float(sps.kruskal(*arrays).pvalue)
        except ValueError:  # every value identical
            p = 1.0
        if math.isnan(p):
            p = 1.0
    significant = bool(
        p is not None and p < 1.0 - confidence and range_rel >= DRIFT_MIN_REL
        and (within is None or range_rel > 2 * within)
    )
    notes: list[str] = []
    if significant:
        notes.append(
            f"between-process spread: the medians of {len(arrays)} fresh processes range from {_ms(lo)} to {_ms(hi)} "
            f"({range_rel * 100:.1f}% of their median), more than each process's own CI allows"
            + (f" (±{within * 100:.1f}%)" if within is not None else "")
            + "; process state (memory layout, allocator) matters here: report the merged figures and use more --processes"
        )
    return ProcessSpread(
        processes=len(arrays), counts=[int(a.size) for a in arrays], medians=medians, median_of_medians=mom,
        min_median=lo, max_median=hi, range_rel=range_rel, cv_of_medians=cv, within_halfwidth_rel=within,
        p_value=p, significant=significant, method=PROCESS_SPREAD_METHOD, warnings=notes,
    )


__all__ += ["ProcessSpread", "PROCESS_SPREAD_METHOD", "process_spread"]


# ---------------------------------------------------------------- scenario verdicts (early stopping), offline, server
# MLPerf LoadGen's early-stopping rule generalised to any percentile, and the
# figures the multi-stream, offline and server scenarios report.

__all__ += [
    "EARLY_STOPPING_CONFIDENCE", "EARLY_STOPPING_RULE", "EarlyStopping", "early_stopping_min_passing",
    "early_stopping", "offline_throughput", "completed_per_second", "brief_summary",
]

from pydantic import Field  # noqa: E402  (this section's models document their fields)

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
