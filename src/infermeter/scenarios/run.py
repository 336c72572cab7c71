"""One entry point per step of ``bench()``: prepare the batches a scenario needs,
then run it. ``bench()`` turns the :class:`ScenarioOutcome` into a Result."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..inputs import InputSpec, make_batches
from ..models.base import Runner
from ..timing.clocks import HostClock
from ..timing.loop import LoopConfig
from .multi_stream import min_queries_for_estimate, run_multi_stream
from .offline import OfflineConfig, run_offline
from .outcome import ScenarioOutcome
from .server import ServerConfig, run_server, warm_up
from .settings import ScenarioSettings
from .single_stream import closed_loop_outcome, run_single_stream
from .verdict import Rules

__all__ = ["prepare", "run", "loop_config", "estimate_capacity"]

LoopProgress = Callable[[float, int, str], None]


def rows_per_call(settings: ScenarioSettings, batch_size: int) -> int:
    """Rows in one query: samples-per-query for multi-stream, the batch size otherwise."""
    return settings.samples_per_query if settings.scenario == "multi-stream" else batch_size


def prepare(
    runner: Runner,
    specs: Sequence[InputSpec],
    batch_size: int,
    dims: Mapping[str, int],
    data: Mapping[str, np.ndarray] | None,
    seed: int,
    settings: ScenarioSettings,
) -> tuple[Any, list[str]]:
    """Prepared batches, made before any timing: a pool to cycle through (closed
    loop, offline), or for the server one batch per realisable size
    (``k * batch_size`` rows, k = 1..max_batch), so the worker never allocates."""
    if settings.scenario == "server":
        by_size: dict[int, Any] = {}
        notes: list[str] = []
        for k in range(1, settings.max_batch + 1):
            batches, n = make_batches(specs, k * batch_size, dims, seed=seed, data=data, pool=1)
            by_size[k] = runner.prepare(batches[0])
            notes.extend(x for x in n if x not in notes)
        return by_size, notes
    batches, notes = make_batches(specs, rows_per_call(settings, batch_size), dims, seed=seed, data=data)
    return [runner.prepare(b) for b in batches], list(notes)


def loop_config(settings: ScenarioSettings, base: LoopConfig) -> LoopConfig:
    """The timing loop's config for a closed-loop scenario: an explicit min duration is
    also the minimum measuring time (capped by max_time_s); multi-stream asks for the
    queries its p99 early-stopping estimate needs (capped by max_iters)."""
    cfg = base
    if settings.min_duration_s > cfg.min_time_s:
        cfg = dataclasses.replace(cfg, min_time_s=min(settings.min_duration_s, cfg.max_time_s))
    if settings.scenario == "multi-stream":
        need = min_queries_for_estimate(settings.target_percentile)
        if cfg.max_iters is not None:
            need = min(need, cfg.max_iters)
        if need > cfg.min_iters:
            cfg = dataclasses.replace(cfg, min_iters=need)
    return cfg


def estimate_capacity(runner: Runner, prepared_by_size: Mapping[int, Any], max_batch: int) -> float:
    """Queries per second the model sustains back to back at its best batch size, from a
    short warm-up (``server.warm_up``): where ``--find-peak`` starts (at half of it)."""
    sync = runner.sync if runner.needs_sync() else None

    def call_batch(k: int) -> object:
        runner(prepared_by_size[k])
        if sync is not None:
            sync()
        return None

    _, _, per_size = warm_up(call_batch, max_batch, 0.2, HostClock())
    return max(k / t for k, t in per_size.items() if t > 0)


def run(
    runner: Runner,
    prepared: Any,
    settings: ScenarioSettings,
    base_loop: LoopConfig,
    batch_size: int,
    *,
    max_time_s: float,
    seed: int,
    keep_gc: bool,
    progress: LoopProgress | None = None,
    qps: float | None = None,
) -> ScenarioOutcome:
    """Run ``settings.scenario`` once (the server at ``qps``, default ``settings.qps``)."""
    s = settings
    if s.scenario in ("single-stream", "multi-stream"):
        cfg = loop_config(s, base_loop)
        fn = run_single_stream if s.scenario == "single-stream" else run_multi_stream
        loop = fn(runner, prepared, cfg, progress=progress)
        rules = Rules(s.scenario, s.min_duration_s, s.min_queries, s.target_percentile)
        out = closed_loop_outcome(loop, rules, cfg)
        if s.scenario == "multi-stream":
            out.details["samples_per_query"] = s.samples_per_query
        return out
    if s.scenario == "offline":
        ocfg = OfflineConfig(
            batch_size=batch_size, samples=s.offline_samples, min_duration_s=s.min_duration_s,
            min_queries=s.min_queries, max_time_s=max_time_s, keep_gc=keep_gc,
        )
        return run_offline(runner, prepared, ocfg, progress=progress)
    rate = qps if qps is not None else s.qps
    assert rate is not None, "server needs a qps"
    scfg = ServerConfig(
        qps=rate, batch_size=batch_size, max_batch=s.max_batch, max_wait_s=s.max_wait_s,
        latency_bound_s=s.latency_bound_s, target_percentile=s.target_percentile,
        min_duration_s=s.min_duration_s, min_queries=s.min_queries, max_time_s=max_time_s,
        seed=seed, keep_gc=keep_gc,
    )
    return run_server(runner, prepared, scfg, progress=progress)
