"""Noise warnings that travel with a result, and the rule that ends warm-up."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from ._base import _as_samples, _check_confidence, _ms, _Samples
from .percentiles import CONFIDENCE, percentile_ci_sorted, percentile_sorted

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
