"""The statistics the report's charts draw, appended to stats.py: histogram, ECDF, rolling median."""

from __future__ import annotations

import numpy as np
import pytest

from infermeter import stats as S


def test_histogram_counts_every_sample_once():
    x = np.random.default_rng(1).lognormal(-7, 0.4, 5000)
    h = S.histogram(x)
    assert h.count == 5000 and h.below == h.above == 0 and sum(h.counts) == 5000
    assert len(h.edges) == len(h.counts) + 1 and 10 <= len(h.counts) <= 120
    assert h.edges[0] == x.min() and h.edges[-1] == x.max()
    ref, _ = np.histogram(x, bins=h.edges)
    assert h.counts == ref.tolist()


def test_histogram_range_counts_what_it_leaves_out():
    x = np.r_[np.linspace(1.0, 2.0, 100), [50.0, 60.0], [0.5]]
    h = S.histogram(x, lower=1.0, upper=2.0)
    assert (h.below, h.above, sum(h.counts)) == (1, 2, 100)
    assert S.histogram([3.0, 3.0, 3.0]).counts == [3]  # one value: one bin
    assert len(S.histogram(np.arange(1000.0)).counts) == 10  # Freedman-Diaconis: width 2 IQR / n^(1/3) = 100
    assert len(S.histogram(np.random.default_rng(0).normal(0, 1, 10**5), max_bins=15).counts) == 15
    with pytest.raises(ValueError):
        S.histogram(x, lower=3.0, upper=2.0)
    with pytest.raises(ValueError):
        S.histogram([])


def test_ecdf_steps_agree_with_nearest_rank():
    x = np.random.default_rng(2).exponential(1.0, 1001)
    xs, f = S.ecdf(x)
    assert np.all(np.diff(xs) >= 0) and f[0] == 1 / 1001 and f[-1] == 1.0
    for p in S.PERCENTILES.values():  # the p-th percentile is the first step reaching p/100
        assert xs[np.argmax(f >= p / 100 - 1e-12)] == S.percentile(x, p)
    xt, ft = S.ecdf(x, max_points=50)
    assert len(xt) <= 50 and xt[0] == xs[0] and xt[-1] == xs[-1] and ft[-1] == 1.0
    assert set(zip(xt.tolist(), ft.tolist())) <= set(zip(xs.tolist(), f.tolist()))  # exact points, thinned


def test_rolling_median_follows_a_step_and_ignores_single_spikes():
    x = np.r_[np.full(200, 1.0), np.full(200, 2.0)]
    x[[50, 300]] = 100.0  # single slow calls
    m = S.rolling_median(x, window=21)
    assert m.shape == x.shape
    assert np.all(m[:190] == 1.0) and np.all(m[211:] == 2.0)
    assert m[0] == 1.0 and m[-1] == 2.0  # no single-sample wobble at the ends
    mid = np.random.default_rng(3).normal(10, 1, 300)
    ref = [np.median(mid[i - 10 : i + 11]) for i in range(10, 290)]
    assert np.allclose(S.rolling_median(mid, 21)[10:290], ref)
    assert S.rolling_median([4.0]).tolist() == [4.0]


def test_rolling_window_is_odd_and_bounded():
    for n in (1, 2, 3, 10, 100, 1000, 10_000, 1_000_000):
        w = S.rolling_window(n)
        assert 1 <= w <= max(n, 1) and w % 2 == 1 and w <= 201
    with pytest.raises(ValueError):
        S.rolling_median([1.0, 2.0], window=0)
