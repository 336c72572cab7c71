"""``bench()``: one path from a model to a stored :class:`Result` per batch size.

load (timed, peak RSS) → inputs → for each batch size: prepare batches →
single-stream scenario (warm-up, adaptive stop) → statistics → Result → store.

Each batch size's result is saved the moment it is finished, so a failure or a
Ctrl-C later in the invocation loses nothing that was measured. A model that
raises mid-run still gets its partial result saved (status "failed") before the
error is raised.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, overload

import numpy as np

from .env import Env, capture_env
from .errors import ModelRunError, UsageError
from .inputs import InputSpec, load_data, make_batches, parse_batch_sizes, parse_input
from .models import import_backend, load_model, require_inputs
from .models.base import LoadOptions, Runner
from .result import Memory, ModelInfo, Phases, Result, TimerInfo
from .scenarios.single_stream import NAME as SINGLE_STREAM, run_single_stream
from .stats import describe_latency, noise_warnings, throughput
from .store import Store, default_store_path, new_id
from .timing.loop import LoopConfig, LoopOutcome
from .timing.memory import PeakRSS

__all__ = ["bench", "BenchInterrupted", "Progress"]

# progress(event, payload): "point-start" {batch_size, index, total}, "loop" {fraction, n, phase}, "point-done" {result}
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
) -> Result | list[Result]:
    """Measure ``model`` (a spec string, an ``nn.Module``, a callable or a Runner).

    ``batch_size=8`` returns one :class:`Result`; ``batch_sizes=[1, 8]`` returns a
    list, one per batch size, in that order. ``store=True`` saves to the default
    store (``INFERMETER_STORE`` or the user data dir), a path or a :class:`Store`
    saves there, ``False``/``None`` keeps results in memory only.
    """
    if batch_size is not None and batch_sizes is not None:
        raise UsageError("give batch_size or batch_sizes, not both")
    sizes = parse_batch_sizes(batch_sizes if batch_sizes is not None else (batch_size or 1))
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
    }
    owned, st = _open_store(store)
    try:
        results = _run(model, plan, st, progress)
    finally:
        if owned and st is not None:
            st.close()
    return results[0] if batch_sizes is None else results


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
        dims = {**dict(getattr(runner, "default_dims", {}) or {}), **plan.dims}
        data = load_data(plan.data_path, specs) if plan.data_path else None
        env = capture_env(probe_gpu=plan.options.device.startswith("cuda"))
        info = _model_info(runner, specs)
        results: list[Result] = []
        for index, bs in enumerate(plan.batch_sizes):
            if progress:
                progress("point-start", {"batch_size": bs, "index": index, "total": len(plan.batch_sizes)})
            result, outcome = _run_point(
                runner, specs, dims, data, bs, plan, env, info, invocation, index == 0, progress
            )
            result.phases.import_s = import_s
            result.phases.load_s = load_s
            result.memory.load_peak_rss_bytes = load_peak
            if store is not None:
                store.save(result)
            results.append(result)
            if progress:
                progress("point-done", {"result": result})
            if outcome.interrupted:
                raise BenchInterrupted(results)
            if outcome.error is not None:
                err = outcome.error
                where = f" (kept as run {result.id})" if store is not None else ""
                raise ModelRunError(f"batch {bs}: {err}{where}", phase=err.phase, iteration=err.iteration)
        return results
    finally:
        if runner is not model:  # a Runner passed in belongs to the caller
            runner.close()


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
    runner: Runner,
    specs: Sequence[InputSpec],
    dims: Mapping[str, int],
    data: Mapping[str, np.ndarray] | None,
    bs: int,
    plan: _Plan,
    env: Env,
    info: ModelInfo,
    invocation: str,
    first_point: bool,
    progress: Progress | None,
) -> tuple[Result, LoopOutcome]:
    batches, notes = make_batches(specs, bs, dims, seed=plan.seed, data=data)
    prepared = [runner.prepare(b) for b in batches]
    del batches
    devmem = runner.device_memory()
    if devmem is not None:
        devmem.reset_peak()
    rss = PeakRSS()
    rss.start()
    loop_progress = None
    if progress is not None:
        report = progress

        def loop_progress(fraction: float, n: int, phase: str) -> None:
            report("loop", {"fraction": fraction, "n": n, "phase": phase, "batch_size": bs})

    outcome = run_single_stream(runner, prepared, plan.loop, progress=loop_progress)
    inference_peak = rss.stop()
    del prepared

    warnings = list(notes)
    if outcome.block_size > 1:
        warnings.append(
            f"timed in blocks of {outcome.block_size} calls: one call is shorter than "
            f"{plan.loop.block_threshold:g}x the timer overhead ({_ns(outcome.timer_overhead_s)}); "
            "percentiles are of block means"
        )
    if not first_point and outcome.first_call_s is not None:
        warnings.append("first inference of this batch size ran after other batch sizes warmed the model up")
    samples = np.asarray(outcome.samples_s, dtype=float)
    latency = tput = None
    if samples.size:
        latency = describe_latency(samples, per="block" if outcome.block_size > 1 else "call", block_size=outcome.block_size)
        tput = throughput(latency, bs)
        warnings.extend(noise_warnings(samples))
    warnings.extend(env.noise)
    status = "ok" if outcome.error is None and not outcome.interrupted and samples.size else "failed"
    error = None
    if outcome.error is not None:
        error = str(outcome.error)
    elif outcome.interrupted:
        error = "interrupted (Ctrl-C)"
    elif not samples.size:
        error = "no samples were measured"
    result = Result(
        id=new_id(),
        invocation=invocation,
        status=status,
        error=error,
        model=info.model_copy(deep=True),
        batch_size=bs,
        scenario=SINGLE_STREAM,
        config=plan.config,
        env=env,
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
            gc_disabled=not plan.loop.keep_gc,
            gc_collections=outcome.gc_collections,
            device_host_ratio=outcome.device_host_ratio,
        ),
        stop_reason=outcome.stop_reason,
        warnings=warnings,
        tags=dict(plan.tags),
    )
    return result, outcome


def _ns(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds * 1e9:.0f} ns"

