"""Capacity planning: the simulation against closed-form queueing results, then plan() on top.

Ground truth: M/M/1 (mean sojourn 1/(mu-lambda), sojourn ~ Exp(mu-lambda)),
M/D/1 (Pollaczek-Khinchine mean wait rho/(2 mu (1-rho))), M/M/c (Erlang C).
Seeds are fixed; tolerances are several standard errors of the simulated means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from infermeter.errors import UsageError
from infermeter.load.plan import (
    Calibration,
    PlanResult,
    ServiceModel,
    SimOutcome,
    calibrate_overhead,
    latency_curve,
    overhead_from_result,
    parse_slo,
    plan,
    service_from_results,
    simulate,
)
from infermeter.result import ModelInfo, Result
from infermeter.stats import describe_latency, percentile

MU = 1000.0  # services/s: 1 ms mean service


@pytest.fixture(scope="module")
def exp_service() -> ServiceModel:
    return ServiceModel({1: _exp_samples(42)}, source="exp 1 ms")


def _exp_samples(seed: int) -> np.ndarray:
    """100k exponential service times scaled to a mean of exactly 1 ms: at rho = 0.8 a 0.3% error
    in the sample mean would move the mean sojourn time by 1.5%."""
    x = np.random.default_rng(seed).exponential(1 / MU, 100_000)
    return x * (1 / MU / x.mean())


def _erlang_c(c: int, a: float) -> float:
    """Probability an arrival waits in M/M/c with offered load a = lambda/mu."""
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def _mmc_sojourn_quantile(c: int, lam: float, mu: float, q: float) -> float:
    """q-quantile of the M/M/c sojourn time T = W + S (W: 0 or Exp(c mu - lambda) with prob. C)."""
    C, th = _erlang_c(c, lam / mu), c * mu - lam

    def surv(t: float) -> float:
        if abs(th - mu) < 1e-9 * mu:
            both = (1 + mu * t) * math.exp(-mu * t)
        else:
            both = (mu * math.exp(-th * t) - th * math.exp(-mu * t)) / (mu - th)
        return (1 - C) * math.exp(-mu * t) + C * both

    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if surv(mid) > 1 - q else (lo, mid)
    return hi


# ---------------------------------------------------------------- analytic references


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_and_p99(exp_service, rho):
    lam = rho * MU
    o = simulate(exp_service, lam, n_requests=200_000, seed=1)
    assert isinstance(o, SimOutcome) and o.stable and o.n == 180_000
    assert o.mean == pytest.approx(1 / (MU - lam), rel=0.05)
    assert o.p99 == pytest.approx(-math.log(0.01) / (MU - lam), rel=0.10)
    assert o.utilisation == pytest.approx(rho, rel=0.03)
    assert o.mean_batch == 1 and set(o.batch_histogram) == {1}


def test_md1_mean_wait_pollaczek_khinchine():
    det = ServiceModel({1: np.full(100, 1e-3)})
    rho = 0.7
    o = simulate(det, rho * MU, n_requests=200_000, seed=2)
    expected = rho / (2 * MU * (1 - rho))
    assert float(np.mean(o.waits)) == pytest.approx(expected, rel=0.05)
    assert o.mean == pytest.approx(expected + 1e-3, rel=0.05)


def test_dd1_constant_arrivals_never_wait():
    det = ServiceModel({1: np.full(10, 1e-3)})
    o = simulate(det, 900.0, arrivals="constant", n_requests=5_000)
    assert o.stable and float(np.max(o.waits)) == pytest.approx(0.0, abs=1e-12)
    assert o.p99 == pytest.approx(1e-3)


def test_mm2_mean_matches_erlang_c(exp_service):
    lam, c = 1400.0, 2  # rho = 0.7 per server
    o = simulate(exp_service, lam, replicas=c, n_requests=200_000, seed=3)
    expected = _erlang_c(c, lam / MU) / (c * MU - lam) + 1 / MU
    assert o.stable
    assert o.mean == pytest.approx(expected, rel=0.05)
    assert o.p99 == pytest.approx(_mmc_sojourn_quantile(c, lam, MU, 0.99), rel=0.10)
    assert o.utilisation == pytest.approx(0.7, rel=0.03)


# ---------------------------------------------------------------- batching and cache


@pytest.fixture(scope="module")
def linear_batch() -> ServiceModel:
    """1 ms + 0.1 ms per row, deterministic, measured at batch sizes 1..16."""
    return ServiceModel({b: np.full(10, 1e-3 + 1e-4 * b) for b in range(1, 17)})


def test_batching_makes_an_overloaded_queue_stable(linear_batch):
    rate = 1500.0  # one-row batches serve 1 / 1.1 ms = 909/s
    single = simulate(linear_batch, rate, max_batch=1, n_requests=20_000)
    assert not single.stable and single.notes and single.offered_load > 1
    batched = simulate(linear_batch, rate, max_batch=16, n_requests=20_000)
    assert batched.stable and batched.mean_batch > 1
    assert batched.p99 < 0.01 < single.p99
    assert max(batched.batch_histogram) <= 16
    assert sum(b * c for b, c in batched.batch_histogram.items()) == pytest.approx(batched.n, rel=0.01)


def test_max_wait_holds_a_lone_request_back(linear_batch):
    no_wait = simulate(linear_batch, 10.0, max_batch=8, n_requests=2_000)
    waited = simulate(linear_batch, 10.0, max_batch=8, max_wait_s=5e-3, n_requests=2_000)
    assert no_wait.p50 == pytest.approx(1.1e-3)
    assert waited.p50 == pytest.approx(5e-3 + 1.1e-3, rel=1e-6)  # most requests are alone at 10/s
    assert waited.mean == pytest.approx(6.1e-3, rel=0.05)


def test_cache_hits_halve_the_load(exp_service):
    lam = 1600.0
    cached = simulate(exp_service, lam, cache_hit_ratio=0.5, n_requests=400_000, seed=4)
    half = simulate(exp_service, lam / 2, n_requests=200_000, seed=5)
    assert cached.hits.mean() == pytest.approx(0.5, abs=0.01)
    assert np.all(cached.latencies[cached.hits] == 0.0)
    assert percentile(cached.miss_latencies, 99) == pytest.approx(half.p99, rel=0.10)
    assert cached.utilisation == pytest.approx(0.8, rel=0.03)
    # every figure covers all requests: p99 of the mix is p98 of the misses
    assert cached.p99 == pytest.approx(percentile(cached.miss_latencies, 98), rel=0.01)
    with_latency = simulate(exp_service, lam, cache_hit_ratio=0.5, cache_hit_s=2e-4, n_requests=5_000)
    assert np.all(with_latency.latencies[with_latency.hits] == 2e-4)


def test_latency_curve_rises_with_rate(exp_service):
    curve = latency_curve(exp_service, [200, 500, 800], n_requests=20_000)
    assert [o.rate for o in curve] == [200, 500, 800]
    p99s = [o.p99 for o in curve]
    assert p99s == sorted(p99s)


# ---------------------------------------------------------------- service model


def test_service_model_interpolates_and_extrapolates_medians():
    rng = np.random.default_rng(0)
    svc = ServiceModel({1: rng.normal(1e-3, 1e-5, 2_000), 9: rng.normal(3e-3, 3e-5, 2_000)})
    draws = np.array([svc.draw(5, rng) for _ in range(2_000)])
    assert np.median(draws) == pytest.approx(2e-3, rel=0.01)
    assert svc.median(3) == pytest.approx(1.5e-3, rel=0.01)
    assert svc.median(17) == pytest.approx(5e-3, rel=0.01)  # beyond 9: the line through 1 and 9
    assert svc.throughput(9) == pytest.approx(9 / 3e-3, rel=0.01)


def _result(samples: np.ndarray, batch: int, **kw) -> Result:
    return Result(id=f"r{batch}-{len(samples)}", invocation="inv", model=ModelInfo(spec="m.onnx", backend="onnx"),
                  batch_size=batch, latency=describe_latency(samples), **kw)


def test_service_from_results_pools_batch_sizes():
    rng = np.random.default_rng(7)
    rs = [_result(rng.exponential(1e-3, 300), 1), _result(rng.exponential(1e-3, 200), 1),
          _result(rng.exponential(3e-3, 100), 8),
          _result(rng.exponential(9e-3, 100), 8, scenario="server"),  # queueing inside: left out
          Result(id="f", invocation="inv", model=ModelInfo(spec="m.onnx", backend="onnx"), batch_size=16,
                 status="failed", error="OOM")]
    svc = service_from_results(rs)
    assert svc.batch_sizes == [1, 8]
    assert svc.samples[1].size == 500 and svc.samples[8].size == 100
    assert "m.onnx" in svc.source and "server" in svc.source
    with pytest.raises(UsageError, match="nothing to plan from"):
        service_from_results(rs[3:])
    with pytest.raises(UsageError):
        service_from_results([])


# ---------------------------------------------------------------- plan


def test_plan_finds_smallest_replica_count(exp_service):
    svc = service_from_results([_result(_exp_samples(11), 1)])
    res = plan(svc, 3000.0, parse_slo("p99<10ms"))
    assert isinstance(res, PlanResult)
    assert res.replicas_needed == 4
    rows = {r["replicas"]: r for r in res.rows}
    assert not rows[3]["meets"] and not rows[3]["stable"]  # 3 x 1000/s is exactly saturated
    assert rows[4]["meets"] and rows[4]["p99"] < 0.01
    # the simulated p99 at 4 replicas agrees with Erlang C's
    assert rows[4]["p99"] == pytest.approx(_mmc_sojourn_quantile(4, 3000.0, MU, 0.99), rel=0.10)
    assert res.slo == ("p99", pytest.approx(0.01))


def test_plan_search_goes_past_capacity_and_bisects():
    # 1 ms deterministic service at 1500/s: capacity says 2 replicas, but p99 < 1.05 ms
    # means almost no request may queue, which takes several more
    det = ServiceModel({1: np.full(10, 1e-3)})
    res = plan(det, 1500.0, ("p99", 1.05e-3), n_requests=20_000)
    r = res.replicas_needed
    assert r is not None and r > 3
    rows = {x["replicas"]: x for x in res.rows}
    assert rows[r]["meets"] and not rows[r - 1]["meets"]
    assert rows[2]["stable"] and not rows[2]["meets"]
    assert [x["replicas"] for x in res.rows] == sorted(rows)
    assert len(rows) < max(rows) - 1  # galloped past some counts, then bisected back


def test_plan_with_batching_and_cache(linear_batch):
    res = plan(linear_batch, 5000.0, ("p99", 0.05), max_batch=16, max_wait_s=2e-3, cache_hit_ratio=0.2,
               n_requests=20_000)
    assert res.replicas_needed is not None
    best = next(x for x in res.rows if x["replicas"] == res.replicas_needed)
    assert best["mean_batch"] > 1 and best["utilisation"] <= 1.0


def test_plan_reports_an_unreachable_slo(exp_service):
    res = plan(exp_service, 500.0, ("p99", 1e-3), max_replicas=8, n_requests=5_000)  # p99 of service alone ~4.6 ms
    assert res.replicas_needed is None
    assert any("even 8 replicas" in n for n in res.notes)
    assert len(res.rows) <= 5  # galloping, not every count


# ---------------------------------------------------------------- bad input


def test_max_batch_above_measured_needs_extrapolate(linear_batch):
    with pytest.raises(UsageError, match="largest measured batch size 16"):
        plan(linear_batch, 1000.0, ("p99", 0.05), max_batch=32)
    with pytest.raises(UsageError, match="16"):
        simulate(linear_batch, 1000.0, max_batch=32)
    res = plan(linear_batch, 1000.0, ("p99", 0.05), max_batch=32, extrapolate=True, n_requests=5_000)
    assert res.replicas_needed == 1
    assert any("extrapolated" in n for n in res.notes)


@pytest.mark.parametrize("rate", [0.0, -5.0, float("nan"), float("inf")])
def test_rate_must_be_positive(exp_service, rate):
    with pytest.raises(UsageError, match="rate"):
        simulate(exp_service, rate)
    with pytest.raises(UsageError, match="rate"):
        plan(exp_service, rate, ("p99", 0.01))


@pytest.mark.parametrize("kw", [
    {"replicas": 0}, {"max_batch": 0}, {"max_wait_s": -1.0}, {"cache_hit_ratio": 1.0},
    {"arrivals": "bursty"}, {"n_requests": 10},
])
def test_simulate_rejects_bad_settings(exp_service, kw):
    with pytest.raises(UsageError):
        simulate(exp_service, 100.0, **kw)


def test_errors_are_one_line_and_slos_parse():
    assert parse_slo("p99<50ms") == ("p99", pytest.approx(0.05))
    assert parse_slo(" p99.9 <= 2 s") == ("p99.9", 2.0)
    assert parse_slo("mean<500us") == ("mean", pytest.approx(5e-4))
    for bad in ("p99", "p99<50", "p101<1ms", "max<1ms"):
        with pytest.raises(UsageError) as e:
            parse_slo(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="largest"):
        simulate(ServiceModel({1: np.ones(3) * 1e-3}), 10.0, max_batch=2)
    with pytest.raises(UsageError):
        ServiceModel({})
    with pytest.raises(UsageError):
        ServiceModel({1: np.array([1e-3, np.nan])})


def test_stability_rule_sees_a_growing_queue():
    from infermeter.load.queueing import _stability

    flat = np.random.default_rng(0).exponential(2e-3, 10_000)
    assert _stability(flat, 0.8, 1e-3) == (True, "")
    growing = np.linspace(0, 0.5, 10_000)  # waits climbing to 500 ms
    ok, why = _stability(growing, 0.95, 1e-3)
    assert not ok and "still growing" in why
    ok, why = _stability(flat, 1.0, 1e-3)
    assert not ok and "100% of capacity" in why


def test_plan_takes_a_percentile_as_a_number(exp_service):
    res = plan(exp_service, 300.0, (99, 0.05), n_requests=5_000)
    assert res.slo == ("p99", 0.05) and res.replicas_needed == 1 and "p99" in res.rows[0]


# ---------------------------------------------------------------- overhead outside the queue


def test_overhead_moves_every_latency_and_leaves_the_queue_alone(exp_service):
    kw = dict(cache_hit_ratio=0.3, cache_hit_s=1e-4, n_requests=20_000, seed=8)
    bare = simulate(exp_service, 600.0, **kw)
    served = simulate(exp_service, 600.0, **kw, overhead_s=2e-3)
    assert served.overhead_s == 2e-3
    np.testing.assert_allclose(served.latencies, bare.latencies + 2e-3, rtol=0, atol=1e-12)  # hits too
    np.testing.assert_array_equal(served.waits, bare.waits)
    assert served.utilisation == bare.utilisation and served.stable == bare.stable
    for bad in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(UsageError, match="overhead"):
            simulate(exp_service, 600.0, overhead_s=bad)


def test_plan_counts_the_overhead_against_the_slo(exp_service):
    kw = dict(n_requests=20_000, max_replicas=16)
    base = plan(exp_service, 1500.0, ("p99", 6e-3), **kw)
    slower = plan(exp_service, 1500.0, ("p99", 6e-3), **kw, overhead_s=1e-3)
    assert base.replicas_needed is not None and slower.replicas_needed is not None
    assert slower.replicas_needed > base.replicas_needed  # 1 ms less of the budget for queueing
    assert any("outside the model's queue" in n for n in slower.notes)
    assert not any("outside the model's queue" in n for n in base.notes)
    never = plan(exp_service, 100.0, ("p99", 1e-3), overhead_s=2e-3, n_requests=5_000, max_replicas=4)
    assert never.replicas_needed is None


def test_calibration_recovers_a_known_overhead(linear_batch):
    # a "served" run: the simulated server plus 1.5 ms per request, at a low rate
    rate, kw = 50.0, dict(max_batch=8, max_wait_s=2e-3)
    run = simulate(linear_batch, rate, **kw, overhead_s=1.5e-3, n_requests=5_000, seed=21)
    cal = calibrate_overhead(linear_batch, run.latencies, rate, **kw, n_requests=20_000)
    assert isinstance(cal, Calibration)
    assert cal.overhead_s == pytest.approx(1.5e-3, rel=0.05)
    assert cal.stat == "p50" and cal.requests == run.n and cal.rate == rate and not cal.notes
    assert cal.measured_s - cal.simulated_s == pytest.approx(cal.overhead_s)
    assert "1.5" in cal.describe() and "\n" not in cal.describe()
    # planning with it predicts the served run
    again = simulate(linear_batch, 400.0, **kw, overhead_s=cal.overhead_s, n_requests=20_000, seed=3)
    truth = simulate(linear_batch, 400.0, **kw, overhead_s=1.5e-3, n_requests=20_000, seed=4)
    assert again.p50 == pytest.approx(truth.p50, rel=0.05) and again.p99 == pytest.approx(truth.p99, rel=0.05)


def test_calibration_says_when_it_cannot_be_trusted(exp_service):
    fast = np.full(500, 1e-4)  # faster than the model's own service time
    cal = calibrate_overhead(exp_service, fast, 50.0, n_requests=5_000)
    assert cal.overhead_s == 0.0 and any("slower than the server" in n for n in cal.notes)
    busy = simulate(exp_service, 600.0, overhead_s=1e-3, n_requests=5_000).latencies
    cal = calibrate_overhead(exp_service, busy, 600.0, n_requests=5_000)
    assert cal.offered_load == pytest.approx(0.6, rel=0.02) and any("lower rate" in n for n in cal.notes)
    with pytest.raises(UsageError, match="at least 20"):
        calibrate_overhead(exp_service, [1e-3] * 5, 50.0)
    with pytest.raises(UsageError, match="statistic"):
        calibrate_overhead(exp_service, [1e-3] * 50, 50.0, stat="max")


def _load_run(samples: np.ndarray, rate: float, **kw) -> Result:
    return Result(id="load1", invocation="load1", model=ModelInfo(spec="http://127.0.0.1:8000", backend="http"),
                  batch_size=1, scenario="load-open", latency=describe_latency(samples),
                  scenario_details={"offered_rate": rate, "scheduled_rate": rate * 1.01}, **kw)


def test_overhead_from_a_stored_load_run(exp_service):
    served = simulate(exp_service, 100.0, overhead_s=2e-3, n_requests=5_000, seed=9).latencies
    cal = overhead_from_result(exp_service, _load_run(served, 100.0), n_requests=20_000)
    assert cal.overhead_s == pytest.approx(2e-3, rel=0.15)
    assert cal.rate == pytest.approx(101.0) and "load1" in cal.source  # the rate the schedule realised
    bench_run = _result(_exp_samples(1)[:100], 1)
    with pytest.raises(UsageError, match="open-loop load run"):
        overhead_from_result(exp_service, bench_run)
    failed = Result(id="load2", invocation="load2", model=ModelInfo(spec="http://x", backend="http"), batch_size=1,
                    scenario="load-open", status="failed", error="no request succeeded")
    with pytest.raises(UsageError, match="no latencies"):
        overhead_from_result(exp_service, failed)


def test_cli_plan_calibrates_from_a_stored_load_run(tmp_path, exp_service):
    from typer.testing import CliRunner

    from infermeter.cli import app
    from infermeter.store import Store

    db = tmp_path / "runs.db"
    st = Store(db)
    bench_id = st.save(_result(_exp_samples(12)[:2_000], 1))
    served = simulate(exp_service, 100.0, overhead_s=3e-3, n_requests=3_000, seed=10).latencies
    load_id = st.save(_load_run(served, 100.0))
    runner = CliRunner()
    base = ["plan", bench_id, "--rate", "1500", "--slo", "p99<8ms", "--requests", "5000", "--store", str(db)]
    out = runner.invoke(app, [*base, "--calibrate", load_id], env={"COLUMNS": "250"})
    assert out.exit_code == 0, out.output
    assert "calibrated: overhead" in out.output and "replicas needed" in out.output
    out = runner.invoke(app, [*base, "--overhead-ms", "3"], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "overhead 3 ms" in out.output, out.output
    out = runner.invoke(app, [*base, "--overhead-ms", "3", "--calibrate", load_id], env={"COLUMNS": "250"})
    assert out.exit_code == 2 and "not both" in out.output
    out = runner.invoke(app, [*base, "--calibrate", bench_id], env={"COLUMNS": "250"})
    assert out.exit_code == 2 and "open-loop load run" in out.output

