"""Early stopping and verdicts on synthetic inputs: exact numbers, LoadGen's where it prints them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from infermeter.scenarios.verdict import Rules, judge
from infermeter.stats import early_stopping, early_stopping_min_passing, min_samples_for_percentile


def test_min_passing_matches_loadgen_and_min_samples() -> None:
    # h(0) is the k=0 rule: (p/100)^n <= 1 - confidence
    for p in (50, 90, 95, 99, 99.9):
        assert early_stopping_min_passing(0, p) == min_samples_for_percentile(p, 0.99)
    assert early_stopping_min_passing(0, 99) == 459
    # LoadGen 6.0 summaries: "Processed at least 64 queries" (p90), 662 for p99 (h(1) + 1)
    assert early_stopping_min_passing(1, 90) + 1 == 64
    assert early_stopping_min_passing(1, 99) + 1 == 662


@pytest.mark.parametrize("t,p", [(0, 90), (1, 90), (5, 99), (40, 99), (300, 97.5), (7, 50)])
def test_min_passing_is_the_binomial_boundary(t: int, p: float) -> None:
    """h is the smallest count of under-queries with P(Binomial(h+t, 1-p) <= t) <= 0.01."""
    h = early_stopping_min_passing(t, p)
    q_over = 1 - p / 100
    assert sps.binom.cdf(t, h + t, q_over) <= 0.01 + 1e-12
    assert sps.binom.cdf(t, h - 1 + t, q_over) > 0.01


def test_needed_grows_with_over_count() -> None:
    need = [early_stopping_min_passing(t, 99) + t for t in range(0, 60)]
    assert all(b > a for a, b in zip(need, need[1:]))


def test_estimate_matches_loadgen_single_stream_summary() -> None:
    # LoadGen, 999 queries at p90: "Would discard 76 highest latency queries" -> t = 77,
    # estimate = sorted[n - t]
    x = np.random.default_rng(3).permutation(np.arange(1, 1000, dtype=float))
    es = early_stopping(x, 90)
    assert es.passed and es.n == 999 and es.over == 77 and es.needed == 64
    assert es.estimate == np.sort(x)[999 - 77]
    assert es.estimate >= np.percentile(x, 90)  # an upper confidence bound on p90


def test_estimate_needs_enough_queries() -> None:
    es = early_stopping(np.ones(63), 90)
    assert not es.passed and es.estimate is None and es.needed == 64
    assert early_stopping(np.ones(64), 90).passed


def test_bound_rule() -> None:
    under = np.full(459, 1.0)
    assert early_stopping(under, 99, bound_s=2.0).passed
    assert not early_stopping(under[:458], 99, bound_s=2.0).passed
    one_over = np.append(np.full(661, 1.0), 3.0)
    es = early_stopping(one_over, 99, bound_s=2.0)
    assert es.over == 1 and es.needed == 662 and es.passed
    assert not early_stopping(one_over[1:], 99, bound_s=2.0).passed
    # latency exactly at the bound is not over it (LoadGen: over means > bound)
    assert early_stopping(np.full(459, 2.0), 99, bound_s=2.0).over == 0


def test_valid_closed_loop_verdict() -> None:
    rules = Rules("single-stream", 1.0, 100, 90.0)
    v = judge(rules, duration_s=2.0, queries=1000, latencies_s=np.linspace(1e-3, 2e-3, 1000))
    assert v.valid and v.label == "VALID" and not v.reasons and not v.recommendations
    assert v.checks["early_stopping"]["estimate"] is not None
    assert v.checks["min_duration"]["met"] and v.checks["min_queries"]["met"]


def test_short_run_is_invalid_with_run_longer() -> None:
    rules = Rules("single-stream", 5.0, 100, 90.0)
    v = judge(rules, duration_s=1.2, queries=50, latencies_s=np.ones(50))
    assert not v.valid and v.label == "INVALID"
    text = " ".join(v.reasons)
    assert "min duration" in text and "min query count" in text and "early stopping" in text
    assert any(r.startswith("run longer") for r in v.recommendations)


def test_server_over_bound_says_lower_qps() -> None:
    rules = Rules("server", 1.0, 100, 99.0, bound_s=0.010)
    lat = np.concatenate([np.full(900, 0.005), np.full(100, 0.050)])  # 10% over: p99 is 50 ms
    v = judge(rules, duration_s=5.0, queries=1000, latencies_s=lat, qps=200.0)
    assert not v.valid
    assert v.recommendations[0].startswith("lower --qps")
    assert v.checks["latency_bound"]["met"] is False and v.checks["latency_bound"]["actual_s"] == 0.050
    assert not any(r.startswith("run longer") for r in v.recommendations)


def test_server_within_bound_but_too_few_queries_says_run_longer() -> None:
    rules = Rules("server", 1.0, 100, 99.0, bound_s=0.010)
    lat = np.append(np.full(600, 0.005), [0.02, 0.02])  # p99 within the bound, 2 over
    v = judge(rules, duration_s=5.0, queries=602, latencies_s=lat, qps=100.0)
    es = v.checks["early_stopping"]
    assert v.checks["latency_bound"]["met"] and not es["met"] and es["over"] == 2
    assert not v.valid
    assert any(r.startswith("run longer") and "more queries" in r for r in v.recommendations)


def test_failed_run_is_invalid() -> None:
    rules = Rules("offline", 0.0, 1, None)
    v = judge(rules, duration_s=3.0, queries=10, latencies_s=np.ones(10), failure="the model raised")
    assert not v.valid and "did not finish" in v.reasons[0]
    assert "early_stopping" not in v.checks  # offline has no early stopping
