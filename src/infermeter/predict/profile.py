"""``infermeter profile``: where the time of one forward pass goes.

Two views of the same model and batch, so each explains the other:

* **phases** — load, input preparation (``Runner.prepare``), host→device copy and
  output copy (on a GPU only: on the host nothing is copied), and the forward pass,
  each timed with infermeter's clocks (``timing/``), medians from ``stats``;
* **operators** — the backend's own profiler (``torch.profiler``; ONNX Runtime's
  session profiling) over ``iterations`` calls after ``warmup``, self time summed by
  op type (``aten::addmm``, ``MatMul``) and by layer (module path ``layers.0.qkv``
  or ONNX node name), each key with its share of the summed op time.

The forward pass is timed first *without* the profiler (infermeter's timing loop,
so the Result carries ordinary latency statistics), then profiled: a profiler
slows every op a little, and the two figures side by side say by how much.

Backends live beside this file (``profile_torch.py``, ``profile_onnx.py``) and are
imported only for a model that needs them. A Python callable has no operator
profiler: :class:`UsageError`.

A model that raises is a :class:`ModelRunError` with the phase and iteration, as in
``bench``; the Result built from what was measured until then (status "failed")
is saved first when a store is given, so nothing measured is lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import stats
from ..env import capture_env
from ..errors import InfermeterError, ModelRunError, UsageError
from ..inputs import InputSpec, make_batches, parse_input
from ..models import import_backend, load_model, require_inputs
from ..models.base import LoadOptions, Runner
from ..result import Memory, Phases, Result, TimerInfo
from ..store import Store, new_id
from ..timing.clocks import CallFailed, HostClock
from ..timing.loop import LoopConfig, LoopOutcome, run_loop
from ..timing.memory import PeakRSS
from .schema import OpClass, OpProfile, OpTime

__all__ = ["profile_model", "profile_runner", "OpTally", "OpTimes", "SCENARIO"]

SCENARIO = "profile"
_PHASE_REPS = 10  # calls per timed phase (input prep, copies): cheap, and a median of 10 is steady
_MAX_TIME_S = 3600.0  # the iteration counts bound the run; this only keeps LoopConfig finite


# ---------------------------------------------------------------------------- aggregation


@dataclass
class _Entry:
    calls: int = 0
    total_s: float = 0.0
    by_class: dict[str, float] = field(default_factory=dict)


class OpTally:
    """Self time summed under keys (op types or layers), with the class of each key.

    A layer mixes ops of several classes; its class is the one that holds most of
    its time, so a ``qkv`` Linear reads "matmul" although it also copies a bias.
    """

    def __init__(self) -> None:
        self._by: dict[str, _Entry] = {}

    def add(self, key: str, seconds: float, op_class: OpClass, calls: int = 1) -> None:
        e = self._by.setdefault(key, _Entry())
        e.calls += calls
        e.total_s += seconds
        e.by_class[op_class] = e.by_class.get(op_class, 0.0) + seconds

    @property
    def total_s(self) -> float:
        return float(sum(e.total_s for e in self._by.values()))

    def __len__(self) -> int:
        return len(self._by)

    def times(self, iterations: int) -> list[OpTime]:
        """Every key, most time first; shares of this tally's total (they sum to 1)."""
        total = self.total_s
        n = max(1, iterations)
        out = []
        for key, e in self._by.items():
            cls = max(e.by_class, key=lambda c: e.by_class[c]) if e.by_class else None
            out.append(OpTime(
                key=key, op_class=cls, calls=e.calls, total_s=e.total_s, per_iter_s=e.total_s / n,  # type: ignore[arg-type]
                share=e.total_s / total if total > 0 else 0.0,
            ))
        out.sort(key=lambda t: (-t.total_s, t.key))
        return out


@dataclass
class OpTimes:
    """What a backend's profiler measured, aggregated. ``iterations`` counts the
    profiled calls that completed (fewer than asked when ``error`` is set: a failed
    call's ops are left out); ``iteration_s`` is each one's wall time under the profiler."""

    profiler: str
    device: str
    iterations: int
    warmup: int
    by_type: OpTally
    by_node: OpTally
    iteration_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: ModelRunError | None = None


