"""Sweep overhead per point: what running a point in its own fresh process costs.

Two measurements, both on a 100 µs busy-wait model (``sweep_overhead:marked_spin``) whose
first call writes its ``time.monotonic_ns()`` to stderr:

* **worker milestones** (``run_worker``, N fresh processes): from ``Popen`` to the
  interpreter running, to ``infermeter.measure`` imported, to the point starting (model
  loaded, environment captured), to the **first timed call**, and to the process gone;
  "overhead" is the worker's wall time minus the time spent calling the model (first
  call + warm-up + measurement).
* **whole sweep** (``run_sweep``, N points, store on disk): wall time per point minus
  model time per point; and the same point measured in-process by ``bench()`` for the
  part that is not due to the process (load, environment capture, statistics).

Writes benchmarks/results/sweep_overhead.json.  Run: python benchmarks/sweep_overhead.py [--points 10]
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_first: list[int] = []


def marked_spin(x):  # the model: 100 µs of busy wait; the first call says when it happened
    if not _first:
        _first.append(time.monotonic_ns())
        print(f"first-call-ns {_first[0]}", file=sys.stderr, flush=True)
    end = time.perf_counter_ns() + 100_000
    while time.perf_counter_ns() < end:
        pass
    return x


SETTINGS = {"max_time_s": 0.5, "precision": 0.01}
KWARGS = {"model": "sweep_overhead:marked_spin", "inputs": ["x:float32[B,4]"], "batch_size": 1, **SETTINGS}


def _stats(values):
    import statistics

    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}


def _model_time(result: dict) -> float:
    ph = result["phases"]
    return (ph.get("first_inference_s") or 0.0) + (ph.get("warmup_s") or 0.0) + (ph.get("measure_s") or 0.0)


def worker_milestones(n: int, env: dict) -> dict:
    from infermeter.sweep.process import run_worker

    rows = []
    for _ in range(n):
        out = run_worker({"kwargs": KWARGS}, env=env, timeout_s=120)
        assert out.ok and out.result is not None, (out.reason, out.detail, out.stderr_tail)
        first = next(int(ln.split()[1]) for ln in out.stderr_tail if ln.startswith("first-call-ns "))
        t = out.timings()
        model_s = _model_time(out.result)
        rows.append({
            **t, "to_first_call_s": (first - out.t_launch_ns) / 1e9, "model_s": model_s,
            "overhead_s": t["wall_s"] - model_s, "import_infermeter_s": t["to_ready_s"] - t["to_interpreter_s"],
            "load_and_env_s": t["to_point_start_s"] - t["to_ready_s"],
            "point_start_to_first_call_s": (first - out.t_point_start_ns) / 1e9,
            "after_last_call_s": (out.t_end_ns - first) / 1e9 - model_s,
        })
    keys = rows[0].keys()
    return {"runs": rows, "summary": {k: _stats([r[k] for r in rows]) for k in keys}}


def whole_sweep(n: int, env: dict, store_path: str) -> dict:
    from infermeter.sweep import run_sweep

    cfg = {"model": KWARGS["model"], "inputs": KWARGS["inputs"], "settings": SETTINGS,
           "axes": {"settings.seed": list(range(n))}, "id": f"overhead-{time.time_ns()}"}
    t0 = time.perf_counter()
    out = run_sweep(cfg, store=store_path, env=env)
    wall = time.perf_counter() - t0
    assert out.ok, [r.error for r in out.failed]
    model = [_model_time(r.to_json_dict()) for r in out.results]
    return {
        "points": n, "wall_s": wall, "per_point_wall_s": wall / n, "per_point_model_s": sum(model) / n,
        "per_point_overhead_s": (wall - sum(model)) / n, "overhead_share": (wall - sum(model)) / wall,
    }


def in_process(n: int) -> dict:
    sys.path.insert(0, HERE)
    from infermeter.measure import bench

    rows = []
    for seed in range(n):
        _first.clear()
        t0 = time.perf_counter()
        r = bench(KWARGS["model"], inputs=KWARGS["inputs"], batch_size=1, seed=seed, store=False, **SETTINGS)
        wall = time.perf_counter() - t0
        rows.append({"wall_s": wall, "model_s": _model_time(r.to_json_dict()), "overhead_s": wall - _model_time(r.to_json_dict())})
    return {k: _stats([r[k] for r in rows]) for k in rows[0]}


def main() -> None:
    import argparse
    import tempfile

    sys.path.insert(0, HERE)
    from _common import write

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10)
    args = ap.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        milestones = worker_milestones(args.points, env)
        sweep = whole_sweep(args.points, env, os.path.join(tmp, "store.db"))
    inproc = in_process(args.points)
    s = milestones["summary"]
    process_cost = s["overhead_s"]["median"] - inproc["overhead_s"]["median"]
    write("sweep_overhead", {
        "what": "cost of running a sweep point in a fresh worker process (seconds; medians over points)",
        "model": "100 us busy-wait, batch 1, max_time_s 0.5, precision 1%",
        "worker_milestones": milestones["summary"],
        "whole_sweep": sweep,
        "in_process_bench": inproc,
        "headline": {
            "process_start_to_first_timed_call_s": s["to_first_call_s"]["median"],
            "worker_overhead_s": s["overhead_s"]["median"],
            "in_process_overhead_s": inproc["overhead_s"]["median"],
            "isolation_cost_s": process_cost,
            "sweep_per_point_overhead_s": sweep["per_point_overhead_s"],
        },
        "runs": milestones["runs"],
    })


if __name__ == "__main__":
    main()
