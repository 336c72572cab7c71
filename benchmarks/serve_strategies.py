"""Serving strategies on ``zoo:bert-mini``: no batching, dynamic batching, batching + a response cache.

``infermeter serve`` runs as a subprocess (a fresh one for every measurement,
so no cache, queue or JIT state carries over) and ``infermeter load``'s Python
API drives it open-loop with Poisson arrivals, latency from the intended send
time. Three configurations:

* ``no-batching``: ``--max-batch 1``;
* ``batching``: ``--max-batch 8 --max-wait-ms 4`` (the default; see ``--max-wait-ms``);
* ``batching+cache``: the same plus ``--cache N``, N above the number of
  distinct bodies sent, driven so that half the requests repeat an earlier
  request's body exactly (``--repeat 0.5``): the cache's hit ratio.

Steps:

1. **SLO**: a low-rate run (``--probe-rate``) against the no-batching server
   gives the unloaded p50; the SLO is ``p99 < K x p50`` (``--slo-factor``,
   default 5), rounded up to a whole millisecond. It is recorded with how it
   was chosen.
2. **Max rate under the SLO**: ``load.search.find_max`` per strategy. The
   server is restarted before every step (from the search's ``step``
   progress event), so a step never finds the previous step's answers in the
   cache (the search also gives each step its own seed, hence new bodies).
3. **p99 at a common rate**: ``--common-fraction`` (default 0.7) of the lowest
   max rate of the three, so all three hold it; one run per strategy, p99 with
   its CI (nearest rank, ``stats``).

Each run also reads the server's ``/v2/models/bert-mini/stats``: realised
batch sizes, cache hit ratio, mean queue and compute time per request (the
server counts the warm-up requests too).

Requests: OIP JSON bodies (``input_ids``/``attention_mask``, int64[1,128],
the zoo's input specs) that ask for the pooled output only (``output_1``,
256 floats). Asked for every output, the server would encode the [1,128,256]
sequence output as JSON: ~15 ms of its event loop per request (and ~6 ms of
the generator's to parse), more than the model's own ~10 ms, so every
strategy would measure JSON encoding instead of the model. The load is what
``infermeter load URL --model bert-mini --input ... --output output_1
[--repeat 0.5]`` sends.

Threads: the server runs the model with ``--threads 1`` (one intra-op
thread, one worker), so on a 2-core machine the model has one core and the
server's event loop and this process's generator share the other. With two
intra-op threads the model fights the event loop and the generator for the
same cores and the tail measures that fight.

Writes benchmarks/results/serve_strategies.json.
Run: python benchmarks/serve_strategies.py [--step-duration 8] [--max-steps 10] [--duration 30]
Smoke: python benchmarks/serve_strategies.py --step-duration 3 --max-steps 4 --duration 4 --probe-duration 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write  # noqa: E402

MODEL = "zoo:bert-mini"
NAME = "bert-mini"
SEQ = 128
SPECS = (f"input_ids:int64[B,{SEQ}]@0:30522", f"attention_mask:int64[B,{SEQ}]@1:2")
OUTPUT = "output_1"  # the pooled [1, 256] output
READY_TIMEOUT_S = 180.0
MAX_WAIT_WHY = ("about a third of the batch-1 compute time (~10-13 ms): an unloaded request pays at most that much more, "
                "well inside the SLO; under load requests queue while the worker is busy, so batches fill without waiting")


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m infermeter serve`` in a subprocess on a fixed free port; always stopped on exit."""

    def __init__(self, model: str = MODEL, *, threads: int = 1, max_batch: int = 1, max_wait_ms: float = 0.0,
                 cache: int = 0, extra: tuple[str, ...] = ()) -> None:
        self.model = model
        self.args = ["--threads", str(threads), "--max-batch", str(max_batch), "--max-wait-ms", f"{max_wait_ms:g}",
                     "--cache", str(cache), *extra]
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.TemporaryFile()
        self.starts = 0

    @property
    def infer_url(self) -> str:
        return f"{self.base}/v2/models/{NAME}/infer"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "infermeter", "serve", self.model, "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"infermeter serve exited with {self.proc.returncode}: {self._tail()}")
            try:
                with urllib.request.urlopen(self.base + "/v2/health/ready", timeout=1.0) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"infermeter serve was not ready within {READY_TIMEOUT_S:g} s: {self._tail()}")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/v2/models/{NAME}/stats", timeout=10.0) as r:
            return json.loads(r.read())

    def _tail(self) -> str:
        self.log.seek(0)
        lines = [ln for ln in self.log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return " | ".join(lines[-3:])[-600:]

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.close()


def stats_summary(st: dict[str, Any]) -> dict[str, Any]:
    """What a strategy's row needs from the server's /stats (seconds)."""
    b, c = st["batches"], st.get("cache") or {}
    hits, misses = c.get("hits", 0), c.get("misses", 0)
    lat, q, comp = st["latency_s"]["mean"], st["queue_time_s"]["mean"], st["compute_time_s"]["mean"]
    return {
        "requests": st["requests"]["total"], "by_status": st["requests"]["by_status"],
        "batches": b["count"], "mean_batch": b["mean_rows"], "batch_histogram": b["size_histogram"],
        "batch_compute_mean_s": b["compute_time_s"]["mean"],
        "cache_hits": hits, "cache_misses": misses,
        "cache_hit_ratio": hits / (hits + misses) if hits + misses else None,
        "server_latency_mean_s": lat, "queue_mean_s": q, "compute_mean_s": comp,
        "definition": "means per request inside the server; queue: arrival at the batcher to dispatch, compute: its "
                      "batch's model call (misses only); latency: the whole request in the server (hits too); "
                      "warm-up requests included",
    }


# ---------------------------------------------------------------- the requests


def distinct_bodies(n: int, repeat: float, seed: int) -> int:
    """How many distinct bodies ``n`` requests at ``repeat`` send (what ``infermeter load --repeat`` does)."""
    from infermeter.load.protocols import repeat_order

    return int(repeat_order(n, repeat, seed).max()) + 1


def load_config(server: Server, repeat: float, rate: float, duration_s: float, warmup_s: float, seed: int) -> Any:
    from infermeter.load.config import LoadConfig

    return LoadConfig(url=server.base, protocol="oip", model=NAME, inputs=list(SPECS), outputs=[OUTPUT], repeat=repeat,
                      rate=rate, duration_s=duration_s, warmup_s=warmup_s, seed=seed, arrival="poisson")


def run_at(server: Server, cfg: Any, keep_latencies: bool = False) -> dict[str, Any]:
    """One open-loop run on a fresh server: corrected latency (with CIs), rates, warnings, the server's stats
    (and every successful request's latency, s, with ``keep_latencies``)."""
    from infermeter.load.generator import run_load
    from infermeter.load.summary import to_result

    server.restart()
    o = run_load(cfg)
    r = to_result(o)
    st = stats_summary(server.stats())
    lat = r.latency
    row: dict[str, Any] = {
        "offered_rate": o.offered_rate, "scheduled_rate": o.scheduled_rate, "achieved_rate": o.achieved_rate,
        "requests": o.requests, "succeeded": o.succeeded, "errors": dict(o.errors), "warnings": list(o.warnings),
        "schedule_lag_s": (r.scenario_details or {}).get("schedule_lag"), "server": st,
    }
    if lat is not None:
        for p in ("p50", "p90", "p99"):
            e = getattr(lat, p)
            row[f"{p}_s"] = {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high}
        row["mean_s"] = lat.mean.value
        row["n"] = lat.count
        if keep_latencies:
            row["latencies_s"] = list(lat.samples)
    return row


def ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1e3:.3g} ms"


