"""Offline: every sample is available at once; the model gets them back to back
in batches of ``batch_size``. Headline: throughput, samples over the wall time of
the whole run (MLPerf's offline metric); the latency of each batch is kept in
``Result.latency``.

Order: the first (cold) call, timed alone; a short warm-up (``warmup_s``) whose
median batch time sizes the run; then the measured run, ``samples`` rows (rounded
up to whole batches) or, without it, enough batches for ``margin`` x
``min_duration_s`` (LoadGen sizes its offline query from the expected QPS the
same way, with the same 1.1 margin). ``max_time_s`` cuts a run that turns out
longer. Each batch is timed by ``clocks.HostClock.measure`` with the runner's
sync inside, so per-batch latencies add up to the wall time but for the
harness's few hundred nanoseconds per batch.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ModelRunError, UsageError
from ..models.base import Runner
from ..result import Headline
from ..stats import brief_summary, offline_throughput
from ..timing.clocks import CallFailed, HostClock, measure_timer_overhead
from .outcome import ScenarioOutcome, failure_text
from .verdict import DEFAULT_MIN_DURATION_S, DEFAULT_MIN_QUERIES, Rules, judge

__all__ = ["NAME", "OfflineConfig", "run_offline"]

NAME = "offline"
_CHUNK_S = 0.1  # progress and max-time checks between chunks of about this long


@dataclass(frozen=True)
class OfflineConfig:
    batch_size: int
    samples: int | None = None
    min_duration_s: float = DEFAULT_MIN_DURATION_S
    min_queries: int = DEFAULT_MIN_QUERIES["offline"]
    max_time_s: float = 30.0
    warmup_s: float = 0.5
    margin: float = 1.1
    keep_gc: bool = False

    def __post_init__(self) -> None:
        if self.samples is not None and (isinstance(self.samples, bool) or int(self.samples) < 1):
            raise UsageError(f"--offline-samples must be a whole number >= 1, got {self.samples!r}")
        if not self.max_time_s > 0:
            raise UsageError(f"--max-time must be above 0 seconds, got {self.max_time_s!r}")


def run_offline(
    runner: Runner,
    prepared: Sequence[Any],
    cfg: OfflineConfig,
    progress: Callable[[float, int, str], None] | None = None,
    clock: HostClock | None = None,
) -> ScenarioOutcome:
    if not prepared:
        raise ValueError("run_offline needs at least one prepared batch")
    clock = clock or HostClock()
    pool, n_pool, bs = list(prepared), len(prepared), cfg.batch_size

    def call(i: int) -> object:
        return runner(pool[i % n_pool])

    sync = runner.sync if runner.needs_sync() else None
    now, to_s = clock.now_ns, clock.to_seconds
    first: list[int] = []
    warm: list[int] = []
    out: list[int] = []
    idx = 0
    res: dict[str, Any] = {"stop": "planned", "error": None, "interrupted": False, "wall_ns": 0, "warm_ns": 0}
    planned, sized_from, est = 0, "offline_samples" if cfg.samples else "min_duration", 0.0
    overhead: float | None = None
    gc_was = gc.isenabled()
    gc_before = gc.get_stats()
    phase = "first-inference"
    try:
        clock.measure(call, sync, 0, 1, 1, first)
        idx = 1
        overhead = measure_timer_overhead(clock, sync, max_s=0.05)
        if not cfg.keep_gc:
            gc.collect()
            gc.disable()
        phase = "warm-up"
        est = to_s(first[0])
        budget = min(cfg.warmup_s, 0.1 * cfg.max_time_s)
        t0 = now()
        while to_s(now() - t0) < budget:
            c = max(1, min(1000, math.ceil(min(_CHUNK_S, budget) / max(est, 1e-9))))
            a = len(warm)
            clock.measure(call, sync, idx, c, 1, warm)
            idx += c
            est = to_s(float(np.median(warm[a:])))
        res["warm_ns"] = now() - t0
        est = max(est, 1e-9)
        if cfg.samples:
            planned = math.ceil(cfg.samples / bs)
        else:
            planned = max(1, cfg.min_queries, math.ceil(cfg.margin * cfg.min_duration_s / est))
        phase = "measure"
        t_start = now()
        while len(out) < planned:
            c = min(planned - len(out), max(1, math.ceil(_CHUNK_S / est)))
            clock.measure(call, sync, idx, c, 1, out)
            idx += c
            el = to_s(now() - t_start)
            if progress is not None:
                progress(max(len(out) / planned, el / cfg.max_time_s), len(out), "measure")
            if el >= cfg.max_time_s and len(out) < planned:
                res["stop"] = "max-time"
                break
        res["wall_ns"] = now() - t_start
    except CallFailed as f:
        exc = f.original
        res["stop"] = "error"
        res["error"] = ModelRunError(
            f"the model raised {type(exc).__name__}: {exc} during {phase} at batch {f.index}; "
            "fix the model or its inputs and run again", phase=phase, iteration=f.index)
    except KeyboardInterrupt:
        res["stop"], res["interrupted"] = "interrupted", True
    finally:
        if gc_was:
            gc.enable()
    gc_runs = sum(s["collections"] for s in gc.get_stats()) - sum(s["collections"] for s in gc_before)

    samples = np.asarray(out, dtype=np.float64) * 1e-9
    wall = res["wall_ns"] * 1e-9 if res["wall_ns"] else float(np.sum(samples))
    o = ScenarioOutcome(
        samples_s=samples, first_call_s=to_s(first[0]) if first else None, warmup_iters=len(warm),
        warmup_samples_s=np.asarray(warm, dtype=np.float64) * 1e-9, warmup_s=res["warm_ns"] * 1e-9,
        measure_s=wall, stop_reason=res["stop"], timer_overhead_s=overhead, gc_collections=gc_runs,
        gc_disabled=not cfg.keep_gc, clock=clock.name, error=res["error"], interrupted=res["interrupted"],
    )
    total = int(samples.size) * bs
    if samples.size and wall > 0:
        o.throughput = offline_throughput(total, wall, samples)
        t = o.throughput.samples_per_s
        o.headline = Headline(metric="throughput", value=t.value, unit="samples/s", ci_low=t.ci_low, ci_high=t.ci_high)
    if cfg.samples:
        hint = "raise --offline-samples, or leave it unset to size the run from --min-duration"
    else:
        hint = "raise --max-time"
    rules = Rules(NAME, cfg.min_duration_s, cfg.min_queries, None)
    o.verdict = judge(rules, duration_s=wall, queries=int(samples.size), latencies_s=samples,
                      longer_hint=hint, failure=failure_text(o))
    o.details = {
        "samples": total, "batches": int(samples.size), "batch_size": bs, "wall_s": wall,
        "planned_batches": planned, "sized_from": sized_from, "requested_samples": cfg.samples,
        "expected_batch_s": est, "margin": cfg.margin, "min_duration_s": cfg.min_duration_s,
        "min_queries": cfg.min_queries, "per_batch_s": brief_summary(samples) if samples.size else None,
    }
    if cfg.samples and total != cfg.samples and res["stop"] == "planned":
        o.warnings.append(f"--offline-samples {cfg.samples} rounded up to {total} (whole batches of {bs})")
    if res["stop"] == "max-time":
        o.warnings.append(f"stopped by --max-time {cfg.max_time_s:g} s after {samples.size} of {planned} batches")
    return o
