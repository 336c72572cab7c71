from __future__ import annotations

import gc

import numpy as np
import pytest

from infermeter import stats
from infermeter.errors import ModelRunError, UsageError
from infermeter.timing import loop as loop_mod
from infermeter.timing.clocks import CudaEventClock, HostClock
from infermeter.timing.loop import LoopConfig, run_loop

from ._helpers import FakeTime, spin_ns

US = 1_000


def _fake_cfg(**kw: object) -> LoopConfig:
    """Exact, small warm-up windows for fake-clock tests."""
    base: dict[str, object] = dict(warmup_window=10, warmup_window_s=0.0, warmup_min_iters=10, max_time_s=30.0)
    base.update(kw)
    return LoopConfig(**base)  # type: ignore[arg-type]


# ---------------------------------------------------------------- fake clock: exact


def test_fake_clock_exact_warmup_stop_and_samples(fake_time: FakeTime) -> None:
    calls: list[int] = []

    def call(i: int) -> None:
        calls.append(i)
        fake_time.advance(5000 if i == 0 else 1000)

    out = run_loop(call, config=_fake_cfg(), clock=HostClock(now_ns=fake_time.now_ns))
    assert out.clock == "host"
    assert out.first_call_s == pytest.approx(5010e-9)
    assert out.timer_overhead_s == pytest.approx(10e-9)
    assert out.warmup_iters == 20 and out.warmup_stop == "steady"  # two equal windows of 10
    assert out.block_size == 1  # 1010 ns >= 20 x 10 ns
    assert out.stop_reason == "precision"
    assert out.n_samples == stats.min_samples_for_percentile(99, 0.99) == 459
    assert out.n_calls == 459
    assert np.all(out.samples_s == 1010e-9)
    assert out.warmup_samples_s.size == 20 and np.all(out.warmup_samples_s == 1010e-9)
    assert calls == list(range(1 + 20 + 459))  # one running index across phases
    assert out.error is None and not out.interrupted
    assert out.ci_halfwidth_rel == 0.0


def test_fake_clock_warmup_covers_getting_faster(fake_time: FakeTime) -> None:
    # 2000 ns falling linearly to 1000 ns at call 40, flat after
    lat = lambda i: 1000 + 1000 * max(0, 40 - i) // 40  # noqa: E731
    out = run_loop(fake_time.call(lat), config=_fake_cfg(), clock=HostClock(now_ns=fake_time.now_ns))
    # windows [1-10] [11-20] [21-30] [31-40] differ by >10%; [41-50] vs [31-40] by 11%;
    # [51-60] vs [41-50] equal -> steady at 60
    assert out.warmup_iters == 60 and out.warmup_stop == "steady"
    assert np.all(out.samples_s == 1010e-9)


def test_fake_clock_max_iters(fake_time: FakeTime) -> None:
    out = run_loop(fake_time.call(lambda i: 1000), config=_fake_cfg(max_iters=100), clock=HostClock(now_ns=fake_time.now_ns))
    assert out.stop_reason == "max-iters" and out.n_calls == 100 and out.n_samples == 100


def test_fake_clock_max_time(fake_time: FakeTime) -> None:
    out = run_loop(fake_time.call(lambda i: 1_000_000), config=_fake_cfg(max_time_s=0.2), clock=HostClock(now_ns=fake_time.now_ns))
    assert out.stop_reason == "max-time"
    assert 200 <= out.n_samples <= 201
    assert 0.2 <= out.measure_s < 0.21


def test_fake_clock_min_time_and_min_iters(fake_time: FakeTime) -> None:
    clock = HostClock(now_ns=fake_time.now_ns)
    out = run_loop(fake_time.call(lambda i: 1_000_000), config=_fake_cfg(min_time_s=1.0), clock=clock)
    assert out.stop_reason == "precision" and out.measure_s >= 1.0 and out.n_samples >= 1000
    out = run_loop(fake_time.call(lambda i: 1000), config=_fake_cfg(min_iters=2000), clock=clock)
    assert out.stop_reason == "precision" and out.n_calls >= 2000


def test_max_wins_over_min(fake_time: FakeTime) -> None:
    out = run_loop(
        fake_time.call(lambda i: 1_000_000), config=_fake_cfg(max_time_s=0.1, min_time_s=0.1, min_iters=10**6),
        clock=HostClock(now_ns=fake_time.now_ns),
    )
    assert out.stop_reason == "max-time"


