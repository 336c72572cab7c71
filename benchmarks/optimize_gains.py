"""What does ``infermeter optimize`` find on this machine? The issue's two goals:

* ``zoo:bert-base`` (12 layers, 768 wide) at batch 8, sequence 128, objective
  throughput: the best candidate within 1% fidelity loss (mean cosine >= 0.99 on
  generated rows) must reach >= 4x the throughput of PyTorch eager float32;
* ``zoo:digits-cnn`` at batch 1, objective p50 latency: >= 2x lower p50 than
  eager float32 with <= 1 point accuracy loss on the held-out digits.

Each case is one ``optimize()`` run (baseline and every candidate in its own
process, one after another) and the whole table goes into the JSON, the
candidates that did not help included.

Usage:
    python benchmarks/optimize_gains.py [--cases bert-base,digits-cnn] [--max-time 10]
Writes benchmarks/results/optimize_gains.json. Takes about 20-30 minutes on a 2-core VM.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

CASES = {
    "bert-base": dict(model="zoo:bert-base", objective="throughput", batch_sizes=[8], dims={"seq": 128}, max_drop="1%",
                      goal=4.0, eval_rows=32),
    "digits-cnn": dict(model="zoo:digits-cnn", objective="latency-p50", batch_sizes=[1], dims={}, max_drop="1%", goal=2.0,
                       eval_rows=64),
}


def run_case(name: str, max_time: float, distill_time: float) -> dict:
    from infermeter.optimize.run import OptimizeOptions, optimize

    c = CASES[name]
    opts = OptimizeOptions(model=c["model"], objective=c["objective"], batch_sizes=c["batch_sizes"], dims=c["dims"],
                           max_drop=c["max_drop"], max_time_s=max_time, distill_seconds=distill_time, eval_rows=c["eval_rows"])

    def show(event: str, payload: dict) -> None:
        if event in ("candidate-start", "candidate-done"):
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {event} {payload.get('name')} {payload.get('status', '')}",
                  file=sys.stderr, flush=True)

    t0 = time.monotonic()
    rep = optimize(opts, store=None, progress=show)
    rows = []
    for r in rep.rows:
        rec = r.record
        rows.append({
            "candidate": rec.name, "lineage": rec.lineage, "status": rec.status, "reason": rec.reason,
            "speedup": r.speedup, "speedup_ci": [r.speedup_ci_low, r.speedup_ci_high],
            "objective_value_s": r.objective_value_s, "throughput_samples_per_s": r.throughput,
            "samples": None, "accuracy": rec.accuracy, "accuracy_delta": r.accuracy_delta,
            "size_bytes": rec.size_bytes, "peak_memory_bytes": r.peak_memory_bytes, "build_s": rec.build_s,
            "verdict": r.verdict, "on_front": r.on_front, "chosen": r.chosen,
        })
    chosen = next((r for r in rep.rows if r.chosen), None)
    return {
        "model": c["model"], "objective": rep.objective, "batch_size": rep.batch_size, "accuracy_name": rep.accuracy_name,
        "max_drop": rep.max_drop, "confidence": rep.confidence, "notes": rep.notes, "choice": rep.choice.model_dump(),
        "goal_speedup": c["goal"], "best_speedup": chosen.speedup if chosen else None,
        "best_speedup_ci": [chosen.speedup_ci_low, chosen.speedup_ci_high] if chosen else None,
        "goal_met": bool(chosen and chosen.speedup is not None and chosen.speedup >= c["goal"]),
        "goal_met_at_ci_low": bool(chosen and chosen.speedup_ci_low is not None and chosen.speedup_ci_low >= c["goal"]),
        "elapsed_s": round(time.monotonic() - t0, 1), "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--max-time", type=float, default=10.0, help="seconds of measurement per candidate")
    ap.add_argument("--distill-time", type=float, default=20.0)
    args = ap.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    out = {"cases": {c: run_case(c, args.max_time, args.distill_time) for c in cases}}
    write("optimize_gains", out)


if __name__ == "__main__":
    main()
