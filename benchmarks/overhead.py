"""Harness overhead: what infermeter adds to a timed call, measured on a no-op.

Compares, in one process:
  * a bare loop: ``t0 = perf_counter_ns(); f(i); t1 = perf_counter_ns()`` per call;
  * ``timeit`` (per-call cost amortised over a million calls, no per-call clock reads);
  * infermeter's timed loop with blocks off (every call timed alone) and with
    automatic blocks, and ``bench()`` on a Python callable (adds the adapter).
Goal: the no-op's reported p50 under 0.5 µs, and under 1.5x the bare loop when blocks are not used.
Writes benchmarks/results/overhead.json.  Run: python benchmarks/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

from infermeter.measure import bench  # noqa: E402
from infermeter.stats import percentile  # noqa: E402
from infermeter.timing.clocks import measure_timer_overhead  # noqa: E402
from infermeter.timing.loop import LoopConfig, run_loop  # noqa: E402


def noop(i: int) -> None:
    return None


def bare_loop_p50_ns(n: int = 200_000) -> float:
    now = time.perf_counter_ns
    out: list[int] = []
    ap = out.append
    f = noop
    gc.disable()
    try:
        for i in range(n):
            t0 = now()
            f(i)
            t1 = now()
            ap(t1 - t0)
    finally:
        gc.enable()
    return percentile(np.asarray(out, float), 50)


def timeit_per_call_ns() -> float:
    t = timeit.Timer("f(0)", globals={"f": noop})
    return min(t.repeat(repeat=5, number=1_000_000)) / 1_000_000 * 1e9


def loop_p50_ns(block_size: int | None) -> tuple[float, int, float]:
    cfg = LoopConfig(max_time_s=1.0, block_size=block_size, precision=0.01)
    out = run_loop(noop, config=cfg)
    return percentile(out.samples_s, 50) * 1e9, out.block_size, out.timer_overhead_s * 1e9


def bench_callable_p50_ns() -> tuple[float, int, float]:
    def identity(x):
        return x

    r = bench(identity, inputs=["x:float32[B,1]"], batch_size=1, store=False, max_time_s=1.0)
    return r.latency.p50.value * 1e9, r.timer.block_size, r.timer.overhead_s * 1e9


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {k: [] for k in (
        "bare_loop_p50_ns", "timeit_per_call_ns", "timer_overhead_ns", "loop_noblock_p50_ns",
        "loop_auto_per_call_ns", "loop_auto_block_size", "bench_callable_p50_per_call_ns", "bench_callable_block_size")}
    for _ in range(args.repeats):
        rows["bare_loop_p50_ns"].append(bare_loop_p50_ns())
        rows["timeit_per_call_ns"].append(timeit_per_call_ns())
        rows["timer_overhead_ns"].append(measure_timer_overhead() * 1e9)
        p50, _, _ = loop_p50_ns(1)
        rows["loop_noblock_p50_ns"].append(p50)
        p50, k, _ = loop_p50_ns(None)
        rows["loop_auto_per_call_ns"].append(p50)
        rows["loop_auto_block_size"].append(k)
        p50, k, _ = bench_callable_p50_ns()
        rows["bench_callable_p50_per_call_ns"].append(p50)
        rows["bench_callable_block_size"].append(k)
    s = {k: summary(v) for k, v in rows.items()}
    ratio = s["loop_noblock_p50_ns"]["median"] / s["bare_loop_p50_ns"]["median"]
    goals = {
        "noop_p50_under_500ns": s["loop_noblock_p50_ns"]["median"] < 500,
        "noop_p50_over_bare_loop": ratio,
        "noop_p50_under_1.5x_bare_loop": ratio < 1.5,
    }
    write("overhead", {"unit": "ns", "repeats": args.repeats, "results": s, "goals": goals})


if __name__ == "__main__":
    main()
