"""Load generator capacity: the open-loop rate infermeter holds per process, beside Locust (and wrk).

Target: nginx (Debian's package) started here with a temporary config: one
worker process, access log off, every path answering ``{"ok":true}``
(application/json) on a free 127.0.0.1 port, keep-alive unlimited. In one run:

1. **infermeter, 1 and 2 processes** (``run_load``, http-json, GET, constant
   arrivals, 1 s warm-up): a search over offered rates (doubling from
   ``--start-rate`` per process, then bisection to within ``--tolerance``)
   for the highest rate where a step of ``--seconds`` *passes*: p99 schedule
   lag (actual send - intended send) under 1 ms, achieved rate at least 99% of
   the offered one, no error. Each step records offered/achieved rate,
   p50/p99/max schedule lag, the generator's CPU (``busy`` leaves out idle
   pacing spin) and nginx's CPU (if that nears a core, nginx is the limit, not
   the generator). The best rate is re-run ``--confirm`` times. Side figures:
   the 1-process best rate with Poisson arrivals, and infermeter closed loop
   (``--users`` connections) for its raw request throughput.
2. **Locust FastHttpUser**, headless, ``--users`` users spawned at once, no
   wait time, 1 and 2 processes (``--processes``), ``--locust-seconds`` each,
   stats reset once spawned; total requests/s read from ``--csv`` output.
   Locust is a closed loop: its figure is the most it can send at all, with
   no schedule to keep, so the comparison favours Locust.
3. **wrk** (if installed), 1 thread, ``--users`` connections: the C ceiling.

Verdict: infermeter's rate per process / Locust's rate per process, goal >= 2x.
On a 2-core machine nginx shares the cores with the generator (and with the
second generator process): the 2-process figures show that contention.

Writes benchmarks/results/load_generator.json.
Run: python benchmarks/load_generator.py [--seconds 5] [--quick] [--locust PATH]
Needs: apt-get install -y nginx-light (wrk optional);
       python3 -m venv /work/locust-venv && /work/locust-venv/bin/pip install locust
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402
from _loopback import cpu_s, find_nginx, nginx, steady_cpu, stop_group, tree_cpu, worker_pids  # noqa: E402

from infermeter.load.config import LoadConfig  # noqa: E402
from infermeter.load.generator import run_load  # noqa: E402
from infermeter.stats import percentile  # noqa: E402

LAG_P99_MAX_S = 1e-3
ACHIEVED_MIN = 0.99
DEFAULT_LOCUST = "/work/locust-venv/bin/locust"
LOCUSTFILE = """\
from locust import FastHttpUser, constant, task


