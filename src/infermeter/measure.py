"""``bench()`` (exported as ``infermeter.bench``): one path from a model to a stored :class:`Result` per batch size.

load (timed, peak RSS) → inputs → for each batch size: prepare batches →
scenario (single-stream, multi-stream, offline or server; ``scenarios/``) →
statistics, headline, verdict → Result → store. ``find_peak`` runs the server
scenario once per step of a bounded QPS search (``scenarios/peak.py``), each
step its own Result.

Each batch size's result is saved the moment it is finished, so a failure or a
Ctrl-C later in the invocation loses nothing that was measured. A model that
raises mid-run still gets its partial result saved (status "failed") before the
error is raised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, overload

import numpy as np

from .env import Env, capture_env
from .errors import ModelRunError, UsageError
from .inputs import InputSpec, load_data, parse_batch_sizes, parse_input
from .models import import_backend, load_model, require_inputs
from .models.base import LoadOptions, Runner
from .result import Memory, ModelInfo, Phases, Result, TimerInfo
from .scenarios import run as scenario
from .scenarios.outcome import ScenarioOutcome, failure_text
from .scenarios.peak import PeakConfig, find_peak as search_peak
from .scenarios.settings import ScenarioSettings, scenario_settings
from .stats import describe_latency, noise_warnings, throughput
from .store import Store, default_store_path, new_id
from .timing.loop import LoopConfig
from .timing.memory import PeakRSS

__all__ = ["bench", "BenchInterrupted", "Progress"]

# progress(event, payload): "point-start" {batch_size, index, total[, qps, step]}, "loop" {fraction, n, phase},
# "point-done" {result}; with find_peak, one point per search step.
Progress = Callable[[str, Mapping[str, Any]], None]


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``bench``: ``results`` holds every point finished (and saved) before it."""

    def __init__(self, results: list[Result]) -> None:
        super().__init__("interrupted")
        self.results = results


@dataclass
class _Plan:
    spec_text: str
    user_inputs: list[InputSpec]
    dims: dict[str, int]
    batch_sizes: list[int]
    options: LoadOptions
    loop: LoopConfig
    seed: int
    data_path: str | None
    tags: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    scenario: ScenarioSettings = field(default_factory=ScenarioSettings)
    max_time_s: float = 30.0
    keep_gc: bool = False


@overload
def bench(model: Any, *, find_peak: Literal[True], **kwargs: Any) -> list[Result]: ...
@overload
def bench(model: Any, *, batch_size: int = ..., **kwargs: Any) -> Result: ...
@overload
def bench(model: Any, *, batch_sizes: Sequence[int] | str, **kwargs: Any) -> list[Result]: ...


