"""The server scenario through bench(): ground truth from busy-wait models, loose bounds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from infermeter.measure import bench
from infermeter.timing.loop import LoopConfig, run_loop

from . import _models as m

X = ["x:float32[B,4]"]


def _server(model, **kw):
    kw = {"scenario": "server", "store": False, "inputs": X, **kw}
    return bench(model, **kw)


def test_low_qps_latency_is_the_service_time() -> None:
    r = _server(m.one_ms, qps=250, latency_bound_ms=50, min_duration_s=1.0, max_time_s=6)
    d = r.scenario_details
    assert r.status == "ok" and r.scenario == "server" and r.batch_size == 1
    assert 0.95e-3 <= r.latency.p50.value <= 1.6e-3
    assert r.headline.metric == "p99 latency" and r.headline.value == r.latency.p99.value
    assert r.headline.ci_low is not None and r.headline.ci_low <= r.headline.value
    assert d["issued"] == d["completed"] == r.latency.count and d["dropped"] == 0
    assert 250 * 0.75 < d["achieved_qps"] < 250 * 1.25
    assert r.throughput.samples_per_s.value == pytest.approx(d["achieved_qps"])
    assert d["batch_histogram"] == {1: d["issued"]}
    assert d["schedule_lag_s"]["p50"] < 1e-3 and d["compute_s"]["p50"] == pytest.approx(1e-3, rel=0.2)
    assert r.verdict.valid, r.verdict.reasons
    assert r.stop_reason == "early-stopping" and d["duration_s"] >= 1.0
    q = d["queries"]
    assert q["kept"] == d["issued"] and len(q["scheduled"]) == len(q["done"]) == d["issued"]


def test_over_capacity_latency_grows_and_is_invalid() -> None:
    r = _server(m.one_ms, qps=2000, latency_bound_ms=10, min_duration_s=1.0, max_time_s=4)
    lat = np.asarray(r.latency.samples)  # in issue order
    q = len(lat) // 4
    assert np.median(lat[-q:]) > 3 * np.median(lat[:q])  # the queue builds up, run after run
    assert not r.verdict.valid
    assert r.verdict.recommendations[0].startswith("lower --qps")
    assert any("latency bound not met" in x for x in r.verdict.reasons)
    assert r.stop_reason == "bound-exceeded"
    assert r.scenario_details["achieved_qps"] < 0.8 * 2000


def test_a_stall_shows_in_many_queries_open_loop_but_one_closed_loop() -> None:
    """A model that stalls once for 200 ms at 1000 QPS: every query arriving during the stall
    waits, and open-loop latencies (from the scheduled arrival) show it in ~150 of them. A
    closed-loop timer only ever sees the one slow call (coordinated omission)."""

    class StallAfter:
        def __init__(self, after_s: float) -> None:
            self.t0: float | None = None
            self.after_s, self.stalled = after_s, False

        def __call__(self, x: np.ndarray) -> np.ndarray:
            now = time.perf_counter()
            self.t0 = self.t0 or now
            if not self.stalled and now - self.t0 > self.after_s:
                self.stalled = True
                m.spin_ns(200_000_000)
            else:
                m.spin_ns(200_000)
            return x

    r = _server(StallAfter(1.0), qps=1000, min_duration_s=1.5, max_time_s=5)
    open_lat = np.asarray(r.latency.samples)
    assert (open_lat > 0.05).sum() >= 50
    assert r.latency.p99.value > 0.05

    closed = StallAfter(1.0)
    x = np.zeros((1, 4), np.float32)
    out = run_loop(lambda i: closed(x), config=LoopConfig(max_time_s=2.5, min_time_s=1.6))
    assert closed.stalled
    assert (out.samples_s > 0.05).sum() <= 2
    assert np.percentile(out.samples_s, 99) < 0.01


def test_seeded_arrivals_are_reproducible() -> None:
    def scheduled(seed: int) -> list[int]:
        r = _server(m.noop, qps=2000, seed=seed, min_duration_s=0.3, min_queries=10)
        return r.scenario_details["queries"]["scheduled"]

    a, b, c = scheduled(5), scheduled(5), scheduled(6)
    k = min(len(a), len(b), len(c))
    assert k > 300
    assert a[:k] == b[:k] and a[:k] != c[:k]


def test_dynamic_batching_forms_batches_of_prepared_sizes() -> None:
    seen: set[int] = set()

    def batch_2ms(x: np.ndarray) -> np.ndarray:
        seen.add(len(x))
        m.spin_ns(2_000_000)
        return x

    r = _server(batch_2ms, qps=1500, max_batch=8, max_wait_ms=1.0, latency_bound_ms=100,
                min_duration_s=1.0, max_time_s=4)
    d = r.scenario_details
    hist = d["batch_histogram"]
    assert max(hist) <= 8 and d["mean_batch"] > 1.5 and sum(k * n for k, n in hist.items()) == d["completed"]
    assert seen <= set(range(1, 9)) and max(seen) > 1
    assert r.latency.p50.value < 0.02  # batching keeps up where one at a time (500 QPS) could not
    assert d["max_batch"] == 8 and d["max_wait_s"] == pytest.approx(1e-3)


def test_a_model_that_raises_mid_run_keeps_what_was_measured(tmp_path) -> None:
    from infermeter.errors import ModelRunError
    from infermeter.store import Store

    class FailLater:
        def __init__(self) -> None:
            self.t0: float | None = None

        def __call__(self, x: np.ndarray) -> np.ndarray:
            now = time.perf_counter()
            self.t0 = self.t0 or now
            if now - self.t0 > 0.8:  # after warm-up, inside the open-loop run
                raise RuntimeError("kaboom in the server")
            return x

    db = tmp_path / "r.db"
    with pytest.raises(ModelRunError, match="kaboom in the server.*kept as run"):
        bench(FailLater(), inputs=X, scenario="server", qps=500, min_duration_s=2.0, max_time_s=4, store=db)
    with Store(db) as st:
        (row,) = st.list()
        r = st.get(row.id)
    assert r.status == "failed" and r.stop_reason == "error" and "kaboom" in r.error
    assert r.latency is not None and r.latency.count > 50
    assert not r.verdict.valid and "did not finish" in r.verdict.reasons[0]