# ---------------------------------------------------------------------------- the API


def profile_runner(
    runner: Runner, batch: Mapping[str, np.ndarray], *, iterations: int = 20, warmup: int = 5
) -> OpProfile:
    """Phases and per-operator time of ``runner`` on one numpy ``batch``.

    Times ``iterations`` unprofiled calls after ``warmup`` (the forward phase), then
    profiles as many. Raises :class:`ModelRunError` if the model raises."""
    backend = _backend(runner)
    _check_counts(1, iterations, warmup)
    prepared, phases = _prepare_phase(runner, batch)
    outcome = _time_forward(runner, prepared, iterations, warmup)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.error is not None:
        raise outcome.error
    op, error = _profile_ops(runner, backend, batch, prepared, outcome, phases, iterations, warmup)
    if error is not None:
        raise error
    assert op is not None
    return op


def profile_model(
    model: Any,
    *,
    batch_size: int = 1,
    dims: Mapping[str, int] | None = None,
    inputs: Sequence[str | InputSpec] | None = None,
    options: LoadOptions | None = None,
    iterations: int = 20,
    warmup: int = 5,
    seed: int = 0,
    store: Store | str | Path | bool | None = None,
) -> Result:
    """Load ``model`` (a spec, an ``nn.Module`` or a Runner), profile it at ``batch_size``
    and return a Result with scenario "profile": phases, latency of the unprofiled
    timed calls, and ``op_profile``.

    ``store`` (a :class:`Store`, a path, or True for the default store) saves the
    result — also a failed one, before its :class:`ModelRunError` is raised."""
    from ..measure import _open_store

    _check_counts(batch_size, iterations, warmup)
    options = options or LoadOptions()
    user_specs = [s if isinstance(s, InputSpec) else parse_input(s) for s in (inputs or ())]
    config = {
        "batch_sizes": [batch_size], "inputs": [s.text() for s in user_specs], "dims": dict(dims or {}),
        "device": options.device, "dtype": options.dtype, "threads": options.threads,
        "providers": list(options.providers), "iterations": iterations, "warmup": warmup, "seed": seed,
    }
    owned, st = _open_store(store)  # a store that cannot be opened fails before the model loads
    try:
        return _profile_model(model, options, user_specs, dict(dims or {}), config, batch_size, iterations, warmup,
                              seed, st)
    finally:
        if owned and st is not None:
            st.close()


def _profile_model(
    model: Any, options: LoadOptions, user_specs: list[InputSpec], dims: dict[str, int], config: dict[str, Any],
    batch_size: int, iterations: int, warmup: int, seed: int, st: Store | None,
) -> Result:
    from ..measure import _model_info, _object_name

    t0 = time.perf_counter_ns()
    import_s = (time.perf_counter_ns() - t0) / 1e9 if import_backend(model) else None
    rss = PeakRSS()
    rss.start()
    t0 = time.perf_counter_ns()
    runner = load_model(model, options)
    load_s = (time.perf_counter_ns() - t0) / 1e9
    load_peak = rss.stop()
    try:
        backend = _backend(runner)
        specs = require_inputs(runner, user_specs)
        all_dims = {**dict(getattr(runner, "default_dims", {}) or {}), **dims}
        batches, notes = make_batches(specs, batch_size, all_dims, seed=seed, pool=1)
        env = capture_env(probe_gpu=options.device.startswith("cuda"))
        result = Result(
            id=new_id(), invocation=new_id(), model=_model_info(runner, specs), batch_size=batch_size,
            scenario=SCENARIO, config=config, env=env, phases=Phases(import_s=import_s, load_s=load_s),
            memory=Memory(load_peak_rss_bytes=load_peak), tags={},
        )
        result.warnings.extend(notes)
        if not isinstance(model, str):
            result.config["model"] = _object_name(model)
        try:
            error = _fill(result, runner, backend, batches[0], iterations, warmup, load_s)
        except KeyboardInterrupt:  # keep what was measured, then stop as asked
            result.status, result.error = "failed", "interrupted (Ctrl-C)"
            if st is not None:
                st.save(result)
            raise
        result.warnings.extend(env.noise)
        if error is not None:
            result.status, result.error = "failed", str(error)
        if st is not None:
            st.save(result)
        if error is not None:
            where = f" (kept as run {result.id})" if st is not None else ""
            raise ModelRunError(f"{error}{where}", phase=error.phase, iteration=error.iteration)
        return result
    finally:
        if runner is not model:  # a Runner passed in belongs to the caller
            runner.close()