def test_warmup_max_iters_and_skip(fake_time: FakeTime) -> None:
    clock = HostClock(now_ns=fake_time.now_ns)
    rising = lambda i: 1000 + 100 * i  # noqa: E731  (never steady)
    out = run_loop(fake_time.call(rising), config=_fake_cfg(warmup_max_iters=35, max_iters=10), clock=clock)
    assert out.warmup_iters == 35 and out.warmup_stop == "max-iters"
    out = run_loop(fake_time.call(rising), config=_fake_cfg(warmup_min_iters=0, warmup_max_iters=0, max_iters=10), clock=clock)
    assert out.warmup_iters == 0 and out.warmup_stop == "skipped"


def test_warmup_max_time(fake_time: FakeTime) -> None:
    rising = lambda i: 1_000_000 + 100_000 * i  # noqa: E731
    out = run_loop(fake_time.call(rising), config=_fake_cfg(warmup_max_s=0.5, max_iters=10), clock=HostClock(now_ns=fake_time.now_ns))
    assert out.warmup_stop == "max-time"
    assert 0.5 <= out.warmup_s < 0.5 + 0.01


def test_stop_rule_is_checked_rarely(fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    lat = rng.integers(1000, 3000, size=200_001)
    n_checks = [0]
    real = stats.median_ci_halfwidth_rel

    def counting(*a: object, **k: object) -> float:
        n_checks[0] += 1
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_mod, "median_ci_halfwidth_rel", counting)
    out = run_loop(
        fake_time.call(lambda i: int(lat[i])), config=_fake_cfg(precision=1e-4, max_iters=100_000),
        clock=HostClock(now_ns=fake_time.now_ns),
    )
    assert out.stop_reason == "max-iters" and out.n_calls == 100_000
    # one check per 10% growth from 459 to 100 000 is ~57, plus the final summary
    assert n_checks[0] <= 60


# ---------------------------------------------------------------- fake device clock


def test_device_clock_path_with_fake_events(fake_time: FakeTime, fake_event_factory) -> None:
    clock = CudaEventClock(fake_event_factory(lambda: fake_time.t), host_now_ns=fake_time.now_ns)
    syncs = [0]

    def sync() -> None:
        syncs[0] += 1

    out = run_loop(fake_time.call(lambda i: 2000), sync, config=_fake_cfg(), clock=clock)
    assert out.clock == "cuda-events"
    assert out.stop_reason == "precision"
    assert out.samples_s == pytest.approx(np.full(out.n_samples, 2000e-9))
    assert out.host_samples_s is not None and out.host_samples_s == pytest.approx(np.full(out.n_samples, 2010e-9))
    assert out.device_host_ratio == pytest.approx(2010 / 2000)
    assert syncs[0] >= 1 + 20 + 459


def test_event_factory_selects_device_clock(fake_event_factory) -> None:
    import time

    out = run_loop(
        lambda i: spin_ns(20 * US), config=LoopConfig(max_iters=50, warmup_max_s=0.05),
        event_factory=fake_event_factory(time.perf_counter_ns),
    )
    assert out.clock == "cuda-events" and out.device_host_ratio is not None and out.device_host_ratio >= 1.0


# ---------------------------------------------------------------- errors and interrupts


def _no_warmup(**kw: object) -> LoopConfig:
    return LoopConfig(warmup_min_iters=0, warmup_max_iters=0, **kw)  # type: ignore[arg-type]


def test_error_at_measure_iteration_7_keeps_samples() -> None:
    def call(i: int) -> None:
        if i == 8:  # call 0 is the first inference, measuring starts at 1
            raise ValueError("bad input shape")
        spin_ns(10 * US)

    out = run_loop(call, config=_no_warmup(max_time_s=2.0))
    assert out.stop_reason == "error" and not out.interrupted
    assert out.n_samples == 7
    err = out.error
    assert isinstance(err, ModelRunError)
    assert err.phase == "measure" and err.iteration == 7
    msg = str(err)
    assert "ValueError" in msg and "bad input shape" in msg and "measure" in msg and "iteration 7" in msg


def test_error_in_first_inference_and_warmup() -> None:
    def first(i: int) -> None:
        raise RuntimeError("CUDA out of memory")

    out = run_loop(first, config=LoopConfig(max_time_s=1.0))
    assert out.stop_reason == "error" and out.first_call_s is None and out.n_samples == 0
    assert out.error is not None and out.error.phase == "first-inference" and out.error.iteration == 0
    assert "RuntimeError" in str(out.error) and "first-inference" in str(out.error)

    def warm(i: int) -> None:
        if i == 5:
            raise KeyError("x")

    out = run_loop(warm, config=LoopConfig(max_time_s=1.0, block_size=1))
    assert out.stop_reason == "error" and out.first_call_s is not None
    assert out.error is not None and out.error.phase == "warm-up" and out.error.iteration == 4
    assert out.warmup_iters == 4 and out.n_samples == 0


