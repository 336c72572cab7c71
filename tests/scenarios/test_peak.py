"""--find-peak: the search on a synthetic system (exact), then once end to end."""

from __future__ import annotations

import pytest

from infermeter.measure import bench
from infermeter.result import ModelInfo, Result, Verdict
from infermeter.scenarios.peak import PeakConfig, find_peak

from . import _models as m


def _fake_system(peak: float, log: list[float], compute_p99: float = 0.001):
    def run_at(q: float) -> Result:
        log.append(q)
        ok = q <= peak
        return Result(
            id=f"r{len(log)}", invocation="inv", model=ModelInfo(spec="fake", backend="python"), batch_size=1,
            scenario="server",
            verdict=Verdict(valid=ok, reasons=[] if ok else ["latency bound not met"],
                            checks={"latency_bound": {"met": ok}}),
            scenario_details={"latency_bound_s": 0.010, "target_percentile": 99.0, "compute_s": {"p99": compute_p99}},
        )

    return run_at


def test_grows_then_bisects_to_within_precision() -> None:
    log: list[float] = []
    saved: list[Result] = []
    out = find_peak(_fake_system(137.0, log), 20.0, PeakConfig(max_steps=20, precision=0.05), on_step=saved.append)
    assert log[:4] == [20.0, 40.0, 80.0, 160.0]  # doubling while VALID
    assert out.stop == "converged" and out.peak_qps is not None
    assert 137.0 / 1.05 <= out.peak_qps <= 137.0
    assert saved == out.results and len(out.results) == len(log) <= 20
    infos = [r.scenario_details["peak_search"] for r in out.results]
    assert [i["step"] for i in infos] == list(range(1, len(log) + 1))
    assert [i["phase"] for i in infos[:4]] == ["grow"] * 4 and infos[4]["phase"] == "bisect"
    assert all(not i["final"] for i in infos[:-1]) and infos[-1]["final"]
    assert infos[-1]["peak_qps"] == out.peak_qps and infos[-1]["stop"] == "converged"
    assert all(i["next_qps"] == log[k + 1] for k, i in enumerate(infos[:-1]))


def test_shrinks_when_the_start_is_too_high() -> None:
    log: list[float] = []
    out = find_peak(_fake_system(30.0, log), 200.0, PeakConfig(max_steps=20))
    assert log[:4] == [200.0, 100.0, 50.0, 25.0]
    assert [r.scenario_details["peak_search"]["phase"] for r in out.results[:4]] == ["grow", "shrink", "shrink", "shrink"]
    assert 30.0 / 1.05 <= out.peak_qps <= 30.0


def test_bounded_by_steps_and_time() -> None:
    out = find_peak(_fake_system(1e9, []), 10.0, PeakConfig(max_steps=3))
    assert len(out.results) == 3 and out.stop == "max-steps" and out.peak_qps == 40.0

    clock = {"t": 0}

    def now() -> int:  # every read advances 1 s: each step "takes" ~2 s
        clock["t"] += 1_000_000_000
        return clock["t"]

    out = find_peak(_fake_system(1e9, []), 10.0, PeakConfig(max_steps=100, max_time_s=9.0), now_ns=now)
    assert out.stop == "max-time" and 2 <= len(out.results) <= 4


def test_a_run_too_short_to_judge_moves_up_not_down() -> None:
    """INVALID only for want of queries (bound met) is not evidence of overload."""
    log: list[float] = []
    base = _fake_system(100.0, log)

    def run_at(q: float) -> Result:
        r = base(q)
        if q < 15:  # too few queries at low QPS: early stopping fails, the bound holds
            r.verdict = Verdict(valid=False, reasons=["early stopping not met"], checks={"latency_bound": {"met": True}})
        return r

    out = find_peak(run_at, 10.0, PeakConfig(max_steps=20))
    assert log[:3] == [10.0, 20.0, 40.0]
    assert out.results[0].scenario_details["peak_search"]["outcome"] == "short"
    assert 100.0 / 1.05 <= out.peak_qps <= 100.0


def test_unreachable_bound_stops_at_once() -> None:
    log: list[float] = []
    out = find_peak(_fake_system(0.0, log, compute_p99=0.050), 100.0, PeakConfig(max_steps=10))
    assert len(log) == 1 and out.stop == "unreachable" and out.peak_qps is None


def test_find_peak_end_to_end() -> None:
    results = bench(
        m.one_ms, inputs=["x:float32[B,4]"], scenario="server", find_peak=True, latency_bound_ms=20,
        min_duration_s=0.6, max_time_s=2.0, peak_steps=3, store=False,
    )
    assert isinstance(results, list) and 1 <= len(results) <= 3
    infos = [r.scenario_details["peak_search"] for r in results]
    assert infos[-1]["final"] and infos[-1]["stop"] in ("max-steps", "converged", "max-time", "unreachable")
    assert all(r.scenario == "server" and r.verdict is not None for r in results)
    assert [r.config["qps"] for r in results] == [i["qps"] for i in infos]
    assert infos[0]["qps"] == pytest.approx(0.5 * results[0].scenario_details["capacity_estimate_qps"], rel=0.5)
    peak = infos[-1]["peak_qps"]
    assert peak is None or 0 < peak < 1500  # a 1 ms model serves at most ~1000 QPS
    assert results[0].invocation == results[-1].invocation
