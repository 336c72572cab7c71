"""How good are infermeter's predictions on this machine?

For every zoo model at batch 1, 8 and 32 (float32, and bfloat16 where the CPU
has it), predict from the calibrated profile and measure with the bench engine;
then the errors, their median, the share within ±25%, the worst case, the
Spearman rank correlation of predicted vs measured, and the same for the
baseline every analytic tool uses (FLOPs ÷ peak at 100% efficiency, the peak
being this machine's best calibrated GEMM rate, which is kinder to the
baseline than a spec-sheet peak would be). For the dominant op types it also
checks the predicted bound (compute or memory) against the bound the profiler
implies (the op's achieved FLOP/s and B/s as fractions of the machine's best).

Usage:
    python benchmarks/predict_accuracy.py [--profile FILE.yaml | --store PATH]
        [--models mlp,cnn,...] [--batches 1,8,32] [--max-time 6]
Without a profile it calibrates first (about 90 s) and keeps the profile in
the store. Writes benchmarks/results/predict_accuracy.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

DIMS = {"bert-mini": {"seq": 128}, "bert-base": {"seq": 128}, "lstm": {"seq": 64}}


def _profile(args: argparse.Namespace):
    from infermeter.predict.calibrate import calibrate
    from infermeter.predict.profiles import load_profile, read_profile_file, save_profile
    from infermeter.store import Store, default_store_path

    if args.profile:
        return read_profile_file(args.profile)
    store = Store(args.store or default_store_path())
    prof = None if args.recalibrate else load_profile(store)
    if prof is None or prof.kind != "cpu":
        print("calibrating this machine …", file=sys.stderr)
        prof = calibrate()
        save_profile(store, prof)
    return prof


def _bf16_ok(prof) -> bool:
    return "bfloat16" in prof.dtypes


def _dominant_bounds(work, pred, prof_res, machine) -> list[dict]:
    """Predicted vs profiler-implied bound, per op class, for the classes that hold
    80% of the profiled time. The profiler's label: 'overhead' when a call takes
    under twice the calibrated dispatch cost; else whichever roof the class runs
    closer to, its FLOP/s as a fraction of the best calibrated GEMM rate or its
    B/s as a fraction of the bandwidth at its ops' mean working set."""
    if prof_res is None or prof_res.op_profile is None:
        return []
    op_prof = prof_res.op_profile
    it = max(1, op_prof.iterations)
    dtype = next((o.dtype for o in work.ops if o.op_class == "matmul"), "float32")
    best = machine.best_rates.get(dtype) or max(machine.best_rates.values())
    overhead = machine.overhead("torch")
    counted: dict[str, dict[str, float]] = {}
    for o, p in zip(work.ops, pred.ops):
        c = counted.setdefault(o.op_class, {"flops": 0.0, "bytes": 0.0, "ops": 0, "compute": 0.0, "memory": 0.0, "overhead": 0.0, "unknown": 0.0})
        c["flops"] += o.flops
        c["bytes"] += o.bytes
        c["ops"] += 1
        c[p.bound] += p.time_s
    measured: dict[str, dict[str, float]] = {}
    for t in op_prof.by_type:
        m = measured.setdefault(t.op_class or "unknown", {"s": 0.0, "calls": 0.0, "share": 0.0})
        m["s"] += t.per_iter_s
        m["calls"] += t.calls / it
        m["share"] += t.share
    out, covered = [], 0.0
    for cls, m in sorted(measured.items(), key=lambda kv: -kv[1]["s"]):
        if covered >= 0.8:
            break
        covered += m["share"]
        c = counted.get(cls)
        if c is None or m["s"] <= 0 or (c["flops"] == 0 and c["bytes"] == 0):
            continue
        per_call = m["s"] / max(1.0, m["calls"])
        ws = c["bytes"] / max(1, c["ops"])
        f_frac = c["flops"] / m["s"] / best
        b_frac = c["bytes"] / m["s"] / machine.bandwidth("copy", ws)
        label = "overhead" if per_call < 2 * overhead else ("compute" if f_frac >= b_frac else "memory")
        predicted = max(("compute", "memory", "overhead"), key=lambda k: c[k])
        out.append({"op_class": cls, "share": m["share"], "measured_bound": label, "predicted_bound": predicted,
                    "flops_frac_of_best": f_frac, "bw_frac_at_working_set": b_frac, "match": label == predicted})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--store", type=Path)
    ap.add_argument("--recalibrate", action="store_true")
    ap.add_argument("--models", default="mlp,cnn,bert-mini,bert-base,lstm")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--dtypes", default="")
    ap.add_argument("--max-time", type=float, default=6.0)
    args = ap.parse_args()

    from infermeter.measure import bench
    from infermeter.models import load_model
    from infermeter.models.base import LoadOptions
    from infermeter.predict.count import count_runner
    from infermeter.predict.machine import machine_for_profile
    from infermeter.predict.profile import profile_model
    from infermeter.predict.roofline import predict_work

    prof = _profile(args)
    machine = machine_for_profile(prof)
    best = machine.best_rates
    dtypes = args.dtypes.split(",") if args.dtypes else (["float32", "bfloat16"] if _bf16_ok(prof) else ["float32"])
    batches = [int(b) for b in args.batches.split(",")]
    cases = []
    for dtype in dtypes:
        for name in args.models.split(","):
            spec = f"zoo:{name}"
            dims = DIMS.get(name, {})
            for b in batches:
                opts = LoadOptions(dtype=None if dtype == "float32" else dtype)
                runner = load_model(spec, opts)
                try:
                    work = count_runner(runner, batch_size=b, dims=dims, inputs=[])
                finally:
                    runner.close()
                pred = predict_work(work, machine)
                res = bench(spec, batch_size=b, dims=dims, dtype=opts.dtype, max_time_s=args.max_time, store=False,
                            min_iters=3)
                first = res.latency.p50.value
                measured = first
                peak = best.get(dtype) or best.get("float32")
                baseline = work.flops / peak
                prof_res = profile_model(spec, batch_size=b, dims=dims, options=opts, iterations=5, warmup=2) if b == 8 else None
                case = {
                    "model": name, "batch": b, "dtype": dtype, "gflop": work.flops / 1e9, "ops": len(work.ops),
                    "spec": spec, "dims": dims, "measured_first_p50_s": first,
                    "measured_p50_s": measured, "measured_n": res.latency.count, "predicted_s": pred.latency_s,
                    "error": (pred.latency_s - measured) / measured,
                    "baseline_s": baseline, "baseline_error": (baseline - measured) / measured,
                    "bounds": _dominant_bounds(work, pred, prof_res, machine),
                }
                cases.append(case)
                print(f"{dtype:9s} {name:10s} b{b:<3d} measured {measured * 1e3:9.3f} ms  predicted {pred.latency_s * 1e3:9.3f} ms "
                      f"({case['error'] * 100:+6.1f}%)  baseline {baseline * 1e3:9.3f} ms ({case['baseline_error'] * 100:+6.1f}%)",
                      file=sys.stderr, flush=True)

    # A second measurement of every case, in reverse order, minutes later: the spread
    # between the two is this machine's run-to-run noise, the floor under any error.
    # The figure compared with the prediction is the mean of the two medians.
    for c in reversed(cases):
        again = bench(c["spec"], batch_size=c["batch"], dims=c["dims"], dtype=None if c["dtype"] == "float32" else c["dtype"],
                      max_time_s=args.max_time, store=False, min_iters=3).latency.p50.value
        c["measured_second_p50_s"] = again
        c["repeatability"] = abs(again - c["measured_first_p50_s"]) / (0.5 * (again + c["measured_first_p50_s"]))
        c["measured_p50_s"] = 0.5 * (again + c["measured_first_p50_s"])
        c["error"] = (c["predicted_s"] - c["measured_p50_s"]) / c["measured_p50_s"]
        c["baseline_error"] = (c["baseline_s"] - c["measured_p50_s"]) / c["measured_p50_s"]
        print(f"{c['dtype']:9s} {c['model']:10s} b{c['batch']:<3d} measured again {again * 1e3:9.3f} ms "
              f"(runs {c['repeatability'] * 100:4.1f}% apart)  error vs mean {c['error'] * 100:+6.1f}%", file=sys.stderr, flush=True)

    def summary(key: str, pred_key: str) -> dict:
        errs = np.array([c[key] for c in cases])
        ratios = np.array([c[pred_key] / c["measured_p50_s"] for c in cases])
        rho = sps.spearmanr([c[pred_key] for c in cases], [c["measured_p50_s"] for c in cases]).statistic
        return {
            "cases": len(cases),
            "median_abs_error": float(np.median(np.abs(errs))),
            "within_25pct": float(np.mean(np.abs(errs) <= 0.25)),
            "worst_ratio": float(max(ratios.max(), 1 / ratios.min())),
            "spearman": float(rho) if not math.isnan(rho) else None,
        }

    bounds = [b for c in cases for b in c["bounds"]]
    doc = {
        "profile": {"name": prof.name, "created": prof.created.isoformat(), "threads": prof.threads, "dtypes": prof.dtypes},
        "goals": {"median_abs_error": 0.10, "within_25pct": 0.90, "worst_ratio": 2.0, "spearman": 0.97},
        "infermeter": summary("error", "predicted_s"),
        "baseline_flops_over_peak": summary("baseline_error", "baseline_s"),
        "bound_labels": {"checked": len(bounds), "matching": sum(b["match"] for b in bounds)},
        "measurement_repeatability": {
            "median": float(np.median([c["repeatability"] for c in cases])),
            "max": float(max(c["repeatability"] for c in cases)),
            "what": "|second - first| / mean of the two p50s of the same case, measured minutes apart",
        },
        "cases": cases,
    }
    write("predict_accuracy", doc)


if __name__ == "__main__":
    main()
