"""Server: open-loop arrivals at ``qps``, an in-process queue, dynamic batching.

Arrivals are a Poisson process: exponential gaps with mean ``1/qps`` from a
generator seeded by ``seed`` (the same seed gives the same schedule). Each query
is ``batch_size`` rows (1 by default). ``timing/schedule.py`` issues them at
their scheduled times and a worker thread serves them in batches of up to
``max_batch`` queries, waiting at most ``max_wait_s`` after the first query of a
batch for more; the worker runs the runner on one prepared batch of the
realised size (one per size, prepared up front, so nothing is allocated on the
hot path) and syncs.

Latency runs from the *scheduled* arrival to completion: queueing behind a slow
model counts, however late the issuer was, so nothing is hidden by coordinated
omission. The headline is the ``target_percentile`` latency with its CI; the
achieved QPS (LoadGen's completed samples per second) goes with it.

When to stop (checked every ``check_interval_s`` on the completed queries):
never before ``min_duration_s`` of schedule and ``min_queries`` issued; then as
soon as early stopping passes (with a bound: n >= h(t) + t; without: enough
queries for an estimate), or the target-percentile latency is already over the
bound (the run is INVALID however long it goes on); at the latest after
``max_time_s`` of schedule or ``max_queries``. Issued queries are then drained
(at most ``drain_s``). Before the run, every batch size is called once and the
model warmed up for ``warmup_s``; that also estimates the capacity, which
``--find-peak`` starts from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ModelRunError, UsageError
from ..models.base import Runner
from ..result import Estimate, Throughput
from ..stats import brief_summary, completed_per_second, early_stopping_min_passing, nearest_rank
from ..timing.clocks import CallFailed, HostClock
from ..timing.schedule import OpenLoopProgress, run_open_loop
from .outcome import ScenarioOutcome, failure_text, latency_headline
from .verdict import DEFAULT_MIN_DURATION_S, DEFAULT_MIN_QUERIES, DEFAULT_PERCENTILE, Rules, judge

__all__ = ["NAME", "ServerConfig", "arrival_offsets", "run_server", "warm_up"]

NAME = "server"
_LAG_WARN_S = 1e-3


@dataclass(frozen=True)
class ServerConfig:
    qps: float
    batch_size: int = 1
    max_batch: int = 1
    max_wait_s: float = 0.0
    latency_bound_s: float | None = None
    target_percentile: float = DEFAULT_PERCENTILE["server"]
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    min_queries: int = DEFAULT_MIN_QUERIES["server"]
    max_time_s: float = 30.0
    max_queries: int = 1_000_000
    seed: int = 0
    keep_gc: bool = False
    warmup_s: float = 0.3
    drain_s: float | None = None
    check_interval_s: float = 0.05
    keep_records: int = 200_000

    def __post_init__(self) -> None:
        q = self.qps
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q) or q <= 0:
            raise UsageError(f"--qps must be a number above 0 (queries per second), got {q!r}")
        if int(self.max_batch) < 1:
            raise UsageError(f"--max-batch must be >= 1, got {self.max_batch!r}")
        if not 0 <= self.max_wait_s < math.inf:
            raise UsageError(f"--max-wait-ms must be >= 0, got {self.max_wait_s * 1e3!r}")
        if self.latency_bound_s is not None and not 0 < self.latency_bound_s < math.inf:
            raise UsageError(f"--latency-bound-ms must be above 0, got {self.latency_bound_s * 1e3!r}")
        if not 0 < self.target_percentile < 100:
            raise UsageError(f"--target-percentile must be between 0 and 100 (e.g. 99), got {self.target_percentile!r}")
        if not self.max_time_s > 0 or self.min_duration_s < 0 or int(self.min_queries) < 0:
            raise UsageError("--max-time must be above 0, --min-duration and --min-queries at least 0")


def arrival_offsets(qps: float, duration_s: float, seed: int, max_queries: int) -> list[int]:
    """Poisson arrivals in [0, duration_s): cumulative exponential gaps (mean 1/qps), ns.
    The generator is seeded by ``(seed, 1)`` so arrivals do not share a stream with the inputs."""
    rng = np.random.default_rng([int(seed), 1])
    mean_n = qps * duration_s
    n = min(int(max_queries), int(mean_n + 8 * math.sqrt(mean_n) + 16))
    t = np.cumsum(rng.exponential(1e9 / qps, n))
    return t[t < duration_s * 1e9].astype(np.int64).tolist()


def warm_up(
    call_batch: Callable[[int], object], max_batch: int, warmup_s: float, clock: HostClock
) -> tuple[float, list[int], dict[int, float]]:
    """Call every batch size once (size 1 first: the cold call), then alternate 1 and
    ``max_batch`` for ``warmup_s``. Returns the first call (s), the warm-up samples (ns)
    and the median time per batch size of the warm calls (s)."""
    first: list[int] = []
    clock.measure(call_batch, None, 1, 1, 1, first)
    warm: list[int] = []
    by_size: dict[int, list[int]] = {}
    for k in range(2, max_batch + 1):
        clock.measure(call_batch, None, k, 1, 1, warm)
    sizes = sorted({1, max_batch})
    t0 = clock.now_ns()
    while True:
        for k in sizes:
            a = len(warm)
            clock.measure(call_batch, None, k, 1, 1, warm)
            by_size.setdefault(k, []).append(warm[a])
        if clock.to_seconds(clock.now_ns() - t0) >= warmup_s:
            break
    return clock.to_seconds(first[0]), warm, {k: float(np.median(v)) * 1e-9 for k, v in by_size.items()}


def run_server(
    runner: Runner,
    prepared_by_size: Mapping[int, Any],
    cfg: ServerConfig,
    progress: Callable[[float, int, str], None] | None = None,
) -> ScenarioOutcome:
    """Run the server scenario; ``prepared_by_size[k]`` is a batch of ``k * batch_size`` rows."""
    mb = int(cfg.max_batch)
    pb = [None] + [prepared_by_size[k] for k in range(1, mb + 1)]
    sync = runner.sync if runner.needs_sync() else None
    if sync is None:
        def call_batch(k: int) -> object:
            return runner(pb[k])
    else:
        def call_batch(k: int) -> object:
            runner(pb[k])
            sync()
            return None

    clock = HostClock()
    try:
        first_s, warm_ns, per_size = warm_up(call_batch, mb, cfg.warmup_s, clock)
    except CallFailed as f:
        err = ModelRunError(f"the model raised {type(f.original).__name__}: {f.original} during warm-up "
                            f"(batch of {f.index} queries); fix the model or its inputs and run again",
                            phase="warm-up", iteration=0)
        o = ScenarioOutcome(samples_s=np.zeros(0), stop_reason="error", error=err)
        o.verdict = judge(_rules(cfg), duration_s=0.0, queries=0, latencies_s=[], failure=str(err))
        return o
    capacity = max(k / t for k, t in per_size.items() if t > 0) if per_size else None

    offsets = arrival_offsets(cfg.qps, cfg.max_time_s, cfg.seed, cfg.max_queries)
    pct, bound = cfg.target_percentile, cfg.latency_bound_s
    bound_ns = int(bound * 1e9) if bound is not None else None
    need_estimate = early_stopping_min_passing(1, pct) + 1
    why = {"stop": "max-time" if len(offsets) < cfg.max_queries else "max-queries"}

    def should_stop(p: OpenLoopProgress) -> bool:
        if p.elapsed_s < cfg.min_duration_s or p.issued < cfg.min_queries or p.done < 1:
            return False
        n, t = p.done, p.over_bound
        if bound is None:
            stop = n >= need_estimate
        elif t > n - nearest_rank(n, pct):
            why["stop"] = "bound-exceeded"
            return True
        else:
            stop = n >= early_stopping_min_passing(t, pct) + t
        if stop:
            why["stop"] = "early-stopping"
        return stop

    def on_check(p: OpenLoopProgress) -> None:
        if progress is not None:
            progress(min(1.0, p.elapsed_s / max(cfg.min_duration_s, 1e-9)), p.done, "measure")

    drain = cfg.drain_s if cfg.drain_s is not None else max(2.0, min(10.0, cfg.max_time_s))
    rec = run_open_loop(
        offsets, call_batch, max_batch=mb, max_wait_ns=int(cfg.max_wait_s * 1e9), bound_ns=bound_ns,
        should_stop=should_stop, on_check=on_check, check_interval_s=cfg.check_interval_s, drain_s=drain,
        keep_gc=cfg.keep_gc,
    )
    return _outcome(cfg, rec, offsets, first_s, warm_ns, per_size, capacity, why["stop"])


def _rules(cfg: ServerConfig) -> Rules:
    return Rules(NAME, cfg.min_duration_s, int(cfg.min_queries), cfg.target_percentile, cfg.latency_bound_s)


def _outcome(
    cfg: ServerConfig, rec: Any, offsets: list[int], first_s: float, warm_ns: list[int],
    per_size: dict[int, float], capacity: float | None, why: str,
) -> ScenarioOutcome:
    n = rec.issued
    t0 = rec.t0_ns
    sched = np.asarray(rec.scheduled[:n], dtype=np.int64) - t0
    issued = np.asarray(rec.issued_at[:n], dtype=np.int64) - t0
    started = np.asarray(rec.started[:n], dtype=np.int64) - t0
    done_abs = np.asarray(rec.done[:n], dtype=np.int64)
    ok = done_abs > 0
    done = np.where(ok, done_abs - t0, 0)
    batch = np.asarray(rec.batch[:n], dtype=np.int64)
    lat = (done[ok] - sched[ok]) * 1e-9
    dropped = int(n - ok.sum())

    stop = {"rule": why}.get(rec.stop_reason, rec.stop_reason)
    if stop == "schedule-end":
        stop = why
    o = ScenarioOutcome(
        samples_s=lat, first_call_s=first_s, warmup_iters=len(warm_ns),
        warmup_samples_s=np.asarray(warm_ns, dtype=np.float64) * 1e-9,
        warmup_s=float(np.sum(warm_ns)) * 1e-9,
        measure_s=(rec.end_ns - t0) * 1e-9, stop_reason=stop, gc_collections=rec.gc_collections,
        gc_disabled=not cfg.keep_gc, clock="host", interrupted=rec.interrupted,
    )
    if rec.error is not None:
        exc = rec.error
        o.error = ModelRunError(
            f"the model raised {type(exc).__name__}: {exc} serving query {rec.error_query}; "
            "fix the model or its inputs and run again", phase="measure", iteration=rec.error_query)
    duration = float(sched[-1]) * 1e-9 if n else 0.0
    achieved = completed_per_second(done[ok] * 1e-9) if ok.sum() >= 2 else 0.0
    if lat.size:
        o.headline = latency_headline(lat, cfg.target_percentile)
        o.throughput = Throughput(
            samples_per_s=Estimate(value=achieved * cfg.batch_size),
            method="completed queries per second x rows per query; LoadGen's (completed - 1) / last completion",
        )
    extra = [f"{dropped} issued queries never completed (dropped when the run stopped)"] if dropped and not o.error else []
    o.verdict = judge(
        _rules(cfg), duration_s=duration, queries=n, latencies_s=lat, qps=cfg.qps,
        longer_hint="raise --max-time", failure=failure_text(o), extra_reasons=extra,
        extra_recommendations=["lower --qps"] if dropped and not o.error else (),
    )
    sizes, counts = np.unique(batch[ok], return_counts=True)
    hist = {int(k): int(c) // int(k) for k, c in zip(sizes, counts)}
    lag = (issued - sched) * 1e-9
    d: dict[str, Any] = {
        "offered_qps": cfg.qps,
        "scheduled_qps": (n - 1) / duration if n > 1 and duration > 0 else None,
        "achieved_qps": achieved,
        "issued": n, "completed": int(ok.sum()), "dropped": dropped,
        "duration_s": duration,
        "latency_bound_s": cfg.latency_bound_s, "target_percentile": cfg.target_percentile,
        "min_duration_s": cfg.min_duration_s, "min_queries": int(cfg.min_queries),
        "max_batch": int(cfg.max_batch), "max_wait_s": cfg.max_wait_s, "rows_per_query": cfg.batch_size,
        "seed": cfg.seed, "arrivals": "Poisson (exponential gaps), numpy default_rng([seed, 1])",
        "schedule_lag_s": brief_summary(lag) if n else None,
        "queue_s": brief_summary((started[ok] - issued[ok]) * 1e-9) if ok.any() else None,
        "compute_s": brief_summary((done[ok] - started[ok]) * 1e-9) if ok.any() else None,
        "batch_histogram": hist,
        "mean_batch": float(batch[ok].mean()) if ok.any() else None,
        "warm_batch_s": {str(k): v for k, v in per_size.items()},
        "capacity_estimate_qps": capacity,
        "spin_ns": rec.spin_ns, "switch_interval_s": rec.switch_interval_s,
        "latency_from": "scheduled arrival",
    }
    keep = min(n, int(cfg.keep_records))
    d["queries"] = {
        "unit": "ns from the run's start", "kept": keep, "of": n,
        "scheduled": sched[:keep].tolist(), "issued": issued[:keep].tolist(), "started": started[:keep].tolist(),
        "done": done[:keep].tolist(), "batch": batch[:keep].tolist(),
    }
    o.details = d
    o.warnings.extend(rec.notes)
    if n and d["schedule_lag_s"]["p99"] > _LAG_WARN_S:
        o.warnings.append(
            f"the issuer was late: p99 schedule lag {d['schedule_lag_s']['p99'] * 1e3:.3g} ms; latencies count it "
            "(they run from the scheduled time) but the offered load was burstier than Poisson; "
            "close other programs or pin cores"
        )
    if keep < n:
        o.warnings.append(f"per-query records kept for the first {keep} of {n} queries")
    return o
