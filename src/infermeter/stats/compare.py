"""Comparing two samples: b against a baseline a, as ratios of statistics with bootstrap CIs
and a significance decision."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from ..result import Estimate
from ._base import _as_samples, _check_confidence, _Samples
from .percentiles import CONFIDENCE, nearest_rank

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
    not worth reporting). The p50 and p99 ratios of :func:`compare_statistics`, which holds
    the one implementation."""
    c = compare_statistics(
        a_s, b_s, ("p50", "p99"), confidence=confidence, min_effect=min_effect, seed=seed,
        n_resamples=n_resamples, max_samples=max_samples,
    )
    r50 = c.ratios["p50"]
    verdict = f"candidate is {r50.verdict}" if r50.significant else r50.verdict
    return Comparison(
        ratio_p50=r50.ratio, ratio_p99=c.ratios["p99"].ratio, p_value=c.p_value, significant=r50.significant,
        verdict=verdict, method=c.method, n_a=c.n_a, n_b=c.n_b, confidence=confidence,
    )


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
