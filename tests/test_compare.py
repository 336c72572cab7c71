"""Comparing runs and the regression check, against real runs of busy-wait spins with known speeds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import infermeter
import spin_compare
from infermeter.compare import (
    check_regression, compare_runs, environment_differences, get_run, pair_runs, resolve_runs,
    select_check_runs, sweep_points,
)
from infermeter.env import Env
from infermeter.errors import UsageError
from infermeter.report.markdown import check_markdown, comparison_markdown
from infermeter.result import ModelInfo, Result, SweepPoint
from infermeter.stats import compare_samples, compare_statistics, describe_latency, inverse_ratio, throughput
from infermeter.store import Store, new_id

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- synthetic results


def synthetic(samples, *, spec="m.onnx", batch=1, status="ok", sweep=None, created=T0, tags=None, env=None) -> Result:
    lat = describe_latency(samples) if samples is not None else None
    return Result(
        id=new_id(), invocation=new_id(), created=created, status=status, model=ModelInfo(spec=spec, backend="onnx"),
        batch_size=batch, latency=lat, throughput=throughput(lat, batch) if lat else None, sweep=sweep,
        tags=tags or {}, env=env, error=None if status == "ok" else "RuntimeError: boom",
    )


def gamma(scale: float, n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(20.0, scale / 20.0, n)


def test_compare_statistics_matches_compare_samples_and_adds_the_mean():
    a, b = gamma(1e-3, seed=1), gamma(1.1e-3, seed=2)
    many = compare_statistics(a, b, ("p50", "p99", "mean"))
    two = compare_samples(a, b)
    assert many.ratios["p50"].ratio == two.ratio_p50 and many.ratios["p99"].ratio == two.ratio_p99
    assert many.ratios["p50"].significant == two.significant and many.p_value == two.p_value
    assert many.ratios["mean"].ratio.value == pytest.approx(b.mean() / a.mean())
    assert many.ratios["mean"].significant and many.ratios["mean"].ratio.ci_low > 1.0
    same = compare_statistics(a, gamma(1e-3, seed=3), ("p50", "p99", "mean"))
    assert not any(r.significant for r in same.ratios.values())
    with pytest.raises(ValueError, match="unknown statistic"):
        compare_statistics(a, b, ("p42",))


def test_inverse_ratio_swaps_the_bounds():
    r = inverse_ratio(infermeter.result.Estimate(value=2.0, ci_low=1.6, ci_high=2.5), scale=4.0)
    assert (r.value, r.ci_low, r.ci_high) == (2.0, 1.6, 2.5)


def test_failed_runs_are_shown_not_tested_and_need_a_partner():
    base, other, failed = synthetic(gamma(1e-3)), synthetic(gamma(1e-3, seed=5)), synthetic(None, status="failed")
    table = compare_runs([base, failed, other], metrics=["p50", "throughput"])
    rows = {r.id: r for r in table.rows}
    assert rows[base.id].baseline and not rows[failed.id].tested and "boom" in rows[failed.id].note
    assert rows[other.id].tested and rows[other.id].cells["throughput"].ratio is not None
    with pytest.raises(UsageError, match="baseline run"):
        compare_runs([failed, base, other])
    with pytest.raises(UsageError, match="at least two runs"):
        compare_runs([base, failed])
    with pytest.raises(UsageError, match="unknown metric"):
        compare_runs([base, other], metrics=["p42"])
    assert compare_runs([base, other], baseline=other.id).baseline == other.id


def test_throughput_ratio_follows_the_mean_and_lower_is_worse():
    base, slow = synthetic(gamma(1e-3, seed=1), batch=4), synthetic(gamma(1.25e-3, seed=2), batch=4)
    cells = compare_runs([base, slow], metrics=["mean", "throughput"]).rows[1].cells
    mean, tp = cells["mean"], cells["throughput"]
    assert tp.ratio.value == pytest.approx(1 / mean.ratio.value) and tp.ratio.ci_low == pytest.approx(1 / mean.ratio.ci_high)
    assert tp.significant and tp.worse and tp.label.endswith("lower") and mean.label.endswith("slower")
    outcome = check_regression(base, slow, 0.1, ["throughput"])
    assert not outcome.passed and outcome.pairs[0].metrics[0].regressed
    assert check_regression(base, slow, 0.3, ["throughput"]).passed  # 1/0.8 = 1.25 < 1.3
    faster = check_regression(slow, base, 0.05, ["p50", "throughput"])
    assert faster.passed and all(m.verdict.startswith("improved") for m in faster.pairs[0].metrics)
    failed = check_regression(base, synthetic(None, batch=4, status="failed"), 0.05)
    assert not failed.passed and "boom" in failed.pairs[0].failed and "FAIL" in check_markdown(failed)


def test_sweep_points_prefer_merged_and_newest_ok_and_show_axes(tmp_path):
    sid = "sw" + new_id()

    def point(i, batch, *, repeat=None, status="ok", minutes=0, scale=1e-3):
        sp = SweepPoint(sweep_id=sid, point_key=f'{{"batch":{batch}}}', axes={"batch": batch, "threads": 2}, index=i, repeat=repeat)
        return synthetic(gamma(scale * batch, seed=i) if status == "ok" else None, batch=batch, status=status, sweep=sp,
                         created=T0 + timedelta(minutes=minutes))

    results = [
        point(0, 1, repeat=0), point(0, 1, repeat=1), point(0, 1, minutes=1),  # repeats and their merge
        point(1, 2, status="failed"), point(1, 2, minutes=5),  # a failed try, then a resumed ok one
        point(2, 4, status="failed"),
    ]
    with Store(tmp_path / "s.db") as st:
        for r in results:
            st.save(r)
        chosen = sweep_points(st.sweep(sid[:6]))
    assert [(r.sweep.index, r.sweep.repeat, r.status) for r in chosen] == [(0, None, "ok"), (1, None, "ok"), (2, None, "failed")]
    table = compare_runs(chosen, metrics=["p50", "mean"])
    assert table.axes == ["batch", "threads"] and table.rows[0].baseline
    assert table.rows[1].cells["p50"].significant and table.rows[1].cells["p50"].worse
    assert table.rows[1].cells["p50"].ratio.value == pytest.approx(2.0, rel=0.1)
    assert not table.rows[2].tested
    md = comparison_markdown(table, ["p50"])
    assert "| batch | threads |" in md.replace("run | ", "") and "(baseline)" in md


def test_environment_differences_and_pairing_by_key():
    env = Env(cpu_model="Xeon A", versions={"numpy": "1.26"})
    a = synthetic(gamma(1e-3), env=env)
    b = synthetic(gamma(1e-3), env=env.model_copy(update={"cpu_model": "Xeon B", "versions": {"numpy": "2.0"}}))
    diffs = environment_differences(a, b)
    assert "cpu_model: Xeon A → Xeon B" in diffs and "numpy: 1.26 → 2.0" in diffs
    b1, b8 = synthetic(gamma(1e-3), batch=1), synthetic(gamma(2e-3), batch=8)
    c1, c4 = synthetic(gamma(1e-3), batch=1), synthetic(gamma(2e-3), batch=4)
    pairs, notes = pair_runs([b1, b8], [c1, c4])
    assert [(b.id, c.id) for b, c in pairs] == [(b1.id, c1.id)]
    assert any(c4.id in n for n in notes) and any(b8.id in n for n in notes)
    with pytest.raises(UsageError, match="no candidate run pairs"):
        check_regression([b8], [c4, c1.model_copy(update={"batch_size": 2})])


# ---------------------------------------------------------------- real runs (ground truth)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One spec (spin_compare:tunable) measured at known speeds, tagged as a CI would tag branches."""
    path = tmp_path_factory.mktemp("cmp") / "store.db"
    out = {}
    old = spin_compare.FACTOR
    try:
        for name, factor in (("main", 1.0), ("same", 1.0), ("slow3", 1.03), ("slow20", 1.20)):
            spin_compare.FACTOR = factor
            out[name] = infermeter.bench(spin_compare.tunable, inputs=["x:float32[B,2]"], max_time_s=1.5, precision=0.02,
                                         min_iters=400, tags={"branch": name}, store=path)
    finally:
        spin_compare.FACTOR = old
    return path, out


