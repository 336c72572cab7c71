"""Server scenario: scheduling accuracy, and agreement with MLPerf LoadGen.

1. **Schedule lag** — ``bench(scenario="server")`` on a no-op Python model at
   1,000 and 10,000 QPS (Poisson arrivals, no batching): the lag between each
   query's scheduled and actual issue time (p50, p99, max), and the achieved
   QPS. Goal: p99 lag under 200 µs at 1,000 QPS on 2 cores. Beside it, the
   machine's floor: a bare single-thread ``wait_until`` loop over the same
   schedule (no queue, no worker, no GIL sharing), alternated with the runs.
2. **LoadGen agreement** — the same busy-waiting SUT (2 ms per query, numpy
   input) under ``mlperf_loadgen`` and under infermeter, runs alternated:
   single-stream p90/p50, server (150 QPS) p50/p99 and completed QPS.

Each figure is measured ``--repeats`` times; the JSON keeps every repeat, the
median, and the machine's load (a busy machine shows as lag: see ``noise``).
Writes benchmarks/results/server_schedule.json.
Run: python benchmarks/server_schedule.py [--repeats 3] [--duration 5] [--no-loadgen]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

from infermeter.measure import bench  # noqa: E402
from infermeter.scenarios.server import arrival_offsets  # noqa: E402
from infermeter.timing.schedule import SPIN_NS_LOW_SLACK, reduce_timer_slack, wait_until  # noqa: E402

_TESTS = Path(__file__).resolve().parents[1] / "tests" / "integration"


def noop(x: np.ndarray) -> np.ndarray:
    return x


def schedule_lag(qps: float, duration_s: float) -> dict[str, Any]:
    r = bench(noop, inputs=["x:float32[B,1]"], scenario="server", qps=qps, min_duration_s=duration_s,
              max_time_s=duration_s, min_queries=1, store=False)
    d = r.scenario_details
    lag = d["schedule_lag_s"]
    return {
        "lag_p50_us": lag["p50"] * 1e6, "lag_p99_us": lag["p99"] * 1e6, "lag_max_us": lag["max"] * 1e6,
        "achieved_qps": d["achieved_qps"], "scheduled_qps": d["scheduled_qps"], "queries": d["issued"],
        "latency_p99_us": r.latency.p99.value * 1e6, "load_avg_1m": os.getloadavg()[0],
    }


def bare_floor(qps: float, duration_s: float) -> dict[str, Any]:
    """The same schedule issued by a bare loop in this thread: what the machine allows."""
    import gc
    import time

    offsets = arrival_offsets(qps, duration_s, 0, 10**7)
    reduce_timer_slack()
    now = time.perf_counter_ns
    gc.disable()
    try:
        t0 = now() + 5_000_000
        sched = [t0 + o for o in offsets]
        got = [wait_until(t, now, SPIN_NS_LOW_SLACK) for t in sched]
    finally:
        gc.enable()
    lag = (np.asarray(got) - np.asarray(sched)) * 1e-3
    return {"lag_p50_us": float(np.percentile(lag, 50)), "lag_p99_us": float(np.percentile(lag, 99)),
            "lag_max_us": float(lag.max()), "load_avg_1m": os.getloadavg()[0]}


def loadgen_agreement(tmp: Path, rounds: int) -> dict[str, Any]:
    sys.path.insert(0, str(_TESTS))
    from test_loadgen import run_loadgen, spin_model  # the test's harness: one definition of the LoadGen run

    model = spin_model(2_000_000)
    ss: dict[str, list[float]] = {k: [] for k in ("loadgen_p90_ms", "infermeter_p90_ms", "loadgen_p50_ms", "infermeter_p50_ms")}
    sv: dict[str, list[float]] = {k: [] for k in (
        "loadgen_p50_ms", "infermeter_p50_ms", "loadgen_p99_ms", "infermeter_p99_ms", "loadgen_qps", "infermeter_qps")}
    for i in range(rounds):
        ref = run_loadgen(tmp / f"ss{i}", "SingleStream", model, min_duration_ms=2000)
        r = bench(model, inputs=["x:float32[B,16]"], store=False, max_time_s=2.0, min_duration_s=2.0)
        ss["loadgen_p90_ms"].append(ref["result_90.00_percentile_latency_ns"] / 1e6)
        ss["loadgen_p50_ms"].append(ref["result_50.00_percentile_latency_ns"] / 1e6)
        ss["infermeter_p90_ms"].append(r.headline.value * 1e3)
        ss["infermeter_p50_ms"].append(r.latency.p50.value * 1e3)
        ref = run_loadgen(tmp / f"sv{i}", "Server", model, qps=150.0, bound_ns=50_000_000, min_duration_ms=4000,
                          threaded=True)
        r = bench(model, inputs=["x:float32[B,16]"], store=False, scenario="server", qps=150.0, seed=i,
                  latency_bound_ms=50, min_duration_s=4.0, max_time_s=4.0)
        sv["loadgen_p50_ms"].append(ref["result_50.00_percentile_latency_ns"] / 1e6)
        sv["loadgen_p99_ms"].append(ref["result_99.00_percentile_latency_ns"] / 1e6)
        sv["loadgen_qps"].append(ref["result_completed_samples_per_sec"])
        sv["infermeter_p50_ms"].append(r.latency.p50.value * 1e3)
        sv["infermeter_p99_ms"].append(r.headline.value * 1e3)
        sv["infermeter_qps"].append(r.scenario_details["achieved_qps"])

    def rel(a: list[float], b: list[float]) -> float:
        return statistics.median(a) / statistics.median(b) - 1

    return {
        "sut": "busy-wait 2 ms per query on a float32[1,16] numpy input",
        "single_stream": {"runs": ss, "median": {k: statistics.median(v) for k, v in ss.items()},
                          "rel_diff_p90": rel(ss["infermeter_p90_ms"], ss["loadgen_p90_ms"]),
                          "rel_diff_p50": rel(ss["infermeter_p50_ms"], ss["loadgen_p50_ms"])},
        "server_150qps": {"runs": sv, "median": {k: statistics.median(v) for k, v in sv.items()},
                          "rel_diff_p50": rel(sv["infermeter_p50_ms"], sv["loadgen_p50_ms"]),
                          "rel_diff_p99": rel(sv["infermeter_p99_ms"], sv["loadgen_p99_ms"]),
                          "rel_diff_qps": rel(sv["infermeter_qps"], sv["loadgen_qps"])},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per schedule-lag run")
    ap.add_argument("--no-loadgen", action="store_true")
    args = ap.parse_args()
    lag: dict[str, Any] = {}
    for qps in (1000.0, 10000.0):
        runs, floor = [], []
        for _ in range(args.repeats):
            runs.append(schedule_lag(qps, args.duration))
            floor.append(bare_floor(qps, args.duration))
        lag[f"{qps:g}"] = {
            "runs": runs,
            "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
            "best_p99_lag_us": min(r["lag_p99_us"] for r in runs),
            "bare_loop_floor": {"runs": floor, "median_p99_lag_us": statistics.median(f["lag_p99_us"] for f in floor)},
        }
    payload: dict[str, Any] = {
        "cores": os.cpu_count(), "duration_s": args.duration, "repeats": args.repeats,
        "schedule_lag": lag,
        "goals": {"p99_lag_under_200us_at_1000qps (median of repeats)": lag["1000"]["median"]["lag_p99_us"] < 200},
    }
    if not args.no_loadgen:
        import importlib.util

        if importlib.util.find_spec("mlperf_loadgen") is None:
            payload["loadgen"] = "mlperf_loadgen is not installed"
        else:
            with tempfile.TemporaryDirectory() as tmp:
                payload["loadgen"] = loadgen_agreement(Path(tmp), args.repeats)
    write("server_schedule", payload)


if __name__ == "__main__":
    main()
