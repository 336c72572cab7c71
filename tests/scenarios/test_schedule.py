"""The open-loop engine (timing/schedule.py) and the arrival schedule: real threads,
busy-wait models, loose bounds."""

from __future__ import annotations

import numpy as np

from infermeter.scenarios.server import arrival_offsets
from infermeter.timing.schedule import run_open_loop, wait_until

from ._models import spin_ns


class Ticks:
    """A fake ns clock that advances ``step`` per read."""

    def __init__(self, t: int = 0, step: int = 7) -> None:
        self.t, self.step, self.reads = t, step, 0

    def __call__(self) -> int:
        self.t += self.step
        self.reads += 1
        return self.t


def test_wait_until_returns_first_reading_at_or_after_target() -> None:
    clock = Ticks(t=0, step=7)
    got = wait_until(100, clock, spin_ns=1_000)  # within the spin window: no sleep
    assert got >= 100 and got - 7 < 100
    assert wait_until(5, Ticks(t=50)) == 57  # a target already past returns at once


def test_arrivals_are_seeded_poisson() -> None:
    a = arrival_offsets(1000.0, 20.0, seed=7, max_queries=10**6)
    assert a == arrival_offsets(1000.0, 20.0, seed=7, max_queries=10**6)
    assert a != arrival_offsets(1000.0, 20.0, seed=8, max_queries=10**6)
    gaps = np.diff(np.asarray(a, dtype=float)) * 1e-9
    assert abs(len(a) - 20_000) < 5 * np.sqrt(20_000)
    assert abs(np.mean(gaps) - 1e-3) < 0.03e-3
    assert 0.95 < np.std(gaps) / np.mean(gaps) < 1.05  # exponential: CV 1
    assert max(a) < 20e9 and a == sorted(a)
    assert len(arrival_offsets(1000.0, 20.0, seed=7, max_queries=500)) == 500


def _records(rec):
    n = rec.issued
    sched = np.asarray(rec.scheduled[:n])
    return n, sched, np.asarray(rec.issued_at[:n]), np.asarray(rec.started[:n]), np.asarray(rec.done[:n]), np.asarray(rec.batch[:n])


def test_noop_at_low_rate_is_issued_on_time() -> None:
    offsets = arrival_offsets(500.0, 1.0, seed=1, max_queries=10**6)
    rec = run_open_loop(offsets, lambda k: None)
    n, sched, issued, started, done, batch = _records(rec)
    assert n == len(offsets) and np.all(done > 0) and np.all(batch == 1)
    lag = (issued - sched) * 1e-9
    assert np.median(lag) < 100e-6 and np.all(lag >= 0)
    assert np.all(started >= issued) and np.all(done >= started)
    assert rec.stop_reason == "schedule-end" and not rec.interrupted


def test_dynamic_batching_under_load_respects_max_batch() -> None:
    # 2 ms per batch at 1500 QPS: one query at a time could serve 500 QPS, batches must form
    offsets = arrival_offsets(1500.0, 1.0, seed=2, max_queries=10**6)
    rec = run_open_loop(offsets, lambda k: spin_ns(2_000_000), max_batch=8, max_wait_ns=0)
    n, sched, issued, started, done, batch = _records(rec)
    assert np.all(done > 0)
    assert batch.max() <= 8 and batch.mean() > 2
    lat = (done - sched) * 1e-9
    assert np.percentile(lat, 50) < 0.05  # keeps up: latency does not run away


def test_max_wait_holds_a_batch_open_but_no_longer() -> None:
    # 20 QPS: queries rarely overlap, so a batch waits its full max-wait and then runs alone
    offsets = arrival_offsets(20.0, 1.5, seed=3, max_queries=10**6)
    rec = run_open_loop(offsets, lambda k: None, max_batch=8, max_wait_ns=5_000_000)
    n, sched, issued, started, done, batch = _records(rec)
    waited = (started - issued) * 1e-9
    alone = batch == 1
    assert alone.mean() > 0.7
    assert np.median(waited[alone]) > 4.5e-3  # held open for max-wait
    assert np.percentile(waited, 90) < 5e-3 + 4e-3  # and not much longer (loose: loaded CI machines)
    rec0 = run_open_loop(offsets, lambda k: None, max_batch=8, max_wait_ns=0)
    _, _, issued0, started0, _, _ = _records(rec0)
    assert np.median((started0 - issued0) * 1e-9) < 1e-3


def test_should_stop_ends_the_run_and_the_issued_queries_drain() -> None:
    offsets = arrival_offsets(1000.0, 10.0, seed=4, max_queries=10**6)
    seen = []

    def stop(p) -> bool:
        seen.append(p)
        return p.issued >= 300

    rec = run_open_loop(offsets, lambda k: None, should_stop=stop, check_interval_s=0.02)
    n, *_rest, done, _ = _records(rec)
    assert rec.stop_reason == "rule" and 300 <= n < 2000
    assert np.all(done > 0)  # drained
    assert seen and seen[-1].issued >= 300 and seen[0].elapsed_s <= seen[-1].elapsed_s


def test_model_error_stops_the_run_with_what_was_measured() -> None:
    calls = {"n": 0}

    def flaky(k: int) -> None:
        calls["n"] += 1
        if calls["n"] == 50:
            raise RuntimeError("kaboom")

    rec = run_open_loop(arrival_offsets(1000.0, 5.0, seed=5, max_queries=10**6), flaky)
    assert rec.stop_reason == "error" and isinstance(rec.error, RuntimeError)
    n, *_rest, done, _ = _records(rec)
    assert (done > 0).sum() == 49 and n < 2000