# ---------------------------------------------------------------------------- the steps


def _fill(
    result: Result, runner: Runner, backend: Any, batch: Mapping[str, np.ndarray], iterations: int, warmup: int,
    load_s: float,
) -> ModelRunError | None:
    """Measure into ``result`` step by step; return the error that stopped it, if any."""
    try:
        prepared, phases = _prepare_phase(runner, batch)
    except ModelRunError as exc:
        return exc
    phases["load"] = load_s
    devmem = runner.device_memory()
    if devmem is not None:
        devmem.reset_peak()
    rss = PeakRSS()
    rss.start()
    outcome = _time_forward(runner, prepared, iterations, warmup)
    result.memory.inference_peak_rss_bytes = rss.stop()
    result.memory.rss_accounting = rss.accounting
    if devmem is not None:
        result.memory.device_peak_bytes, result.memory.device_accounting = devmem.peak_bytes(), devmem.accounting
    _set_latency(result, outcome)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.error is not None:
        result.op_profile = OpProfile(profiler=backend.PROFILER, iterations=0, warmup=warmup, device=runner.device,
                                      phases=phases, notes=["the model raised before it could be profiled"])
        return outcome.error
    op, error = _profile_ops(runner, backend, batch, prepared, outcome, phases, iterations, warmup)
    result.op_profile = op
    return error


def _backend(runner: Runner) -> Any:
    """The profiler module for ``runner``; :class:`UsageError` when there is none."""
    if runner.backend == "torch":
        from . import profile_torch

        return profile_torch
    if runner.backend == "onnxruntime":
        from . import profile_onnx

        return profile_onnx
    what = "a Python callable" if runner.backend == "python" else f"a '{runner.backend}' model"
    raise UsageError(
        f"'{runner.spec}' is {what}, which has no operator profiler; infermeter profile needs a PyTorch model "
        "(nn.Module, TorchScript, .pt2, zoo:NAME) or an .onnx file; time a callable with infermeter bench"
    )