def bench(
    model: Any,
    *,
    inputs: Sequence[str | InputSpec] | None = None,
    batch_size: int | None = None,
    batch_sizes: Sequence[int] | str | None = None,
    dims: Mapping[str, int] | None = None,
    data: str | Path | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    threads: int | None = None,
    providers: Sequence[str] = (),
    precision: float = 0.01,
    max_time_s: float = 30.0,
    min_time_s: float = 0.0,
    min_iters: int | None = None,
    max_iters: int | None = None,
    keep_gc: bool = False,
    seed: int = 0,
    tags: Mapping[str, str] | None = None,
    store: Store | str | Path | bool | None = True,
    progress: Progress | None = None,
    scenario: str = "single-stream",
    samples_per_query: int | None = None,
    offline_samples: int | None = None,
    qps: float | None = None,
    max_batch: int | None = None,
    max_wait_ms: float | None = None,
    latency_bound_ms: float | None = None,
    target_percentile: float | None = None,
    min_duration_s: float | None = None,
    min_queries: int | None = None,
    find_peak: bool = False,
    peak_steps: int | None = None,
    peak_time_s: float | None = None,
) -> Result | list[Result]:
    """Measure ``model`` (a spec string, an ``nn.Module``, a callable or a Runner).

    ``batch_size=8`` returns one :class:`Result`; ``batch_sizes=[1, 8]`` returns a
    list, one per batch size, in that order; ``find_peak=True`` returns a list, one
    Result per search step (the last step's ``scenario_details["peak_search"]``
    holds the peak). ``store=True`` saves to the default store
    (``INFERMETER_STORE`` or the user data dir), a path or a :class:`Store` saves
    there, ``False``/``None`` keeps results in memory only.

    ``scenario`` (each Result carries a ``headline`` and a VALID/INVALID ``verdict``,
    see ``scenarios/verdict.py``):

    * ``"single-stream"`` — one query at a time; headline p90 latency.
    * ``"multi-stream"`` — queries of ``samples_per_query`` rows (default 8), one at
      a time; headline p99 query latency. The batch is set by ``samples_per_query``.
    * ``"offline"`` — ``offline_samples`` rows (default: enough for
      ``min_duration_s``) back to back in batches of ``batch_size``; headline
      throughput, per-batch latency in ``latency``.
    * ``"server"`` — Poisson arrivals at ``qps`` (seeded by ``seed``), dynamic
      batching up to ``max_batch`` queries waiting at most ``max_wait_ms``,
      latency from the scheduled arrival; judged against ``latency_bound_ms`` at
      ``target_percentile`` (default 99); ``find_peak`` searches the highest
      VALID QPS in at most ``peak_steps`` runs and ``peak_time_s`` seconds.

    ``min_duration_s`` (default 5 s for server and offline; for single- and
    multi-stream none beyond ``min_time_s``) and ``min_queries`` (default 100, 1
    for offline) feed the verdict; ``max_time_s`` bounds every run.
    """
    if batch_size is not None and batch_sizes is not None:
        raise UsageError("give batch_size or batch_sizes, not both")
    sizes = parse_batch_sizes(batch_sizes if batch_sizes is not None else (batch_size or 1))
    settings = scenario_settings(
        scenario, batch_sizes=sizes, samples_per_query=samples_per_query, offline_samples=offline_samples,
        qps=qps, max_batch=max_batch, max_wait_ms=max_wait_ms, latency_bound_ms=latency_bound_ms,
        target_percentile=target_percentile, min_duration_s=min_duration_s, min_queries=min_queries,
        find_peak=find_peak, peak_steps=peak_steps, peak_time_s=peak_time_s, max_time_s=max_time_s,
    )
    loop_kwargs: dict[str, Any] = dict(
        precision=precision, max_time_s=max_time_s, min_time_s=min_time_s, max_iters=max_iters, keep_gc=keep_gc
    )
    if min_iters is not None:
        loop_kwargs["min_iters"] = min_iters
    plan = _Plan(
        spec_text=model if isinstance(model, str) else _object_name(model),
        user_inputs=[s if isinstance(s, InputSpec) else parse_input(s) for s in (inputs or ())],
        dims=dict(dims or {}),
        batch_sizes=sizes,
        options=LoadOptions(device=device, dtype=dtype, threads=threads, providers=tuple(providers)),
        loop=LoopConfig(**loop_kwargs),
        seed=seed,
        data_path=str(data) if data is not None else None,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        scenario=settings,
        max_time_s=max_time_s,
        keep_gc=keep_gc,
    )
    plan.config = {
        "batch_sizes": sizes,
        "inputs": [s.text() for s in plan.user_inputs],
        "dims": plan.dims,
        "data": plan.data_path,
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "providers": list(providers),
        "precision": precision,
        "max_time_s": max_time_s,
        "min_time_s": min_time_s,
        "min_iters": plan.loop.min_iters,
        "max_iters": max_iters,
        "keep_gc": keep_gc,
        "seed": seed,
        **settings.to_config(),
        "requested": {
            k: v for k, v in dict(
                samples_per_query=samples_per_query, offline_samples=offline_samples, qps=qps, max_batch=max_batch,
                max_wait_ms=max_wait_ms, latency_bound_ms=latency_bound_ms, target_percentile=target_percentile,
                min_duration_s=min_duration_s, min_queries=min_queries, peak_steps=peak_steps, peak_time_s=peak_time_s,
            ).items() if v is not None
        },
    }
    owned, st = _open_store(store)
    try:
        results = _run(model, plan, st, progress)
    finally:
        if owned and st is not None:
            st.close()
    return results[0] if batch_sizes is None and not settings.find_peak else results