def test_error_in_block_mode_keeps_whole_blocks(fake_time: FakeTime) -> None:
    def call(i: int) -> None:
        if i == 1 + 25:
            raise ValueError("late")
        fake_time.advance(100)

    out = run_loop(call, config=_no_warmup(block_size=10), clock=HostClock(now_ns=fake_time.now_ns))
    assert out.stop_reason == "error" and out.block_size == 10
    assert out.n_samples == 2 and out.n_calls == 20
    assert np.all(out.samples_s == 101e-9)  # block mean: (10 x 100 + one 10 ns tick) / 10
    assert out.error is not None and out.error.iteration == 25


def test_keyboard_interrupt_returns_partial() -> None:
    def call(i: int) -> None:
        if i == 51:
            raise KeyboardInterrupt
        spin_ns(5 * US)

    out = run_loop(call, config=_no_warmup(max_time_s=2.0))
    assert out.stop_reason == "interrupted" and out.interrupted and out.error is None
    assert out.n_samples == 50
    assert gc.isenabled()


# ---------------------------------------------------------------- gc


def test_gc_disabled_inside_and_restored(fake_time: FakeTime) -> None:
    seen: list[bool] = []

    def call(i: int) -> None:
        seen.append(gc.isenabled())
        for _ in range(20):  # cyclic garbage that would trigger gen-0 collections
            a: list[object] = []
            a.append(a)
        fake_time.advance(1000)

    assert gc.isenabled()
    out = run_loop(call, config=_fake_cfg(max_iters=2000), clock=HostClock(now_ns=fake_time.now_ns))
    assert not any(seen)
    assert out.gc_collections == 0
    assert gc.isenabled()


def test_gc_collections_counted(fake_time: FakeTime) -> None:
    collected: list[int] = []

    def explicit(i: int) -> None:
        if i % 100 == 0:
            gc.collect()
            collected.append(i)
        fake_time.advance(1000)

    out = run_loop(explicit, config=_fake_cfg(), clock=HostClock(now_ns=fake_time.now_ns))
    m_start = 1 + out.warmup_iters
    assert out.n_calls == 459  # indices 21..479: collections at 100, 200, 300, 400
    assert out.gc_collections == len([i for i in collected if i >= m_start]) == 4
    assert out.gc_collections_warmup == len([i for i in collected if i < m_start]) == 1

    seen: list[bool] = []

    def allocating(i: int) -> None:
        seen.append(gc.isenabled())
        for _ in range(100):
            a: list[object] = []
            a.append(a)
        fake_time.advance(1000)

    out = run_loop(allocating, config=_fake_cfg(max_iters=2000, keep_gc=True), clock=HostClock(now_ns=fake_time.now_ns))
    assert all(seen)
    assert out.gc_collections > 0


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "kw",
    [
        dict(precision=0),
        dict(precision=1.5),
        dict(precision="1%"),
        dict(confidence=1.0),
        dict(max_time_s=0),
        dict(max_time_s=float("inf")),
        dict(min_time_s=5.0, max_time_s=1.0),
        dict(min_iters=-1),
        dict(max_iters=0),
        dict(min_iters=100, max_iters=10),
        dict(warmup_min_iters=20, warmup_max_iters=10),
        dict(warmup_window=0),
        dict(warmup_tolerance=0),
        dict(block_size=0),
        dict(block_threshold=-1),
        dict(min_iters=2.5),
    ],
)
def test_config_validation(kw: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        LoopConfig(**kw)  # type: ignore[arg-type]


def test_config_defaults() -> None:
    c = LoopConfig()
    assert (c.precision, c.confidence, c.max_time_s, c.keep_gc, c.block_threshold) == (0.01, 0.95, 30.0, False, 20.0)
    assert c.min_samples == 459
    assert c.effective_warmup_max_s == 10.0
    assert LoopConfig(max_time_s=2).effective_warmup_max_s == 1.0


# ---------------------------------------------------------------- progress


def test_progress_is_rare_monotone_and_bounded() -> None:
    calls: list[tuple[float, int, str]] = []
    rng = np.random.default_rng(3)
    lat = rng.integers(20 * US, 80 * US, size=100_000)
    out = run_loop(
        lambda i: spin_ns(int(lat[i])), config=LoopConfig(precision=1e-4, max_time_s=1.0),
        progress=lambda f, n, p: calls.append((f, n, p)),
    )
    assert out.stop_reason == "max-time"
    phases = [p for _, _, p in calls]
    assert phases[0] == "first-inference" and phases[-1] == "measure"
    assert set(phases) <= {"first-inference", "warm-up", "measure"}
    assert calls[-1][0] == 1.0
    assert all(0.0 <= f <= 1.0 for f, _, _ in calls)
    meas = [f for f, _, p in calls if p == "measure"]
    assert meas == sorted(meas)
    assert len(calls) <= 20 * (out.warmup_s + out.measure_s) + 5
