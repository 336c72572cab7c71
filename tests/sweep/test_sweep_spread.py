"""stats.process_spread: the between-process statistic a --processes N sweep reports."""

from __future__ import annotations

import numpy as np
import pytest

from infermeter.stats import process_spread


def test_same_distribution_is_not_significant():
    rng = np.random.default_rng(1)
    groups = [1e-3 * (1 + 0.05 * rng.standard_normal(2000)) for _ in range(4)]
    s = process_spread(groups)
    assert s.processes == 4 and s.counts == [2000] * 4
    assert s.median_of_medians == pytest.approx(1e-3, rel=0.01)
    assert s.range_rel < 0.02 and s.cv_of_medians is not None and s.cv_of_medians < 0.01
    assert not s.significant and s.warnings == []
    assert s.within_halfwidth_rel is not None and 0 < s.within_halfwidth_rel < 0.01


def test_shifted_process_is_significant_and_warns():
    rng = np.random.default_rng(2)
    base = [1e-3 * (1 + 0.02 * rng.standard_normal(1000)) for _ in range(2)]
    slow = 1.2e-3 * (1 + 0.02 * rng.standard_normal(1000))
    s = process_spread([*base, slow])
    assert s.max_median == pytest.approx(1.2e-3, rel=0.01)
    assert s.range_rel == pytest.approx(0.2, abs=0.02)
    assert s.p_value is not None and s.p_value < 1e-6
    assert s.significant
    assert len(s.warnings) == 1 and "between-process spread" in s.warnings[0] and "--processes" in s.warnings[0]


def test_tiny_but_detectable_shift_is_not_called_significant():
    # With many samples the rank test rejects a 0.5% shift; the 2% effect floor keeps it quiet.
    rng = np.random.default_rng(3)
    a = 1e-3 * (1 + 0.01 * rng.standard_normal(20000))
    b = a * 1.005
    s = process_spread([a, b])
    assert s.p_value is not None and s.p_value < 0.05
    assert not s.significant


def test_edge_cases():
    one = process_spread([[1.0, 2.0, 3.0]])
    assert one.processes == 1 and one.cv_of_medians is None and one.p_value is None and not one.significant
    same = process_spread([[1.0] * 5, [1.0] * 5])
    assert same.range_rel == 0 and same.p_value == 1.0 and not same.significant
    with pytest.raises(ValueError):
        process_spread([])