# ---------------------------------------------------------------- the benchmark


STRATEGIES = ("no-batching", "batching", "batching+cache")


def server_for(strategy: str, args: argparse.Namespace, cache_entries: int) -> Server:
    if strategy == "no-batching":
        return Server(threads=args.threads, max_batch=1)
    if strategy == "batching":
        return Server(threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)
    return Server(threads=args.threads, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, cache=cache_entries)


def search(strategy: str, args: argparse.Namespace, slo: str, start_rate: float, repeats: dict[str, float],
           cache_entries: int, say: Callable[[str], None]) -> dict[str, Any]:
    from infermeter.load.search import find_max, max_passing_rate

    steps_stats: list[dict[str, Any]] = []
    with server_for(strategy, args, cache_entries) as server:
        cfg = load_config(server, repeats[strategy], start_rate, args.step_duration, args.warmup, args.seed)

        def progress(phase: str, info: dict[str, Any]) -> None:
            if phase == "step":
                server.restart()  # a fresh cache, queue and model for every step
                say(f"  {strategy} step {info['step']}: {info['rate']:.4g}/s ({info['phase']})")
            elif phase == "step-done":
                steps_stats.append(stats_summary(server.stats()))
                why = "; ".join(info["reasons"]) or "pass"
                say(f"    p99 {ms(info.get('p99'))}, achieved {info['achieved']:.4g}/s: {why}")

        steps = find_max(cfg, slo, start_rate=start_rate, max_steps=args.max_steps,
                         step_duration_s=args.step_duration, progress=progress)
    rows = []
    for o, st in zip(steps, steps_stats):
        s = dict(o.search or {})
        rows.append({k: s.get(k) for k in ("step", "phase", "trial", "rerun", "offered", "scheduled", "achieved", "p50",
                                           "p99", "error_rate", "requests", "passed", "reasons", "generator_late",
                                           "stability")}
                    | {"server": st, "warnings": list(o.warnings)})
    return {"max_rate": max_passing_rate(steps), "steps": rows, "server_starts": server.starts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="the server's intra-op threads (default 1: see the docstring)")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=4.0, help="batching wait; default: " + MAX_WAIT_WHY)
    ap.add_argument("--repeat", type=float, default=0.5, help="share of requests repeating an earlier body (cache)")
    ap.add_argument("--slo-factor", type=float, default=5.0, help="SLO: p99 < this x the unloaded no-batching p50")
    ap.add_argument("--slo", default=None, help="fix the SLO instead (e.g. 'p99<60ms')")
    ap.add_argument("--probe-rate", type=float, default=5.0, help="requests/s of the unloaded run that sets the SLO")
    ap.add_argument("--probe-duration", type=float, default=10.0)
    ap.add_argument("--start-rate", type=float, default=10.0)
    ap.add_argument("--step-duration", type=float, default=8.0, help="seconds per find_max step")
    ap.add_argument("--max-steps", type=int, default=10)
    ap.add_argument("--common-fraction", type=float, default=0.7, help="common rate: this x the lowest max rate")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of the common-rate run per strategy")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each run (not measured)")
    ap.add_argument("--max-rate", type=float, default=600.0, help="highest rate any step may send (sizes the bodies)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        ap.error(f"unknown strategies {unknown}; use {', '.join(STRATEGIES)}")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    t_start = time.monotonic()
    if True:  # one block: the runs below share these settings
        # the cache holds every distinct body the longest run can send
        longest = max(args.step_duration, args.duration, args.probe_duration) + args.warmup
        n_max = int(math.ceil(args.max_rate * longest * 1.2)) + 100
        cache_entries = distinct_bodies(n_max, args.repeat, args.seed) + 64
        repeats = {"no-batching": 0.0, "batching": 0.0, "batching+cache": args.repeat}

        # 1. the SLO, from the unloaded no-batching p50
        with server_for("no-batching", args, 0) as server:
            probe = run_at(server, load_config(server, 0.0, args.probe_rate, args.probe_duration, args.warmup,
                                               args.seed))
        p50_low = probe["p50_s"]["value"]
        if args.slo:
            slo, how = args.slo, "given with --slo"
        else:
            slo = f"p99<{math.ceil(args.slo_factor * p50_low * 1e3):g}ms"
            how = (f"{args.slo_factor:g} x the no-batching p50 ({ms(p50_low)}) at {args.probe_rate:g} req/s "
                   f"(unloaded), rounded up to a whole ms")
        say(f"unloaded p50 {ms(p50_low)}, p99 {ms(probe['p99_s']['value'])}: SLO {slo} ({how})")

        # 2. the highest rate under the SLO, per strategy
        found: dict[str, dict[str, Any]] = {}
        for s in strategies:
            say(f"find_max {s} under {slo}")
            found[s] = search(s, args, slo, args.start_rate, repeats, cache_entries, say)
            say(f"  {s}: max rate {found[s]['max_rate']}")

        # 3. p99 at one rate all of them hold
        rates = [f["max_rate"] for f in found.values() if f["max_rate"]]
        common_rate = args.common_fraction * min(rates) if rates else args.probe_rate
        common: dict[str, dict[str, Any]] = {}
        for s in strategies:
            say(f"{s} at the common rate {common_rate:.4g}/s for {args.duration:g} s")
            with server_for(s, args, cache_entries) as server:
                common[s] = run_at(server, load_config(server, repeats[s], common_rate, args.duration, args.warmup,
                                                       args.seed))

    table = []
    for s in strategies:
        c = common[s]
        p99 = c.get("p99_s") or {}
        table.append({
            "strategy": s, "max_rate_under_slo": found[s]["max_rate"],
            "p99_at_common_rate_s": p99.get("value"), "p99_ci_s": [p99.get("ci_low"), p99.get("ci_high")],
            "p50_at_common_rate_s": (c.get("p50_s") or {}).get("value"),
            "achieved_rate": c["achieved_rate"], "requests": c["requests"],
            "mean_batch": c["server"]["mean_batch"], "cache_hit_ratio": c["server"]["cache_hit_ratio"],
            "queue_mean_s": c["server"]["queue_mean_s"], "compute_mean_s": c["server"]["compute_mean_s"],
        })
    head = (f"{'strategy':<16} {'max rate':>10} {'p99 @ common [95% CI]':>30} {'mean batch':>10} {'hit ratio':>9} "
            f"{'queue':>9} {'compute':>9}")
    lines = [f"SLO {slo}; common rate {common_rate:.4g} req/s", head]
    for t in table:
        ci = t["p99_ci_s"]
        rate = "—" if t["max_rate_under_slo"] is None else f"{t['max_rate_under_slo']:.4g}/s"
        hit = "—" if t["cache_hit_ratio"] is None else f"{t['cache_hit_ratio']:.0%}"
        p99 = f"{ms(t['p99_at_common_rate_s'])} [{ms(ci[0])}, {ms(ci[1])}]"
        mb = "—" if t["mean_batch"] is None else f"{t['mean_batch']:.2f}"
        lines.append(f"{t['strategy']:<16} {rate:>10} {p99:>30} {mb:>10} {hit:>9} "
                     f"{ms(t['queue_mean_s']):>9} {ms(t['compute_mean_s']):>9}")
    print("\n".join(lines), file=sys.stderr)

    write("serve_strategies", {
        "model": MODEL, "cores": os.cpu_count(), "elapsed_s": time.monotonic() - t_start,
        "settings": {
            "server_threads": args.threads, "workers": 1, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
            "cache_entries": cache_entries, "repeat": args.repeat, "seed": args.seed, "warmup_s": args.warmup,
            "step_duration_s": args.step_duration, "max_steps": args.max_steps, "duration_s": args.duration,
            "arrivals": "poisson (open loop, latency from the intended send time)",
            "request": f"OIP JSON, {', '.join(SPECS)}, asking for {OUTPUT} (pooled [1,256]) only",
            "threads_why": "the model gets one core, the server's event loop and the generator share the other",
            "max_wait_why": MAX_WAIT_WHY if args.max_wait_ms == ap.get_default("max_wait_ms") else "given on the command line",
            "fresh_server": "every run and every find_max step starts a new server process (empty cache and queue)",
        },
        "slo": {"slo": slo, "how": how, "unloaded_run": probe},
        "common_rate": {"rate": common_rate, "how": f"{args.common_fraction:g} x the lowest max rate under the SLO"},
        "table": table,
        "table_text": lines,
        "find_max": found,
        "common_rate_runs": common,
    })


if __name__ == "__main__":
    main()