def _object_name(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{mod}:{name}"


def _open_store(store: Store | str | Path | bool | None) -> tuple[bool, Store | None]:
    if store is None or store is False:
        return False, None
    if isinstance(store, Store):
        return False, store
    path = default_store_path() if store is True else Path(store)
    return True, Store(path)


@dataclass
class _Ctx:
    """What every point of one invocation shares."""

    runner: Runner
    specs: list[InputSpec]
    dims: dict[str, int]
    data: Mapping[str, np.ndarray] | None
    plan: _Plan
    env: Env
    info: ModelInfo
    invocation: str
    store: Store | None
    progress: Progress | None
    phases: dict[str, Any]
    results: list[Result] = field(default_factory=list)


def _run(model: Any, plan: _Plan, store: Store | None, progress: Progress | None) -> list[Result]:
    invocation = new_id()
    t0 = time.perf_counter_ns()
    import_s = (time.perf_counter_ns() - t0) / 1e9 if import_backend(model) else None
    rss = PeakRSS()
    rss.start()
    t0 = time.perf_counter_ns()
    runner = load_model(model, plan.options)
    load_s = (time.perf_counter_ns() - t0) / 1e9
    load_peak = rss.stop()
    try:
        specs = require_inputs(runner, plan.user_inputs)
        ctx = _Ctx(
            runner=runner, specs=list(specs), dims={**dict(getattr(runner, "default_dims", {}) or {}), **plan.dims},
            data=load_data(plan.data_path, specs) if plan.data_path else None, plan=plan,
            env=capture_env(probe_gpu=plan.options.device.startswith("cuda")), info=_model_info(runner, specs),
            invocation=invocation, store=store, progress=progress,
            phases={"import_s": import_s, "load_s": load_s, "load_peak": load_peak},
        )
        try:
            for index, bs in enumerate(plan.batch_sizes):
                if plan.scenario.find_peak:
                    _peak(ctx, bs, index == 0)
                    continue
                if progress:
                    progress("point-start", {"batch_size": bs, "index": index, "total": len(plan.batch_sizes)})
                result, outcome = _run_point(ctx, bs, index == 0)
                _finish_point(ctx, bs, result, outcome)
        except BenchInterrupted:
            raise
        except KeyboardInterrupt:
            # Ctrl-C outside a timed loop (preparing inputs, saving): still say what was kept.
            raise BenchInterrupted(ctx.results) from None
        return ctx.results
    finally:
        if runner is not model:  # a Runner passed in belongs to the caller
            runner.close()


def _finish_point(ctx: _Ctx, bs: int, result: Result, outcome: ScenarioOutcome) -> None:
    """Save the point at once, report it, and raise if it ended the invocation."""
    result.phases.import_s = ctx.phases["import_s"]
    result.phases.load_s = ctx.phases["load_s"]
    result.memory.load_peak_rss_bytes = ctx.phases["load_peak"]
    if ctx.store is not None:
        ctx.store.save(result)
    ctx.results.append(result)
    if ctx.progress:
        ctx.progress("point-done", {"result": result})
    if outcome.interrupted:
        raise BenchInterrupted(ctx.results)
    if outcome.error is not None:
        err = outcome.error
        where = f" (kept as run {result.id})" if ctx.store is not None else ""
        raise ModelRunError(f"batch {bs}: {err}{where}", phase=err.phase, iteration=err.iteration)


def _peak(ctx: _Ctx, bs: int, first_point: bool) -> None:
    """``find_peak``: one server run per search step, each finished like a point."""
    s = ctx.plan.scenario
    prepared, notes = scenario.prepare(ctx.runner, ctx.specs, bs, ctx.dims, ctx.data, ctx.plan.seed, s)
    start = s.qps if s.qps is not None else 0.5 * scenario.estimate_capacity(ctx.runner, prepared, s.max_batch)
    state: dict[str, Any] = {"steps": 0, "outcome": None}

    def run_at(q: float) -> Result:
        if ctx.progress:
            ctx.progress("point-start", {"batch_size": bs, "index": state["steps"], "total": s.peak_steps, "qps": q})
        # later steps are warm by design (one search, one model): no "warmed up by others" warning
        first = first_point or state["steps"] > 0
        result, state["outcome"] = _run_point(ctx, bs, first, prepared=(prepared, notes), qps=q)
        state["steps"] += 1
        return result

    def on_step(result: Result) -> None:
        _finish_point(ctx, bs, result, state["outcome"])

    search_peak(run_at, start, PeakConfig(max_steps=s.peak_steps, max_time_s=s.peak_time_s), on_step=on_step)


def _model_info(runner: Runner, specs: Sequence[InputSpec]) -> ModelInfo:
    d = dict(runner.describe())
    known = {k: d.pop(k, None) for k in ("spec", "backend", "device", "dtype", "params", "file_size_bytes")}
    d = {**dict(d.pop("details", None) or {}), **d}
    return ModelInfo(
        spec=str(known["spec"] or runner.spec),
        backend=str(known["backend"] or runner.backend),
        device=str(known["device"] or runner.device),
        dtype=known["dtype"],
        params=known["params"],
        file_size_bytes=known["file_size_bytes"],
        inputs=[s.text() for s in specs],
        details=d,
    )


def _run_point(
    ctx: _Ctx, bs: int, first_point: bool, *, prepared: tuple[Any, list[str]] | None = None, qps: float | None = None
) -> tuple[Result, ScenarioOutcome]:
    plan, runner, s = ctx.plan, ctx.runner, ctx.plan.scenario
    if prepared is None:
        batches, notes = scenario.prepare(runner, ctx.specs, bs, ctx.dims, ctx.data, plan.seed, s)
    else:
        batches, notes = prepared
    devmem = runner.device_memory()
    if devmem is not None:
        devmem.reset_peak()
    rss = PeakRSS()
    rss.start()
    loop_progress = None
    if ctx.progress is not None:
        report = ctx.progress

        def loop_progress(fraction: float, n: int, phase: str) -> None:
            report("loop", {"fraction": fraction, "n": n, "phase": phase, "batch_size": bs})

    outcome = scenario.run(
        runner, batches, s, plan.loop, bs, max_time_s=plan.max_time_s, seed=plan.seed, keep_gc=plan.keep_gc,
        progress=loop_progress, qps=qps,
    )
    inference_peak = rss.stop()
    del batches

    warnings = list(notes)
    if outcome.block_size > 1:
        warnings.append(
            f"timed in blocks of {outcome.block_size} calls: one call is shorter than "
            f"{plan.loop.block_threshold:g}x the timer overhead ({_ns(outcome.timer_overhead_s)}); "
            "percentiles are of block means"
        )
    if not first_point and outcome.first_call_s is not None:
        warnings.append("first inference of this batch size ran after other batch sizes warmed the model up")
    rows = scenario.rows_per_call(s, bs)
    samples = outcome.samples_s
    latency = tput = None
    if samples.size:
        latency = describe_latency(samples, per=outcome.per, block_size=outcome.block_size)
        tput = outcome.throughput or throughput(latency, rows)
        if s.scenario != "server":  # open-loop latencies are meant to vary with the queue
            warnings.extend(noise_warnings(samples))
    warnings.extend(outcome.warnings)
    warnings.extend(ctx.env.noise)
    error = failure_text(outcome)
    config = plan.config if qps is None else {**plan.config, "qps": qps}
    result = Result(
        id=new_id(),
        invocation=ctx.invocation,
        status="failed" if error else "ok",
        error=error,
        model=ctx.info.model_copy(deep=True),
        batch_size=rows,
        scenario=s.scenario,
        config=config,
        env=ctx.env,
        phases=Phases(
            first_inference_s=outcome.first_call_s,
            warmup_iters=outcome.warmup_iters,
            warmup_samples=[float(x) for x in outcome.warmup_samples_s],
            warmup_s=outcome.warmup_s,
            measure_s=outcome.measure_s,
        ),
        latency=latency,
        throughput=tput,
        memory=Memory(
            inference_peak_rss_bytes=inference_peak,
            rss_accounting=rss.accounting,
            device_peak_bytes=devmem.peak_bytes() if devmem is not None else None,
            device_accounting=devmem.accounting if devmem is not None else None,
        ),
        timer=TimerInfo(
            clock=outcome.clock,
            overhead_s=outcome.timer_overhead_s,
            block_size=outcome.block_size,
            gc_disabled=outcome.gc_disabled,
            gc_collections=outcome.gc_collections,
            device_host_ratio=outcome.device_host_ratio,
        ),
        stop_reason=outcome.stop_reason,
        warnings=warnings,
        tags=dict(plan.tags),
        headline=outcome.headline,
        verdict=outcome.verdict,
        scenario_details=outcome.details,
    )
    return result, outcome


def _ns(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds * 1e9:.0f} ns"

