"""Every statistic and confidence interval infermeter reports, computed in one place.

Why one module: a figure on screen, in JSON, in the store and in a comparison
must mean the same thing. Percentiles are nearest-rank (MLPerf LoadGen's
definition: a value that was actually observed, never an interpolation); every
percentile carries a distribution-free confidence interval, because latency
distributions are skewed and heavy-tailed and normal-theory intervals for
their tails are wrong. Times are seconds here; messages show milliseconds.

The package is split along its ideas; import from ``infermeter.stats``, which
re-exports all of them:

- ``percentiles``: nearest-rank percentiles and their CIs, the mean's CI,
  ``describe_latency``, ``throughput``;
- ``noise``: noise warnings and the warm-up rule;
- ``compare``: b against a baseline a (``compare_samples``, ``compare_statistics``, ratios);
- ``spread``: between-process spread of the median;
- ``shapes``: histogram, ECDF and rolling median for charts;
- ``scenario``: LoadGen early stopping, offline and server figures;
- ``_base``: sample validation and formatting shared by all of them.
"""

from __future__ import annotations

from ._base import _as_samples, _Bound, _check_confidence, _ms, _Samples
from .compare import (
    _BOOTSTRAP_HAS_RNG,
    RATIO_STATISTICS,
    SIGNIFICANCE_RULE,
    Comparison,
    StatisticRatio,
    StatisticsComparison,
    _ratios_stat,
    _thin,
    compare_samples,
    compare_statistics,
    inverse_ratio,
)
from .noise import (
    CV_WARN,
    DRIFT_MIN_REL,
    MIN_SAMPLES_TO_JUDGE,
    OUTLIER_IQR_K,
    OUTLIER_SHARE_WARN,
    WARMUP_RULE,
    noise_warnings,
    warmup_steady,
)
from .percentiles import (
    CONFIDENCE,
    MEAN_CI_METHOD,
    PERCENTILE_CI_METHOD,
    PERCENTILE_DEFINITION,
    PERCENTILES,
    _ci_ranks,
    describe_latency,
    mean_ci,
    median_ci_halfwidth_rel,
    min_samples_for_percentile,
    nearest_rank,
    percentile,
    percentile_ci,
    percentile_ci_sorted,
    percentile_sorted,
    throughput,
)
from .scenario import (
    EARLY_STOPPING_CONFIDENCE,
    EARLY_STOPPING_RULE,
    EarlyStopping,
    brief_summary,
    completed_per_second,
    early_stopping,
    early_stopping_min_passing,
    offline_throughput,
)
from .shapes import Histogram, ecdf, histogram, rolling_median, rolling_window
from .spread import PROCESS_SPREAD_METHOD, ProcessSpread, process_spread

# Private helpers other modules and tests reach through ``infermeter.stats``.
_PRIVATE_REEXPORTS = (
    _as_samples, _Bound, _check_confidence, _ms, _Samples, _ci_ranks,
    _BOOTSTRAP_HAS_RNG, _ratios_stat, _thin,
)

__all__ = [
    # percentiles, mean, summary, throughput
    "CONFIDENCE", "PERCENTILES", "PERCENTILE_DEFINITION", "PERCENTILE_CI_METHOD", "MEAN_CI_METHOD",
    "nearest_rank", "percentile", "percentile_sorted", "percentile_ci", "percentile_ci_sorted", "mean_ci",
    "describe_latency", "median_ci_halfwidth_rel", "min_samples_for_percentile", "throughput",
    # noise warnings and warm-up
    "MIN_SAMPLES_TO_JUDGE", "CV_WARN", "DRIFT_MIN_REL", "OUTLIER_IQR_K", "OUTLIER_SHARE_WARN", "WARMUP_RULE",
    "noise_warnings", "warmup_steady",
    # comparison
    "Comparison", "compare_samples", "RATIO_STATISTICS", "SIGNIFICANCE_RULE", "StatisticRatio",
    "StatisticsComparison", "compare_statistics", "inverse_ratio",
    # between-process spread
    "ProcessSpread", "PROCESS_SPREAD_METHOD", "process_spread",
    # shapes for charts
    "Histogram", "histogram", "ecdf", "rolling_median", "rolling_window",
    # scenario statistics
    "EARLY_STOPPING_CONFIDENCE", "EARLY_STOPPING_RULE", "EarlyStopping", "early_stopping_min_passing",
    "early_stopping", "offline_throughput", "completed_per_second", "brief_summary",
]
