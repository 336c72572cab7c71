from __future__ import annotations

import subprocess
import sys
import time

import pytest

from infermeter.timing.clocks import CallFailed, CudaEventClock, HostClock, measure_timer_overhead

from ._helpers import FakeEvent, FakeTime


def test_host_clock_defaults_to_perf_counter_ns() -> None:
    c = HostClock()
    assert c.name == "host"
    assert c.now_ns is time.perf_counter_ns


def test_host_measure_exact_with_fake_clock(fake_time) -> None:
    clock = HostClock(now_ns=fake_time.now_ns)
    seen: list[int] = []

    def call(i: int) -> None:
        seen.append(i)
        fake_time.advance(1000 + i)

    out: list[int] = []
    clock.measure(call, None, 5, 3, 1, out)
    assert seen == [5, 6, 7]
    assert out == [1010 + 5, 1010 + 6, 1010 + 7]


def test_host_measure_blocks_and_sync(fake_time) -> None:
    clock = HostClock(now_ns=fake_time.now_ns)
    order: list[str] = []

    def call(i: int) -> None:
        order.append(f"c{i}")
        fake_time.advance(100)

    def sync() -> None:
        order.append("s")
        fake_time.advance(1)

    out: list[int] = []
    clock.measure(call, sync, 0, 2, 3, out)
    assert order == ["c0", "s", "c1", "s", "c2", "s", "c3", "s", "c4", "s", "c5", "s"]
    assert out == [3 * 101 + 10, 3 * 101 + 10]  # block totals; the loop divides


@pytest.mark.parametrize("block", [1, 4])
def test_call_failed_keeps_samples_and_index(fake_time, block: int) -> None:
    clock = HostClock(now_ns=fake_time.now_ns)

    def call(i: int) -> None:
        if i == 9:
            raise ValueError("boom")
        fake_time.advance(50)

    out: list[int] = []
    with pytest.raises(CallFailed) as ei:
        clock.measure(call, None, 0, 100, block, out)
    assert ei.value.index == 9
    assert isinstance(ei.value.original, ValueError)
    assert len(out) == 9 // block  # complete samples only


def test_keyboard_interrupt_propagates_unchanged(fake_time) -> None:
    clock = HostClock(now_ns=fake_time.now_ns)

    def call(i: int) -> None:
        if i == 3:
            raise KeyboardInterrupt

    out: list[int] = []
    with pytest.raises(KeyboardInterrupt):
        clock.measure(call, None, 0, 10, 1, out)
    assert len(out) == 3


def test_timer_overhead_fake_is_exactly_one_tick() -> None:
    ft = FakeTime(tick=37)
    assert measure_timer_overhead(HostClock(now_ns=ft.now_ns)) == pytest.approx(37e-9)


def test_timer_overhead_real_is_small_and_positive() -> None:
    o = measure_timer_overhead(HostClock())
    assert 0 < o < 20e-6  # ~60 ns on a quiet machine; loose for a noisy one


def test_cuda_event_clock_with_fake_events(fake_time, fake_event_factory) -> None:
    FakeEvent.log.clear()
    clock = CudaEventClock(fake_event_factory(lambda: fake_time.t), host_now_ns=fake_time.now_ns)
    assert clock.name == "cuda-events"
    syncs: list[int] = []
    out: list[float] = []
    host: list[int] = []
    clock.measure(fake_time.call(lambda i: 2000), lambda: syncs.append(1), 0, 3, 1, out, host)
    assert out == pytest.approx([2000.0] * 3)  # device: between the two records, no host reads inside
    assert host == [2010] * 3  # host: one tick of timer overhead on top
    assert len(syncs) == 3
    assert FakeEvent.log[:3] == ["record", "record", "synchronize"]
    out2: list[float] = []
    clock.measure(fake_time.call(lambda i: 500), None, 0, 2, 4, out2, None)
    assert out2 == pytest.approx([2000.0, 2000.0])


def test_timing_does_not_import_torch() -> None:
    code = "import sys, infermeter.timing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.cuda
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")
def test_cuda_events_real_device() -> None:
    import torch

    from infermeter.timing.loop import LoopConfig, run_loop

    a = torch.randn(2048, 2048, device="cuda")

    def call(i: int) -> object:
        return a @ a

    out = run_loop(call, torch.cuda.synchronize, config=LoopConfig(max_time_s=3.0), event_factory=torch.cuda.Event)
    assert out.clock == "cuda-events"
    assert out.stop_reason in ("precision", "max-time")
    assert out.samples_s.size > 0 and out.samples_s.min() > 0
    assert out.host_samples_s is not None and out.host_samples_s.size == out.samples_s.size
    # host time brackets device time (plus launch and sync); the cross-check is close to 1
    assert out.device_host_ratio is not None and 0.9 < out.device_host_ratio < 3.0
