"""stats.py against numpy/scipy references and known ground truth."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from infermeter import stats as S
from infermeter.result import LatencyStats, Throughput

# ---------------------------------------------------------------- percentiles


def _numpy_is_ambiguous(n: int, p: float) -> bool:
    """numpy computes n * (p/100) in floats; near an integer that can round across it."""
    x = n * (p / 100.0)
    return abs(x - round(x)) <= 1e-9 * max(1.0, x) and x != round(x)


@pytest.mark.parametrize("seed", range(8))
def test_percentile_matches_numpy_inverted_cdf(seed: int) -> None:
    rng = np.random.default_rng(seed)
    checked = 0
    for _ in range(150):
        n = int(rng.integers(1, 3000))
        p = float(rng.choice([rng.uniform(0.01, 100.0), *S.PERCENTILES.values(), 100.0, 25.0, 75.0]))
        if _numpy_is_ambiguous(n, p):
            continue
        x = rng.lognormal(-5, 0.5, n)
        if rng.random() < 0.3:
            x = np.round(x, 4)  # ties, as a coarse clock gives
        ref = float(np.percentile(x, p, method="inverted_cdf"))
        assert S.percentile(x, p) == ref
        assert S.percentile_sorted(np.sort(x), p) == ref
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("n", [1000, 2000, 10000, 100000])
def test_nearest_rank_is_exact_where_numpy_float_rounding_is_not(n: int) -> None:
    # 99.9/100*1000 == 999.0000000000001 in floats: numpy returns the max; the definition says rank 999.
    exact = math.ceil(Fraction("99.9") * n / 100)
    assert S.nearest_rank(n, 99.9) == exact
    x = np.arange(1.0, n + 1)
    assert S.percentile(x, 99.9) == float(exact)


def test_percentile_definition_small_cases() -> None:
    x = [5.0, 1.0, 4.0, 2.0, 3.0]  # unsorted on purpose
    assert [S.percentile(x, p) for p in (1, 20, 20.0001, 50, 90, 100)] == [1.0, 1.0, 2.0, 3.0, 5.0, 5.0]
    assert S.percentile([7.0], 99.9) == 7.0


@pytest.mark.parametrize("p", [0, -1, 100.5, float("nan")])
def test_percentile_rejects_bad_p(p: float) -> None:
    with pytest.raises(ValueError):
        S.percentile([1.0, 2.0], p)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [[1.0, 2.0]]])
def test_bad_samples_raise(bad: list) -> None:
    with pytest.raises(ValueError):
        S.percentile(bad, 50)
    with pytest.raises(ValueError):
        S.describe_latency(bad)


# ---------------------------------------------------------------- percentile CIs


@pytest.mark.parametrize("n", [5, 10, 37, 200, 1000, 4321])
@pytest.mark.parametrize("p", [50, 90, 99, 99.9])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_percentile_ci_matches_scipy_quantile_test(n: int, p: float, confidence: float) -> None:
    x = np.random.default_rng(n).lognormal(0, 1, n)
    ref = sps.quantile_test(x, q=1.0, p=p / 100).confidence_interval(confidence)
    lo, hi = S.percentile_ci(x, p, confidence)
    assert (None if np.isnan(ref.low) else float(ref.low)) == lo
    assert (None if np.isnan(ref.high) else float(ref.high)) == hi


@pytest.mark.parametrize("n", [20, 200, 1000, 5000])
@pytest.mark.parametrize("p", [50, 90, 99])
def test_percentile_ci_ranks_have_exact_binomial_coverage(n: int, p: float) -> None:
    lo, hi = S._ci_ranks(n, float(p), 0.95)
    cdf = sps.binom(n, p / 100).cdf
    miss_low = cdf(lo - 1) if lo is not None else 0.0  # fewer than lo samples below the quantile
    miss_high = 1 - cdf(hi - 1) if hi is not None else 0.0
    assert miss_low <= 0.025 + 1e-12 and miss_high <= 0.025 + 1e-12
    assert 1 - miss_low - miss_high >= 0.95


def test_percentile_ci_coverage_by_simulation() -> None:
    sigma, n, reps = 0.6, 200, 2000
    rng = np.random.default_rng(42)
    data = np.sort(rng.lognormal(0, sigma, (reps, n)), axis=1)
    for p in (50, 90):
        truth = sps.lognorm.ppf(p / 100, sigma)
        hits = 0
        for row in data:
            lo, hi = S.percentile_ci_sorted(row, p)
            assert lo is not None and hi is not None
            hits += lo <= truth <= hi
        assert hits / reps >= 0.93, (p, hits / reps)


def test_percentile_ci_missing_bounds() -> None:
    x = np.random.default_rng(0).random(500)
    lo, hi = S.percentile_ci(x, 99.9)
    assert hi is None and lo is not None and lo <= S.percentile(x, 99.9)
    assert S.percentile_ci([1.0], 50) == (None, None)
    lo, hi = S.percentile_ci(x, 50)
    assert lo is not None and hi is not None and lo <= S.percentile(x, 50) <= hi


def test_median_ci_halfwidth_rel() -> None:
    s = np.sort(np.random.default_rng(3).lognormal(0, 0.3, 1001))
    p50 = S.percentile_sorted(s, 50)
    lo, hi = S.percentile_ci_sorted(s, 50)
    assert S.median_ci_halfwidth_rel(s) == pytest.approx(max(p50 - lo, hi - p50) / p50)
    assert S.median_ci_halfwidth_rel(s[:5]) == math.inf  # no bound yet at n=5
    assert S.median_ci_halfwidth_rel(np.array([])) == math.inf
    assert S.median_ci_halfwidth_rel(np.full(100, 0.01)) == 0.0
    # growing arrays: ranks are cached per (n, confidence)
    before = S._ci_ranks.cache_info().hits
    for _ in range(3):
        S.median_ci_halfwidth_rel(s[:777])
    assert S._ci_ranks.cache_info().hits >= before + 2


def test_min_samples_for_percentile() -> None:
    assert S.min_samples_for_percentile(99, 0.99) == 459
    assert S.min_samples_for_percentile(90, 0.99) == 44
    assert S.min_samples_for_percentile() == 459
    for p, c in [(99, 0.95), (99.9, 0.99), (50, 0.75), (97, 0.9)]:
        n = S.min_samples_for_percentile(p, c)
        assert (p / 100) ** n <= 1 - c < (p / 100) ** (n - 1)


# ---------------------------------------------------------------- mean, summary, throughput


@pytest.mark.parametrize("n", [2, 3, 30, 1000])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_matches_scipy_t_interval(n: int, confidence: float) -> None:
    x = np.random.default_rng(n).lognormal(-4, 0.4, n)
    ref = sps.t.interval(confidence, n - 1, loc=x.mean(), scale=sps.sem(x))
    assert S.mean_ci(x, confidence) == pytest.approx(ref, rel=1e-12)


def test_mean_ci_degenerate() -> None:
    assert S.mean_ci([0.5]) == (None, None)
    assert S.mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError):
        S.mean_ci([1.0, 2.0], confidence=1.0)


def test_describe_latency_fields() -> None:
    x = np.random.default_rng(7).lognormal(-5, 0.3, 777)
    d = S.describe_latency(x, confidence=0.9)
    assert isinstance(d, LatencyStats)
    assert d.count == 777 and d.unit == "s" and d.per == "call" and d.confidence == 0.9
    assert d.percentile_definition == "nearest-rank" and "binomial" in d.ci_method
    assert d.mean.value == pytest.approx(x.mean())
    assert (d.mean.ci_low, d.mean.ci_high) == pytest.approx(S.mean_ci(x, 0.9))
    assert d.std == pytest.approx(np.std(x, ddof=1))
    assert (d.min, d.max) == (x.min(), x.max())
    for name, p in S.PERCENTILES.items():
        est = getattr(d, name)
        assert est.value == S.percentile(x, p)
        assert (est.ci_low, est.ci_high) == S.percentile_ci(x, p, 0.9)
        assert est.ci_low is None or est.ci_low <= est.value
        assert est.ci_high is None or est.ci_high >= est.value
    assert d.p999.ci_high is None  # 777 samples cannot bound p99.9 from above
    assert d.samples == x.tolist()  # raw, in given order
    LatencyStats.model_validate_json(d.model_dump_json())  # round-trips


def test_describe_latency_options_and_single_sample() -> None:
    d = S.describe_latency([0.02, 0.01, 0.03], per="block", block_size=10, keep_samples=False)
    assert (d.per, d.block_size, d.samples) == ("block", 10, [])
    one = S.describe_latency([0.004])
    assert one.count == 1 and one.std == 0.0 and one.p50.value == 0.004
    assert one.mean.ci_low is None and one.p50.ci_low is None and one.p50.ci_high is None


def test_throughput_inverts_the_mean_ci() -> None:
    d = S.describe_latency(np.random.default_rng(1).normal(0.01, 0.001, 500))
    t = S.throughput(d, batch_size=8)
    assert isinstance(t, Throughput) and t.unit == "samples/s"
    assert t.samples_per_s.value == pytest.approx(8 / d.mean.value)
    assert t.samples_per_s.ci_low == pytest.approx(8 / d.mean.ci_high)
    assert t.samples_per_s.ci_high == pytest.approx(8 / d.mean.ci_low)
    assert "mean" in t.method and "inverted" in t.method
    t1 = S.throughput(S.describe_latency([0.5]), batch_size=1)
    assert t1.samples_per_s.value == 2.0 and t1.samples_per_s.ci_low is None
    with pytest.raises(ValueError):
        S.throughput(d, batch_size=0)


# ---------------------------------------------------------------- quality checks


def test_noise_warnings_silent_on_tight_stationary_run() -> None:
    x = np.random.default_rng(0).normal(0.010, 0.0003, 2000)
    assert S.noise_warnings(x) == []
    assert S.noise_warnings(np.random.default_rng(0).lognormal(-5, 1.0, 19)) == []  # too few to judge


def test_noise_warnings_fire() -> None:
    rng = np.random.default_rng(1)
    noisy = rng.lognormal(np.log(0.01), 0.25, 1000)
    (w,) = [w for w in S.noise_warnings(noisy) if w.startswith("std is")]
    assert "% of the mean (CV > 10%)" in w

    drifting = np.r_[rng.normal(0.010, 0.0002, 500), rng.normal(0.012, 0.0002, 500)]
    warns = S.noise_warnings(drifting)
    assert any(w.startswith("drift: median went from 10.0") and "12.0" in w and " ms" in w for w in warns)

    spiky = rng.normal(0.010, 0.0002, 1000)
    spiky[::40] = 0.05  # 2.5% interruptions
    (w,) = [w for w in S.noise_warnings(spiky) if w.startswith("outliers")]
    assert "25 of 1000" in w and "max 50.00 ms" in w
    assert all("\n" not in w for w in S.noise_warnings(spiky))


def _windows(rng: np.random.Generator, medians: list[float], size: int, sigma: float) -> list[np.ndarray]:
    return [m * rng.lognormal(0, sigma, size) for m in medians]


def test_warmup_steady_stops_on_flat_noisy_workload() -> None:
    rng = np.random.default_rng(5)
    for sigma, size in ((0.02, 20), (0.1, 20), (0.2, 20), (0.3, 200)):
        w = _windows(rng, [0.01] * 40, size, sigma)
        steady = [S.warmup_steady(a, b) for a, b in zip(w, w[1:])]
        assert sum(steady) / len(steady) >= 0.5, sigma
        assert any(steady[:5]), sigma  # stops within a few windows


def test_warmup_steady_never_stops_while_getting_much_faster() -> None:
    rng = np.random.default_rng(6)
    # windows sized as the docstring asks: the median known to ~tolerance/2
    for sigma, size in ((0.01, 20), (0.1, 20), (0.3, 200), (0.5, 500)):
        for _ in range(5):
            w = _windows(rng, [0.1 * 0.8**k for k in range(15)], size, sigma)
            assert not any(S.warmup_steady(a, b) for a, b in zip(w, w[1:])), sigma
    # a smooth within-window decline, no noise
    t = 0.1 * 0.8 ** (np.arange(200) / 20)
    assert not any(S.warmup_steady(t[i : i + 20], t[i + 20 : i + 40]) for i in range(0, 160, 20))


def test_warmup_steady_edge_cases() -> None:
    assert S.warmup_steady([0.0, 0.0], [0.0, 0.0])
    assert S.warmup_steady([0.01] * 5, [0.01] * 5)
    assert not S.warmup_steady([0.01] * 5, [0.0107] * 5)  # 7%: rank test rejects, no noise to hide in
    assert S.warmup_steady([0.010] * 5, [0.0104] * 5)  # within tolerance
    with pytest.raises(ValueError):
        S.warmup_steady([], [1.0])


# ---------------------------------------------------------------- comparison


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compare_same_distribution_is_not_significant(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    a, b = rng.lognormal(-5, 0.3, 3000), rng.lognormal(-5, 0.3, 3000)
    c = S.compare_samples(a, b)
    assert not c.significant and c.verdict == "no significant difference"
    assert c.ratio_p50.ci_low <= 1.0 <= c.ratio_p50.ci_high
    assert c.ratio_p50.value == pytest.approx(S.percentile(b, 50) / S.percentile(a, 50))
    assert c.ratio_p99.value == pytest.approx(S.percentile(b, 99) / S.percentile(a, 99))


def test_compare_shift_is_significant_and_deterministic() -> None:
    rng = np.random.default_rng(9)
    a, b = rng.lognormal(-5, 0.3, 2000), 1.10 * rng.lognormal(-5, 0.3, 2000)
    c = S.compare_samples(a, b, seed=3)
    assert c.significant and c.p_value < 1e-6
    assert c.verdict.startswith("candidate is ") and c.verdict.endswith("% slower (significant)")
    assert c.ratio_p50.ci_low <= c.ratio_p50.value <= c.ratio_p50.ci_high
    assert 1.0 < c.ratio_p50.ci_low and c.ratio_p50.ci_high < 1.25
    assert c.ratio_p99.ci_low is not None and c.ratio_p99.ci_high is not None
    assert S.compare_samples(a, b, seed=3) == c
    assert S.compare_samples(b, a).verdict.endswith("% faster (significant)")
    assert "Mann-Whitney" in c.method and "bootstrap" in c.method and (c.n_a, c.n_b) == (2000, 2000)


def test_compare_tiny_effect_with_many_samples_is_not_reported() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.01, 0.0001, 20000), 1.005 * rng.normal(0.01, 0.0001, 20000)
    c = S.compare_samples(a, b)  # detectable (p tiny) but below min_effect, and thinned to 5000
    assert c.p_value < 1e-6 and not c.significant
    assert "thinned" in c.method


def test_compare_rejects_too_few_samples() -> None:
    with pytest.raises(ValueError):
        S.compare_samples([0.01], [0.01, 0.02])


def test_compare_constant_samples() -> None:
    same = S.compare_samples([0.01] * 10, [0.01] * 10)
    assert not same.significant and same.p_value == 1.0 and same.ratio_p50.value == 1.0
    assert S.compare_samples([0.01] * 10, [0.02] * 10).verdict == "candidate is 100.0% slower (significant)"
