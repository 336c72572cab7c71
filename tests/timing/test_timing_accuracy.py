"""Ground truth from busy-wait spins on the real clock (never sleep): loose bounds only."""

from __future__ import annotations

import numpy as np
import pytest

from infermeter import stats
from infermeter.timing.loop import LoopConfig, run_loop

from ._helpers import spin_ns

US = 1_000


@pytest.mark.parametrize(("ns", "tol"), [(1_000 * US, 0.03), (50 * US, 0.05)])
def test_spin_p50_is_accurate(ns: int, tol: float) -> None:
    out = run_loop(lambda i: spin_ns(ns), config=LoopConfig(max_time_s=3.0))
    assert out.stop_reason in ("precision", "max-time")
    assert out.block_size == 1
    assert out.n_samples >= 100
    p50 = stats.percentile(out.samples_s, 50)
    assert abs(p50 - ns * 1e-9) <= tol * ns * 1e-9, (p50, out.timer_overhead_s)
    assert out.first_call_s is not None and out.first_call_s > 0.5 * ns * 1e-9


def test_mixture_true_percentiles_inside_reported_cis() -> None:
    # 90%: uniform 150-250 us, 10%: uniform 900-1100 us, drawn per running index (seeded)
    # Seed and count are chosen so that the CIs of the drawn durations themselves hold the truth
    # with room above it: timing noise (preemption, interrupts) only ever adds time, which moves
    # the measured CIs up; this keeps the test meaningful and not flaky on a busy 2-core machine.
    rng = np.random.default_rng(139)
    size = 20_000
    slow = rng.random(size) < 0.1
    draws = np.where(slow, rng.uniform(900, 1100, size), rng.uniform(150, 250, size)) * US
    durations = draws.astype(np.int64).tolist()
    true_p50 = (150 + 100 * 0.5 / 0.9) * 1e-6  # mixture CDF = 0.5
    true_p99 = (900 + 200 * 0.9) * 1e-6  # mixture CDF = 0.99

    # no warm-up and a fixed count: the measured indices (1..1000) and so the draws are fixed
    cfg = LoopConfig(warmup_min_iters=0, warmup_max_iters=0, precision=1e-4, max_iters=1000, max_time_s=10.0)
    out = run_loop(lambda i: spin_ns(durations[i]), config=cfg)
    assert out.stop_reason == "max-iters" and out.n_samples == 1000
    lo50, hi50 = stats.percentile_ci(out.samples_s, 50)
    assert lo50 is not None and hi50 is not None and lo50 <= true_p50 <= hi50, (lo50, true_p50, hi50)
    # No call can last over 1.1 ms; a sample over 1.25 ms was interrupted (preempted). These draws
    # keep the true p99 inside its CI with up to 10 such samples (1%); beyond that the machine, not
    # the harness, decides the tail, and the ground truth no longer holds: say so, do not fail.
    interrupted = int(np.count_nonzero(out.samples_s > 1.25e-3))
    if interrupted > 10:
        pytest.skip(f"machine too busy for a p99 ground truth: {interrupted} of 1000 samples were preempted")
    lo99, hi99 = stats.percentile_ci(out.samples_s, 99)
    assert lo99 is not None and hi99 is not None and lo99 <= true_p99 <= hi99, (lo99, true_p99, hi99, interrupted)


@pytest.mark.parametrize("ns", [0, 100])
def test_very_short_calls_are_timed_in_blocks(ns: int) -> None:
    call = (lambda i: None) if ns == 0 else (lambda i: spin_ns(ns))
    out = run_loop(call, config=LoopConfig(max_time_s=2.0))
    assert out.timer_overhead_s is not None and out.timer_overhead_s > 0
    assert out.block_size > 1
    assert out.n_calls == out.n_samples * out.block_size
    # a block lasts about 20x the overhead, so the per-call mean is well below the block time
    assert float(np.median(out.samples_s)) * out.block_size >= 5 * out.timer_overhead_s


def test_noop_without_blocks_costs_about_the_timer_overhead() -> None:
    out = run_loop(lambda i: None, config=LoopConfig(max_time_s=2.0, block_size=1))
    assert out.block_size == 1
    p50 = stats.percentile(out.samples_s, 50)
    assert p50 < 5e-6  # ~60 ns quiet; the 0.5 us target is checked in benchmarks/


def test_warmup_covers_a_call_getting_faster() -> None:
    # 500 us falling linearly to 100 us over the first 40 calls
    def call(i: int) -> None:
        spin_ns(100 * US + 400 * US * max(0, 40 - i) // 40)

    out = run_loop(call, config=LoopConfig(max_time_s=3.0))
    assert out.warmup_iters >= 40
    assert out.warmup_stop == "steady"
    assert abs(stats.percentile(out.samples_s, 50) - 100e-6) <= 0.05 * 100e-6