def test_same_code_is_not_significant_and_passes(runs):
    _, r = runs
    table = compare_runs([r["main"], r["same"]])
    cells = table.rows[1].cells
    assert not cells["p50"].significant and cells["p50"].label == "n.s."
    assert table.pair_summary()["significant"] is False
    # p50 only: two runs' p99 differ by the machine's noise (see tests/integration/test_check.py)
    outcome = check_regression(r["main"], r["same"], max_regression=0.05, metrics=["p50"])
    assert outcome.passed and "PASS" in check_markdown(outcome)


def test_twenty_percent_slower_is_significant_and_fails(runs):
    _, r = runs
    table = compare_runs([r["main"], r["same"], r["slow3"], r["slow20"]])
    slow = table.rows[3].cells
    # the median of a spin is robust to a busy machine; the mean and p99 are not (tested on synthetic data)
    assert slow["p50"].significant and slow["p50"].worse and slow["p50"].ratio.value == pytest.approx(1.2, rel=0.05)
    assert slow["throughput"].ratio is not None and slow["p99"].ratio is not None
    outcome = check_regression(r["main"], r["slow20"], max_regression=0.05, metrics=["p50", "p99", "throughput"])
    assert not outcome.passed and outcome.pairs[0].metrics[0].regressed
    md = check_markdown(outcome)
    assert md.startswith("## infermeter check: FAIL") and "p50" in md and "**regressed" in md


def test_three_percent_slower_passes_a_five_percent_gate(runs):
    _, r = runs
    outcome = check_regression(r["main"], r["slow3"], max_regression=0.05, metrics=["p50"])
    p50 = outcome.pairs[0].metrics[0]
    assert outcome.passed and p50.significant and not p50.regressed and "within 5%" in p50.verdict
    assert not check_regression(r["main"], r["slow3"], max_regression=0.01, metrics=["p50"]).passed


def test_tags_select_newest_ok_run_per_key(runs):
    path, r = runs
    with Store(path) as st:
        bases, cands = select_check_runs(st, "branch=main", "branch=slow20")
        assert [b.id for b in bases] == [r["main"].id] and [c.id for c in cands] == [r["slow20"].id]
        _, default = select_check_runs(st, "branch=main")
        assert [c.id for c in default] == [r["slow20"].id]  # newest ok run of the same key, not main
        _, by_id = select_check_runs(st, r["slow20"].id)
        assert [c.id for c in by_id] == [r["slow3"].id]  # newest other than the baseline itself
        assert [x.id for x in resolve_runs(st, ["branch=same", r["main"].id[:9]])] == [r["same"].id, r["main"].id]
        for bad, match in (("branch=nope", "no ok run carries tag"), ("=x", "NAME=VALUE"), ("zzzzzz", "no run")):
            with pytest.raises(UsageError, match=match):
                select_check_runs(st, bad)
        with pytest.raises(UsageError, match="no run"):
            get_run(st, "0000000000")
