"""Coordinated omission: a server that stalls, measured open loop (corrected) and closed loop.

The server (``_stall_server.py``, aiohttp on uvloop in its own process) answers
in ~1 ms but stalls for ``--stall`` seconds (1.0) every ``--period`` seconds
(5.0): a request arriving in a stall is held until it ends.

1. **Open loop**: infermeter at ``--rate`` (200/s) constant arrivals for
   ``--seconds`` (20; a whole number of periods, so the run holds exactly
   seconds/period stalls whatever their phase). Corrected latency runs from
   the *intended* send time, uncorrected (service time) from the actual send;
   both are reported (nearest-rank p50/p90/p99/p99.9/max), with the schedule
   lag between them, and the number of requests delayed by a stall (latency
   over ``DELAYED_S``).
2. **Expected**, from the stall geometry: a request arriving u seconds into a
   stall waits S - u more, so with a stall of S every T seconds the share of
   requests waiting more than x is (S - x)/T for 0 <= x < S. The q-quantile of
   the wait is S - T(1 - q) where that is positive (else 0); the expected
   latency is that plus the measured baseline (median of the requests no
   stall touched). With S = 1, T = 5: p99 = 0.95 s + baseline, p99.9 = 0.995 s,
   20% of requests delayed.
3. **Open loop with a connection cap** (``--connections``, 4, as wrk2 runs
   with a fixed set of connections): during a stall the requests queue for a
   free connection and leave only when it ends. Corrected latency counts that
   wait; uncorrected (from the actual send) hides it, as a tool without the
   correction would report.
4. **Closed loop** at ``--concurrency`` (4) users on the same server, as
   Locust or ab measure: during a stall each user waits on one request and
   sends nothing, so only ~concurrency requests per stall see it, among
   thousands of fast ones: its p99 hides the stall. Expected share delayed:
   about 1 / ((T - S)/baseline + 1) per user.

Without a cap, infermeter sends on schedule whatever the server does (a new
connection for each request in flight), so the actual send is the intended
one and the uncorrected figure shows the stall too. With a cap (3.) the two
part. The closed loop is what an uncorrected measurement that *waits* for
the server looks like.

Writes benchmarks/results/load_correctness.json.
Run: python benchmarks/load_correctness.py [--rate 200] [--seconds 20] [--stall 1] [--period 5] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402
from _loopback import stop_group, wait_http  # noqa: E402

from infermeter.load.config import LoadConfig  # noqa: E402
from infermeter.load.generator import run_load  # noqa: E402
from infermeter.load.protocols import OK  # noqa: E402
from infermeter.stats import percentile  # noqa: E402

PCTS = (50, 90, 99, 99.9, 100)
DELAYED_S = 0.020  # well above the ~1 ms service time, well below the stall
SERVER = Path(__file__).resolve().parent / "_stall_server.py"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pcts(x: np.ndarray) -> dict[str, float]:
    return {("max" if p == 100 else f"p{p:g}") + "_ms": float(percentile(x, p)) * 1e3 for p in PCTS} if x.size else {}


def expected_wait(q: float, stall_s: float, period_s: float) -> float:
    """The q-quantile (0..1) of the extra wait, from P(wait > x) = (S - x)/T for 0 <= x < S."""
    return max(0.0, stall_s - period_s * (1.0 - q))


def _latencies(o: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = o.records
    ok = r["error_kind"] == OK
    return (r["done_s"][ok] - r["intended_s"][ok], r["done_s"][ok] - r["sent_s"][ok],
            r["sent_s"] - r["wait_s"] - r["intended_s"])


def open_loop(url: str, args: argparse.Namespace, connections: int | None = None) -> dict[str, Any]:
    log(f"open loop: {args.rate:g}/s constant for {args.seconds:g} s"
        + (f", at most {connections} connections" if connections else ""))
    o = run_load(LoadConfig(url=url, protocol="http-json", rate=args.rate, arrival="constant",
                            duration_s=args.seconds, warmup_s=1.0, timeout_s=10.0, connections=connections))
    corrected, service, lag = _latencies(o)
    S, T = args.stall, args.period
    base = corrected[corrected < DELAYED_S]
    baseline = float(np.median(base)) if base.size else math.nan
    expected = {("max" if p == 100 else f"p{p:g}") + "_ms": (expected_wait(p / 100, S, T) + baseline) * 1e3 for p in PCTS}
    expected["max_ms"] = (S + baseline) * 1e3
    measured = _pcts(corrected)
    n = int(corrected.size)
    delayed = int((corrected > DELAYED_S).sum())
    return {
        "rate": args.rate, "seconds": args.seconds, "requests": o.requests, "errors": o.requests - o.succeeded,
        "achieved_rate": o.achieved_rate,
        "corrected": measured, "uncorrected": _pcts(service), "schedule_lag": _pcts(lag),
        "expected_corrected": expected, "baseline_ms": baseline * 1e3,
        "p99_measured_over_expected": measured["p99_ms"] / expected["p99_ms"] if n else None,
        "delayed": {"threshold_ms": DELAYED_S * 1e3, "measured": delayed, "share": delayed / n if n else None,
                    "expected": round(n * max(0.0, S - DELAYED_S) / T), "expected_share": max(0.0, S - DELAYED_S) / T},
        "stalls_in_run": args.seconds / T, "connections": connections,
        "connection_wait": _pcts(o.records["wait_s"]) if connections else None,
        "warnings": [w[:200] for w in o.warnings],
    }


def closed_loop(url: str, args: argparse.Namespace) -> dict[str, Any]:
    log(f"closed loop: {args.concurrency} users for {args.seconds:g} s")
    o = run_load(LoadConfig(url=url, protocol="http-json", concurrency=args.concurrency, duration_s=args.seconds,
                            warmup_s=0.5, timeout_s=10.0))
    _, service, _ = _latencies(o)  # closed loop: intended == sent
    n = int(service.size)
    delayed = int((service > DELAYED_S).sum())
    base = service[service < DELAYED_S]
    baseline = float(np.median(base)) if base.size else math.nan
    S, T = args.stall, args.period
    per_user = (T - S) / baseline + 1 if baseline > 0 else math.nan
    return {
        "concurrency": args.concurrency, "seconds": args.seconds, "requests": o.requests,
        "errors": o.requests - o.succeeded, "achieved_rate": o.achieved_rate,
        "latency": _pcts(service), "baseline_ms": baseline * 1e3,
        "delayed": {"threshold_ms": DELAYED_S * 1e3, "measured": delayed, "share": delayed / n if n else None,
                    "expected": round(args.concurrency * args.seconds / T), "expected_share": 1 / per_user},
        "warnings": [w[:200] for w in o.warnings],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="per run; best a whole number of --period")
    ap.add_argument("--stall", type=float, default=1.0)
    ap.add_argument("--period", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--connections", type=int, default=4, help="the capped open-loop run's connections (as wrk2 -c)")
    ap.add_argument("--quick", action="store_true", help="10 s runs (two stalls)")
    args = ap.parse_args()
    if args.quick:
        args.seconds = 2 * args.period
    if not 0 < args.stall < args.period:
        ap.error("--stall must be above 0 and below --period")
    k = args.seconds / args.period
    if abs(k - round(k)) > 1e-9:
        log(f"note: --seconds {args.seconds:g} is not a whole number of periods: the expected figures are approximate")

    proc = subprocess.Popen([sys.executable, str(SERVER), str(args.stall), str(args.period)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, proc, timeout_s=args.period + 5)
        op = open_loop(url, args)
        capped = open_loop(url, args, args.connections)
        cl = closed_loop(url, args)
    finally:
        stop_group(proc)

    c, u, e = op["corrected"], op["uncorrected"], op["expected_corrected"]
    log("                           p50      p90      p99    p99.9      max  (ms)")
    cc, cu = capped["corrected"], capped["uncorrected"]
    rows = (("expected", e), ("corrected", c), ("uncorrected", u), (f"corrected, {args.connections} conn", cc),
            (f"uncorrected, {args.connections} conn", cu), ("closed loop", cl["latency"]))
    for name, d in rows:
        log(f"  {name:<22}" + "".join(f"{d[k]:>9.1f}" for k in ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms")))
    log(f"  delayed > {DELAYED_S * 1e3:g} ms: open {op['delayed']['measured']} (expected {op['delayed']['expected']}), "
        f"closed {cl['delayed']['measured']} (expected ~{cl['delayed']['expected']})")
    p99_ok = abs(c["p99_ms"] - e["p99_ms"]) <= max(0.05 * e["p99_ms"], 20.0)
    payload: dict[str, Any] = {
        "cores": os.cpu_count(), "quick": args.quick,
        "server": {"service_s": 0.001, "stall_s": args.stall, "period_s": args.period,
                   "kind": "requests arriving in a stall are held until it ends (aiohttp on uvloop, own process)"},
        "open_loop": op, "open_loop_capped_connections": capped, "closed_loop": cl,
        "verdict": {
            "corrected_p99_matches_expected (within 5% or 20 ms)": p99_ok,
            "corrected_p99_reflects_stall": c["p99_ms"] > 0.5 * args.stall * 1e3,
            "closed_loop_p99_hides_stall": cl["latency"]["p99_ms"] < DELAYED_S * 1e3,
            "capped_corrected_p99_reflects_stall": cc["p99_ms"] > 0.5 * args.stall * 1e3,
            "capped_uncorrected_p99_hides_stall": cu["p99_ms"] < DELAYED_S * 1e3,
            "closed_loop_p99_over_open_loop_p99": cl["latency"]["p99_ms"] / c["p99_ms"] if c["p99_ms"] else None,
        },
        "notes": [
            "percentiles are nearest rank over the successful requests; expected = geometric wait quantile + the "
            "measured baseline (median latency of requests no stall touched)",
            "open loop: infermeter sends on schedule whatever the server does, so uncorrected (from the actual send) "
            "matches corrected (from the intended send) up to the schedule lag; a closed loop is what a measurement "
            "that waits for the server reports",
            "open loop with --connections N (as wrk2 with N connections): during a stall the requests queue for a "
            "connection and leave late; corrected latency (from the intended send) counts that wait, uncorrected "
            "(from the actual send) hides it: coordinated omission, and its correction, side by side",
        ],
    }
    write("load_correctness", payload)


if __name__ == "__main__":
    main()