class Loopback(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("/")
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- infermeter


def _lag(o: Any, p: float) -> float:
    if o.records is not None:
        r = o.records
        lag = r["sent_s"] - r["intended_s"]
        lag = lag[np.isfinite(lag)]
        return float(percentile(lag, p)) if lag.size else math.nan
    h = o.lag_histogram
    return h.get_value_at_percentile(p) * 1e-6 if h.get_total_count() else math.nan


def infermeter_step(url: str, rate: float, processes: int, seconds: float, server: list[int], *,
                    arrival: str = "constant", seed: int = 0) -> dict[str, Any]:
    cfg = LoadConfig(url=url, protocol="http-json", rate=float(rate), arrival=arrival, duration_s=seconds,
                     warmup_s=1.0, processes=processes, timeout_s=5.0, seed=seed)
    s0, w0 = cpu_s(server), time.perf_counter()
    o = run_load(cfg)
    wall = time.perf_counter() - w0
    busy_s = o.duration_s + cfg.warmup_s  # nginx served the warm-up too
    server_cpu = (cpu_s(server) - s0) / busy_s if busy_s > 0 else math.nan
    realised = o.scheduled_rate or float(rate)
    lag = {f"p{p:g}_ms": _lag(o, p) * 1e3 for p in (50, 99, 99.9, 100)}
    reasons = []
    if not lag["p99_ms"] < LAG_P99_MAX_S * 1e3:
        reasons.append(f"p99 lag {lag['p99_ms']:.3g} ms >= {LAG_P99_MAX_S * 1e3:g} ms")
    if o.achieved_rate < ACHIEVED_MIN * realised:
        reasons.append(f"achieved {o.achieved_rate:.0f}/s < {ACHIEVED_MIN:.0%} of {realised:.0f}/s")
    if o.requests - o.succeeded:
        reasons.append(f"{o.requests - o.succeeded} errors {dict(o.errors)}")
    return {
        "offered_rate": float(rate), "per_process_rate": float(rate) / processes, "arrival": arrival,
        "scheduled_rate": o.scheduled_rate, "achieved_rate": o.achieved_rate,
        "achieved_share": o.achieved_rate / realised if realised else None,
        "requests": o.requests, "errors": o.requests - o.succeeded,
        "schedule_lag": lag,
        "service_p50_ms": (o.latency_percentile(50, corrected=False) or math.nan) * 1e3,
        "service_p99_ms": (o.latency_percentile(99, corrected=False) or math.nan) * 1e3,
        "corrected_p99_ms": (o.latency_percentile(99) or math.nan) * 1e3,
        "generator_cpu": [{"process": c["process"], "busy": c["busy"], "cpu_share": c["cpu_share"]}
                          for c in o.generator_cpu],
        "server_cpu_share": server_cpu, "step_wall_s": wall,
        "passed": not reasons, "reasons": reasons,
        "warnings": [w[:160] for w in o.warnings],
    }


def _show(tag: str, s: dict[str, Any]) -> None:
    busy = "/".join(f"{c['busy']:.0%}" for c in s["generator_cpu"])
    log(f"  {tag} {s['offered_rate']:>8.0f}/s achieved {s['achieved_rate']:>8.0f}/s lag p50/p99/max "
        f"{s['schedule_lag']['p50_ms']:.3f}/{s['schedule_lag']['p99_ms']:.3f}/{s['schedule_lag']['p100_ms']:.2f} ms "
        f"gen busy {busy} nginx {s['server_cpu_share']:.0%} -> {'pass' if s['passed'] else 'FAIL ' + '; '.join(s['reasons'])}")


def search(url: str, processes: int, args: argparse.Namespace, server: list[int]) -> dict[str, Any]:
    """Doubling from start-rate x processes until a step fails, then bisection between the best pass and the
    lowest fail (halving down when the first step fails)."""
    steps: list[dict[str, Any]] = []
    lo: float | None = None
    hi: float | None = None
    rate = float(args.start_rate * processes)
    log(f"infermeter, {processes} process(es): search")
    while len(steps) < args.max_steps:
        s = infermeter_step(url, rate, processes, args.seconds, server, seed=len(steps))
        s["step"], s["phase"] = len(steps), "double" if hi is None else "bisect"
        steps.append(s)
        _show(f"step {s['step']}", s)
        if s["passed"]:
            lo = rate if lo is None else max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
        if hi is None:
            rate *= 2
        elif lo is None:
            rate = hi / 2
            if rate < 50 * processes:
                break
        elif (hi - lo) / lo <= args.tolerance:
            break
        else:
            rate = round((lo + hi) / 2)
    confirm = []
    if lo is not None:
        for i in range(args.confirm):
            s = infermeter_step(url, lo, processes, args.seconds, server, seed=100 + i)
            confirm.append(s)
            _show("confirm", s)
    return {
        "processes": processes, "steps": steps, "confirm": confirm,
        "best_rate": lo, "best_rate_per_process": lo / processes if lo is not None else None,
        "lowest_failing_rate": hi,
        "confirm_passed": sum(c["passed"] for c in confirm), "confirm_runs": len(confirm),
    }


def closed_loop(url: str, users: int, seconds: float) -> dict[str, Any]:
    cfg = LoadConfig(url=url, protocol="http-json", concurrency=users, duration_s=seconds, warmup_s=0.5, timeout_s=5.0)
    o = run_load(cfg)
    return {"users": users, "processes": 1, "achieved_rate": o.achieved_rate, "requests": o.requests,
            "errors": o.requests - o.succeeded,
            "generator_cpu": [{"busy": c["busy"], "cpu_share": c["cpu_share"]} for c in o.generator_cpu],
            "service_p99_ms": (o.latency_percentile(99, corrected=False) or math.nan) * 1e3}


# ---------------------------------------------------------------- Locust and wrk


def _locust_history_rate(path: Path) -> float | None:
    """Steady-state requests/s from the history CSV: the slope of the total count between the first and the
    last time it changed (after any --reset-stats). Workers report to the master every few seconds, so
    the count moves in steps: each distinct count is taken at the time it first appeared."""
    if not path.exists():
        return None
    pts: list[tuple[float, float]] = []
    for r in csv.DictReader(path.open()):
        if r.get("Name") != "Aggregated":
            continue
        try:
            t, c = float(r["Timestamp"]), float(r["Total Request Count"])
        except (KeyError, ValueError):
            continue
        if pts and c < pts[-1][1]:  # --reset-stats
            pts = []
        if c > 0 and (not pts or c != pts[-1][1]):
            pts.append((t, c))
    if len(pts) < 3 or pts[-1][0] <= pts[0][0]:
        return None
    return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])


