"""Comparing stored runs: a table of N runs against a baseline, and the regression check CI runs.

Library side of ``infermeter compare`` and ``infermeter check``; the CLI only parses and renders.
Every ratio and significance decision comes from ``stats.compare_statistics`` on the raw
samples, so ``compare`` and ``check`` call the same things different by the same rule.
``table`` builds the comparison, ``check`` decides regressions, ``select`` finds runs in a store.

Regression rule (``REGRESSION_RULE``): a metric regressed when its candidate/baseline
difference is significant (``stats.SIGNIFICANCE_RULE``: bootstrap CI of the ratio excludes 1,
the effect is at least ``min_effect``, and for p50 the Mann-Whitney U test rejects too) AND
the ratio's point estimate is worse than ``1 + max_regression``: latency ratio above it, or,
since lower throughput is worse, baseline/candidate throughput above it.

Pairing rule (``PAIRING_RULE``): runs are paired by (spec, batch size, scenario). A tag
(NAME=VALUE) selects the newest ok run carrying it for each such key; an id selects that run.
One baseline and one candidate are paired as given (a note says when their keys differ).
Without a candidate, each baseline gets the newest ok run of its key that is not a baseline
run and, when the baseline came from a tag, does not carry that tag.
"""

from __future__ import annotations

from .check import (DEFAULT_CHECK_METRICS, PAIRING_RULE, REGRESSION_RULE, CheckOutcome, MetricCheck, PairCheck,
                    check_regression, environment_differences, pair_runs)
from .select import get_run, get_sweep_points, parse_tag_ref, resolve_runs, select_check_runs
from .table import METRICS, ComparisonTable, MetricCell, RunRow, compare_runs, sweep_points

__all__ = [
    "METRICS", "DEFAULT_CHECK_METRICS", "REGRESSION_RULE", "PAIRING_RULE", "MetricCell", "RunRow",
    "ComparisonTable", "MetricCheck", "PairCheck", "CheckOutcome", "compare_runs", "sweep_points",
    "check_regression", "pair_runs", "environment_differences", "get_run", "get_sweep_points", "resolve_runs",
    "select_check_runs", "parse_tag_ref",
]