def _check_counts(batch_size: int, iterations: int, warmup: int) -> None:
    for name, value, low in (("batch_size", batch_size, 1), ("iterations", iterations, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


def _time_phase(
    name: str, fn: Callable[[int], object], sync: Callable[[], None] | None, reps: int = _PHASE_REPS
) -> float:
    """Median seconds of ``reps`` calls of ``fn`` (+ ``sync``) on the host clock,
    through the same timed path as the model calls. A raise is a ModelRunError of ``name``."""
    out: list[int] = []
    try:
        HostClock().measure(fn, sync, 0, reps, 1, out)
    except CallFailed as f:
        exc = f.original
        raise ModelRunError(
            f"the model raised {type(exc).__name__}: {exc} during {name} at iteration {f.index}; "
            "fix the model or its inputs and run again", phase=name, iteration=f.index,
        ) from exc
    return stats.percentile(np.asarray(out, dtype=np.float64) * 1e-9, 50)


def _prepare_phase(runner: Runner, batch: Mapping[str, np.ndarray]) -> tuple[Any, dict[str, float]]:
    """Time ``runner.prepare`` (on a GPU it includes the copy, also timed on its own).
    Prepared once untimed first, so inputs that do not fit stay an :class:`InputError`."""
    try:
        prepared = runner.prepare(batch)
    except InfermeterError:
        raise
    except Exception as exc:
        raise ModelRunError(f"preparing the inputs raised {type(exc).__name__}: {exc}; check the inputs",
                            phase="input-prep", iteration=0) from exc
    sync = runner.sync if runner.needs_sync() else None
    return prepared, {"input_prep": _time_phase("input-prep", lambda i: runner.prepare(batch), sync)}


def _time_forward(runner: Runner, prepared: Any, iterations: int, warmup: int) -> LoopOutcome:
    """The unprofiled forward pass: first call, ``warmup`` calls, ``iterations`` timed calls."""
    cfg = LoopConfig(
        max_time_s=_MAX_TIME_S, min_iters=iterations, max_iters=iterations, warmup_min_iters=0,
        warmup_max_iters=warmup, block_threshold=0.0,
    )
    sync = runner.sync if runner.needs_sync() else None
    return run_loop(lambda i: runner(prepared), sync, config=cfg, event_factory=runner.event_factory())


def _set_latency(result: Result, o: LoopOutcome) -> None:
    result.phases.first_inference_s = o.first_call_s
    result.phases.warmup_iters = o.warmup_iters
    result.phases.warmup_s = o.warmup_s
    result.phases.warmup_samples = [float(x) for x in o.warmup_samples_s]
    result.phases.measure_s = o.measure_s
    result.stop_reason = o.stop_reason
    result.timer = TimerInfo(clock=o.clock, overhead_s=o.timer_overhead_s, block_size=o.block_size,
                             gc_disabled=not (o.config.keep_gc if o.config else False),
                             gc_collections=o.gc_collections, device_host_ratio=o.device_host_ratio)
    if o.samples_s.size:
        result.latency = stats.describe_latency(o.samples_s)
        result.throughput = stats.throughput(result.latency, result.batch_size)
        result.warnings.extend(stats.noise_warnings(o.samples_s))


def _profile_ops(
    runner: Runner, backend: Any, batch: Mapping[str, np.ndarray], prepared: Any, outcome: LoopOutcome,
    phases: dict[str, float], iterations: int, warmup: int,
) -> tuple[OpProfile | None, ModelRunError | None]:
    """The copies' phases, then the profiler. Returns the profile (partial if the model
    raised during profiling after some iterations) and the error, if any."""
    sync = runner.sync if runner.needs_sync() else None
    phases["forward"] = stats.percentile(outcome.samples_s, 50)
    try:
        h2d = backend.h2d_copy(runner, batch)
        if h2d is not None:
            phases["h2d_copy"] = _time_phase("h2d-copy", lambda i: h2d(), sync)
        to_host = backend.output_copy(runner, prepared)
        if to_host is not None:
            phases["output_copy"] = _time_phase("output-copy", lambda i: to_host(), sync)
        times = backend.profile_ops(runner, batch, prepared, iterations=iterations, warmup=warmup)
    except ModelRunError as exc:
        return OpProfile(profiler=backend.PROFILER, iterations=0, warmup=warmup, device=runner.device,
                         phases=phases), exc
    return _op_profile(times, phases, phases["forward"]), times.error


def _op_profile(t: OpTimes, phases: dict[str, float], forward_s: float) -> OpProfile:
    notes = list(t.notes)
    if t.error is not None:
        notes.append(f"the model raised at profiled iteration {t.iterations}; the table holds the "
                     f"{t.iterations} iteration(s) that completed")
    if t.iteration_s and forward_s > 0:
        prof = stats.percentile(np.asarray(t.iteration_s, dtype=np.float64), 50)
        notes.append(
            f"under the profiler an iteration took {prof * 1e3:.4g} ms (median of {len(t.iteration_s)}) against "
            f"{forward_s * 1e3:.4g} ms without it ({round((prof / forward_s - 1) * 100):+d}%): op times carry that overhead"
        )
        total_iter = t.by_type.total_s / max(1, t.iterations)
        if t.device == "cpu" and prof > 0:
            notes.append(
                f"ops account for {min(1.0, total_iter / prof):.0%} of a profiled iteration; the rest is Python, "
                "dispatch and framework work between ops"
            )
        elif t.device != "cpu":
            notes.append(
                f"kernels keep the device busy {total_iter * 1e3:.4g} ms per iteration, "
                f"{min(1.0, total_iter / forward_s):.0%} of the unprofiled forward pass; the rest is launch "
                "latency and host work the device waits for"
            )
    return OpProfile(
        profiler=t.profiler, iterations=t.iterations, warmup=t.warmup, device=t.device, phases=phases,
        op_total_per_iter_s=t.by_type.total_s / max(1, t.iterations),
        by_type=t.by_type.times(t.iterations), by_node=t.by_node.times(t.iterations), notes=notes,
    )