def run_locust(locust: str, url: str, processes: int, users: int, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="infermeter-locust-"))
    try:
        (tmp / "locustfile.py").write_text(LOCUSTFILE)
        cmd = [locust, "-f", str(tmp / "locustfile.py"), "--headless", "-u", str(users), "-r", str(users),
               "-t", f"{max(1, round(seconds))}s", "--host", url.rstrip("/"), "--csv", str(tmp / "run"), "--only-summary",
               "--reset-stats", "--stop-timeout", "2", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
        if processes > 1:
            cmd += ["--processes", str(processes)]
        log(f"locust, {processes} process(es), {users} users, {seconds:g} s")
        w0 = time.perf_counter()
        samples: list[tuple[float, dict[int, float]]] = []
        rc: int | None = None
        with open(tmp / "out.log", "wb") as out:
            proc = subprocess.Popen(cmd, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                while (rc := proc.poll()) is None and time.perf_counter() - w0 < seconds + 60:
                    samples.append((time.perf_counter(), tree_cpu(proc.pid)))
                    time.sleep(0.25)
            finally:
                stop_group(proc)
        # cores busy while the users ran: from ~2.5 s after the start (Locust's imports, spawning) to the end
        cores = steady_cpu(samples, w0 + 2.5, w0 + seconds + 0.5)
        text = (tmp / "out.log").read_text(errors="replace")
        agg = next((r for r in csv.DictReader((tmp / "run_stats.csv").open()) if r["Name"] == "Aggregated"), None) \
            if (tmp / "run_stats.csv").exists() else None
        if agg is None:
            return {"processes": processes, "error": f"no stats from locust (exit {rc}): {text[-800:]}"}
        rps = float(agg["Requests/s"])
        hist = _locust_history_rate(tmp / "run_stats_history.csv")
        res = {
            "processes": processes, "users": users, "seconds": seconds, "exit_code": rc,
            "requests": int(agg["Request Count"]), "failures": int(agg["Failure Count"]),
            "rate": rps, "rate_per_process": rps / processes, "history_rate": hist,
            "median_ms": float(agg["Median Response Time"]), "p99_ms": float(agg.get("99%") or math.nan),
            "cpu_cores_busy": cores,
            "cpu_warning": "CPU usage" in text,
            "log_tail": [ln for ln in text.splitlines() if "WARNING" in ln or "ERROR" in ln][-5:],
        }
        log(f"  locust {processes}p: {rps:.0f}/s ({rps / processes:.0f}/s per process; history {hist and round(hist)}/s), "
            f"failures {res['failures']}, cpu {cores and round(cores, 2)} cores{', CPU warning' if res['cpu_warning'] else ''}")
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_wrk(wrk: str, url: str, connections: int, seconds: float) -> dict[str, Any]:
    log(f"wrk, 1 thread, {connections} connections, {seconds:g} s")
    out = subprocess.run([wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url], capture_output=True,
                         text=True, timeout=seconds + 30, start_new_session=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    res = {"threads": 1, "connections": connections, "rate": float(m.group(1)) if m else None,
           "errors": " ".join(ln.strip() for ln in out.stdout.splitlines() if "Non-2xx" in ln or "Socket errors" in ln)}
    log(f"  wrk: {res['rate']}/s {res['errors']}")
    return res


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per search step (plus 1 s warm-up)")
    ap.add_argument("--start-rate", type=float, default=2000.0, help="first offered rate per process (requests/s)")
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--tolerance", type=float, default=0.05, help="stop bisecting when (fail - pass) / pass is this small")
    ap.add_argument("--confirm", type=int, default=1, help="re-runs of the best rate")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--users", type=int, default=64, help="Locust users, wrk connections, infermeter closed-loop users")
    ap.add_argument("--locust-seconds", type=float, default=10.0)
    ap.add_argument("--locust", default=DEFAULT_LOCUST)
    ap.add_argument("--no-wrk", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (1.5 s steps, few of them)")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.max_steps, args.tolerance, args.confirm, args.locust_seconds = 1.5, 5, 0.15, 0, 4.0
    ngx = find_nginx()
    if ngx is None:
        print("nginx not found on PATH or at /usr/sbin/nginx: install it with `apt-get install -y nginx-light`",
              file=sys.stderr)
        sys.exit(2)
    if not os.access(args.locust, os.X_OK):
        print(f"locust not found at {args.locust}: install it with `python3 -m venv /work/locust-venv && "
              "/work/locust-venv/bin/pip install locust`, or give --locust PATH", file=sys.stderr)
        sys.exit(2)
    wrk = None if args.no_wrk else shutil.which("wrk")
    version = subprocess.run([args.locust, "--version"], capture_output=True, text=True).stdout.strip()
    ngx_version = subprocess.run([ngx, "-v"], capture_output=True, text=True).stderr.strip()

    with nginx(ngx) as (url, proc):
        server = worker_pids(proc)
        log(f"{ngx_version} at {url} (workers {server})")
        inf = {str(p): search(url, p, args, server) for p in args.processes}
        side: dict[str, Any] = {}
        best1 = inf.get("1", {}).get("best_rate")
        if best1:
            log("infermeter, 1 process, Poisson arrivals at the constant-rate best")
            side["poisson_at_best_1p"] = infermeter_step(url, best1, 1, args.seconds, server, arrival="poisson")
            _show("poisson", side["poisson_at_best_1p"])
        log(f"infermeter closed loop, 1 process, {args.users} users")
        side["closed_loop_1p"] = closed_loop(url, args.users, args.seconds)
        log(f"  closed: {side['closed_loop_1p']['achieved_rate']:.0f}/s")
        loc = {str(p): run_locust(args.locust, url, p, args.users, args.locust_seconds) for p in args.processes}
        ref = run_wrk(wrk, url, args.users, args.locust_seconds) if wrk else "wrk is not installed"

    verdict: dict[str, Any] = {}
    for p in args.processes:
        a, b = inf[str(p)].get("best_rate_per_process"), loc[str(p)].get("rate_per_process")
        ratio = a / b if a and b else None
        verdict[f"{p}_process"] = {"infermeter_per_process": a, "locust_per_process": b, "ratio": ratio,
                                   "goal_2x_met": ratio is not None and ratio >= 2.0}
        log(f"verdict {p} process(es): infermeter {a}/s vs locust {b and round(b)}/s per process -> "
            f"{ratio and round(ratio, 2)}x (goal >= 2x)")
    payload: dict[str, Any] = {
        "cores": os.cpu_count(),
        "target": {"server": ngx_version, "worker_processes": 1, "body": '{"ok":true}', "method": "GET"},
        "criteria": {"lag_p99_max_ms": LAG_P99_MAX_S * 1e3, "achieved_min_share": ACHIEVED_MIN, "errors": 0,
                     "arrival": "constant", "step_seconds": args.seconds, "warmup_s": 1.0},
        "quick": args.quick, "locust_version": version,
        "infermeter": inf, "infermeter_side": side, "locust": loc, "wrk_1_thread": ref,
        "verdict": verdict,
        "notes": [
            "Locust and wrk are closed loops at full speed (no schedule to keep); infermeter's figure is an open-loop "
            "rate held with p99 schedule lag < 1 ms, a stricter test.",
            "nginx shares the machine's cores with the generators; server_cpu_share near 1.0 would mean nginx, not "
            "the generator, is the limit.",
        ],
    }
    write("load_generator", payload)


if __name__ == "__main__":
    main()
