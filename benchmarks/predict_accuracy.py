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
    """Predicted vs profiler-implied bound for the op types holding most of the time."""
    from infermeter.predict.opclass import torch_base_name

    best = max(machine.best_rates.values())
    dram = machine.dram_bandwidth()
    flops: dict[str, float] = {}
    nbytes: dict[str, float] = {}
    pred_bound: dict[str, dict[str, float]] = {}
    for o, p in zip(work.ops, pred.ops):
        key = torch_base_name(o.op)
        flops[key] = flops.get(key, 0.0) + o.flops
        nbytes[key] = nbytes.get(key, 0.0) + o.bytes
        pred_bound.setdefault(key, {}).setdefault(p.bound, 0.0)
        pred_bound[key][p.bound] += p.time_s
    out = []
    if prof_res is None or prof_res.op_profile is None:
        return out
    rows = sorted(prof_res.op_profile.by_type, key=lambda t: -t.per_iter_s)
    covered = 0.0
    for t in rows:
        key = torch_base_name(t.key)
        if key not in flops or t.per_iter_s <= 0:
            continue
        f_frac = flops[key] / t.per_iter_s / best
        b_frac = nbytes[key] / t.per_iter_s / dram
        measured = "compute" if f_frac >= b_frac else "memory"
        pb = pred_bound[key]
        predicted = max(("compute", "memory"), key=lambda k: pb.get(k, 0.0)) if any(pb.get(k) for k in ("compute", "memory")) else max(pb, key=pb.get)
        out.append({"op": key, "share": t.share, "measured_bound": measured, "predicted_bound": predicted,
                    "flops_frac_of_best": f_frac, "bw_frac_of_dram": b_frac, "match": measured == predicted})
        covered += t.share
        if covered >= 0.8:
            break
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
                measured = res.latency.p50.value
                peak = best.get(dtype) or best.get("float32")
                baseline = work.flops / peak
                prof_res = profile_model(spec, batch_size=b, dims=dims, options=opts, iterations=5, warmup=2) if b == 8 else None
                case = {
                    "model": name, "batch": b, "dtype": dtype, "gflop": work.flops / 1e9, "ops": len(work.ops),
                    "measured_p50_s": measured, "measured_n": res.latency.count, "predicted_s": pred.latency_s,
                    "error": (pred.latency_s - measured) / measured,
                    "baseline_s": baseline, "baseline_error": (baseline - measured) / measured,
                    "bounds": _dominant_bounds(work, pred, prof_res, machine),
                }
                cases.append(case)
                print(f"{dtype:9s} {name:10s} b{b:<3d} measured {measured * 1e3:9.3f} ms  predicted {pred.latency_s * 1e3:9.3f} ms "
                      f"({case['error'] * 100:+6.1f}%)  baseline {baseline * 1e3:9.3f} ms ({case['baseline_error'] * 100:+6.1f}%)",
                      file=sys.stderr, flush=True)

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
        "cases": cases,
    }
    write("predict_accuracy", doc)


if __name__ == "__main__":
    main()
