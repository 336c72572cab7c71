"""The timed loop: first call, warm-up until steady, adaptive measurement.

Phases, in order (the running index passed to ``call`` keeps counting across
them, so a caller can cycle through prepared batches):

1. **first-inference** — call 0, timed alone and synced. Reported separately
   (``first_call_s``): it carries lazy initialisation and is not a sample.
2. **timer overhead** — a no-op timed through exactly the path model calls take
   (``clocks.measure_timer_overhead``, same clock, same sync); median reported as
   ``timer_overhead_s``.
3. **warm-up** — calls timed one by one in windows. A window is at least
   ``warmup_window`` calls and, estimated from the previous window's median, at
   least ``warmup_window_s`` seconds (so windows of very short calls are not all
   noise). After each window, it is compared with the previous one by
   ``stats.warmup_steady(prev, cur, warmup_tolerance)`` (``stats.WARMUP_RULE``).
   Warm-up ends at the first window that is steady *and* brings warm-up to at
   least ``warmup_min_iters`` calls and ``warmup_min_s`` seconds
   (``warmup_stop="steady"``); or, steady or not, when it has run
   ``warmup_max_iters`` calls (``"max-iters"``) or ``warmup_max_s`` seconds
   (``"max-time"``). Windows are cut short so as not to overrun those maxima;
   a window shorter than ``warmup_window`` calls is not judged.
   ``warmup_max_iters=0`` skips warm-up (``"skipped"``).
4. **block calibration** — with ``m`` the median latency of the last warm-up
   window (the first call if there was no warm-up) and ``o`` the timer
   overhead: if ``m < block_threshold * o``, calls are timed in blocks of
   ``k = ceil(block_threshold * o / m)`` calls (capped by ``max_block_size`` and
   ``max_iters``), so that one block lasts about ``block_threshold`` times the
   overhead; each sample is then the mean of a block (``block_size = k``).
   ``block_size`` in the config forces ``k``.
5. **measure** — samples are taken in chunks between stop checks, so the check
   costs nothing inside timed regions and next to nothing overall: a chunk is
   sized (from the running latency estimate) to last about
   ``check_interval_s``, and never overruns ``max_iters``. After each chunk:

   * **precision** — stop when the ``confidence`` (0.95) CI of the median,
     distribution-free (``stats.median_ci_halfwidth_rel``), has a relative
     half-width ≤ ``precision`` *and* there are at least
     ``stats.min_samples_for_percentile(stop_percentile, stop_confidence)``
     samples (459 for p99 at 0.99: enough for a p99 claim) *and* at least
     ``min_iters`` calls and ``min_time_s`` seconds have been measured. The CI
     is recomputed only once the sample count has grown by ``check_growth``
     (10%) since the last computation, so sorting stays amortised O(log n) per
     sample.
   * **max-iters** — ``max_iters`` calls measured (or fewer than one block left).
   * **max-time** — ``max_time_s`` seconds of measurement elapsed.

   Precision is checked first: when both fire, the stronger statement wins.
   The maxima override the minima.

A call (or sync) that raises ends the loop with what was measured so far,
``stop_reason="error"`` and ``error`` a :class:`ModelRunError` naming the
exception type and message, the phase and the failing call's iteration
within that phase (``error.iteration``; the running index is in the message). ``KeyboardInterrupt`` ends it the same way
with ``stop_reason="interrupted"``, ``interrupted=True``; the caller saves what
it got, then re-raises.

Python's garbage collector is disabled for the whole loop unless ``keep_gc``;
collections that happen anyway (``gc.collect()`` in the model, or ``keep_gc``)
are counted through ``gc.callbacks``.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from ..errors import ModelRunError, UsageError
from ..stats import median_ci_halfwidth_rel, min_samples_for_percentile, warmup_steady
from .clocks import CallFailed, Clock, CudaEventClock, HostClock, measure_timer_overhead

__all__ = ["LoopConfig", "LoopOutcome", "run_loop", "STOP_REASONS"]

STOP_REASONS = ("precision", "max-time", "max-iters", "error", "interrupted")

Progress = Callable[[float, int, str], None]
_PROGRESS_INTERVAL_NS = 50_000_000  # at most ~20 progress calls per second


@dataclass(frozen=True)
class LoopConfig:
    """How long to warm up and measure; validated here, at construction.

    Iteration counts are model calls (not block samples); times are seconds of
    the clock's host time. ``warmup_max_s=None`` means ``min(10, max_time_s/2)``.
    """

    precision: float = 0.01
    confidence: float = 0.95
    max_time_s: float = 30.0
    min_time_s: float = 0.0
    min_iters: int = 1
    max_iters: int | None = None
    warmup_min_iters: int = 10
    warmup_max_iters: int | None = 1_000_000
    warmup_min_s: float = 0.0
    warmup_max_s: float | None = None
    warmup_window: int = 10
    warmup_window_s: float = 0.01
    warmup_tolerance: float = 0.05
    keep_gc: bool = False
    block_threshold: float = 20.0
    block_size: int | None = None
    max_block_size: int = 100_000
    stop_percentile: float = 99.0
    stop_confidence: float = 0.99
    check_interval_s: float = 0.05
    check_growth: float = 0.10

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise UsageError(msg)

        def num(name: str, v: object) -> float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                bad(f"{name} must be a number, got {v!r}")
            return float(v)  # type: ignore[arg-type]

        def count(name: str, v: object, low: int) -> int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < low:
                bad(f"{name} must be an integer >= {low}, got {v!r}")
            return int(v)  # type: ignore[arg-type]

        if not 0.0 < num("precision", self.precision) < 1.0:
            bad(f"precision must be a fraction between 0 and 1 (0.01 = 1%), got {self.precision!r}")
        for name in ("confidence", "stop_confidence"):
            if not 0.0 < num(name, getattr(self, name)) < 1.0:
                bad(f"{name} must be between 0 and 1 (e.g. 0.95), got {getattr(self, name)!r}")
        if not 0.0 < num("stop_percentile", self.stop_percentile) < 100.0:
            bad(f"stop_percentile must be between 0 and 100 (e.g. 99), got {self.stop_percentile!r}")
        if not 0.0 < num("max_time_s", self.max_time_s) < math.inf:
            bad(f"max_time_s must be a positive number of seconds, got {self.max_time_s!r}")
        if not 0.0 <= num("min_time_s", self.min_time_s) <= self.max_time_s:
            bad(f"min_time_s must be between 0 and max_time_s ({self.max_time_s:g}), got {self.min_time_s!r}")
        count("min_iters", self.min_iters, 0)
        if self.max_iters is not None:
            count("max_iters", self.max_iters, 1)
            if self.min_iters > self.max_iters:
                bad(f"min_iters ({self.min_iters}) is above max_iters ({self.max_iters}); lower min_iters or raise max_iters")
        count("warmup_min_iters", self.warmup_min_iters, 0)
        if self.warmup_max_iters is not None:
            count("warmup_max_iters", self.warmup_max_iters, 0)
            if self.warmup_min_iters > self.warmup_max_iters:
                bad(
                    f"warmup_min_iters ({self.warmup_min_iters}) is above warmup_max_iters "
                    f"({self.warmup_max_iters}); lower one or raise the other"
                )
        if num("warmup_min_s", self.warmup_min_s) < 0:
            bad(f"warmup_min_s must be >= 0 seconds, got {self.warmup_min_s!r}")
        if self.warmup_max_s is not None and not self.warmup_min_s <= num("warmup_max_s", self.warmup_max_s) < math.inf:
            bad(f"warmup_max_s must be a finite number of seconds >= warmup_min_s ({self.warmup_min_s:g}), got {self.warmup_max_s!r}")
        count("warmup_window", self.warmup_window, 1)
        if not 0.0 <= num("warmup_window_s", self.warmup_window_s) < math.inf:
            bad(f"warmup_window_s must be a finite number of seconds >= 0, got {self.warmup_window_s!r}")
        if not 0.0 < num("warmup_tolerance", self.warmup_tolerance) < 1.0:
            bad(f"warmup_tolerance must be a fraction between 0 and 1 (0.05 = 5%), got {self.warmup_tolerance!r}")
        if not 0.0 <= num("block_threshold", self.block_threshold) < math.inf:
            bad(f"block_threshold must be >= 0 (0 disables blocks), got {self.block_threshold!r}")
        if self.block_size is not None:
            count("block_size", self.block_size, 1)
        count("max_block_size", self.max_block_size, 1)
        if not 0.0 < num("check_interval_s", self.check_interval_s) < math.inf:
            bad(f"check_interval_s must be a positive number of seconds, got {self.check_interval_s!r}")
        if not 0.0 < num("check_growth", self.check_growth) < math.inf:
            bad(f"check_growth must be a positive fraction (0.1 = 10%), got {self.check_growth!r}")

    @property
    def effective_warmup_max_s(self) -> float:
        return self.warmup_max_s if self.warmup_max_s is not None else min(10.0, self.max_time_s / 2)

    @property
    def min_samples(self) -> int:
        """Samples the precision stop needs at least (459 for p99 at 0.99)."""
        return min_samples_for_percentile(self.stop_percentile, self.stop_confidence)


def _empty() -> npt.NDArray[np.float64]:
    return np.zeros(0, dtype=np.float64)


@dataclass
class LoopOutcome:
    """What one loop measured. Raw data, not statistics: ``stats`` derives
    the figures.

    ``samples_s``: seconds per call of the measure phase, one per call, or one
    per block of ``block_size`` calls (the block's mean); on the device clock,
    device time (``host_samples_s`` holds the host time of the same samples and
    ``device_host_ratio`` = median host / median device). ``n_calls``: model
    calls behind ``samples_s``. ``gc_collections``: collections during the
    measure phase; ``gc_collections_warmup``: before it (first call, warm-up).
    ``error`` is set when ``stop_reason == "error"``; ``interrupted`` when
    ``"interrupted"`` (the caller saves, then re-raises KeyboardInterrupt).
    """

    samples_s: npt.NDArray[np.float64]
    block_size: int
    first_call_s: float | None
    warmup_iters: int
    warmup_s: float
    measure_s: float
    stop_reason: str
    timer_overhead_s: float | None
    gc_collections: int
    clock: str
    device_host_ratio: float | None = None
    error: ModelRunError | None = None
    interrupted: bool = False
    n_calls: int = 0
    warmup_samples_s: npt.NDArray[np.float64] = field(default_factory=_empty)
    warmup_stop: str = "none"  # "steady" | "max-iters" | "max-time" | "skipped" | "none" (never finished)
    host_samples_s: npt.NDArray[np.float64] | None = None  # device clock: host time of the same samples
    ci_halfwidth_rel: float = math.inf  # relative half-width of the median's CI at the end
    min_samples: int = 0  # what the precision rule required
    gc_collections_warmup: int = 0
    config: LoopConfig | None = None

    @property
    def n_samples(self) -> int:
        return int(self.samples_s.size)


class _Stopped(Exception):
    """Internal: a call raised; carries the ModelRunError for the outcome."""

    def __init__(self, error: ModelRunError) -> None:
        self.error = error


def run_loop(
    call: Callable[[int], object],
    sync: Callable[[], None] | None = None,
    *,
    config: LoopConfig | None = None,
    clock: Clock | None = None,
    event_factory: Any = None,
    progress: Progress | None = None,
) -> LoopOutcome:
    """Time ``call(i)`` (+ ``sync()``) by the rules in this module's docstring.

    ``clock``: default :class:`HostClock`; with an ``event_factory`` (a
    ``torch.cuda.Event``-like factory, ``Runner.event_factory()``) and no
    clock, a :class:`CudaEventClock`. ``sync=None`` means nothing to wait for
    (the tightest host path). ``progress(fraction, n, phase)`` is called at
    most ~20 times a second, ``phase`` one of "first-inference", "warm-up",
    "measure"; ``fraction`` is the share of the phase's budget used, monotone
    within a phase; ``n`` counts the phase's samples (warm-up: calls). A last
    call with fraction 1.0 marks a normal end.
    """
    cfg = config if config is not None else LoopConfig()
    if clock is None:
        clock = CudaEventClock(event_factory) if event_factory is not None else HostClock()
    return _Run(call, sync, cfg, clock, progress).run()


class _Run:
    """One run of the loop; phases are methods, state is attributes."""

    def __init__(self, call: Callable[[int], object], sync: Callable[[], None] | None,
                 cfg: LoopConfig, clock: Clock, progress: Progress | None) -> None:
        self.call, self.sync, self.cfg, self.clock, self.progress = call, sync, cfg, clock, progress
        self.now, self.to_s = clock.now_ns, clock.to_seconds
        self.out: dict[str, Any] = dict(
            block_size=1, first_call_s=None, warmup_iters=0, warmup_s=0.0, measure_s=0.0,
            stop_reason="error", timer_overhead_s=None, gc_collections=0, gc_collections_warmup=0,
            clock=clock.name, n_calls=0, warmup_stop="none", min_samples=cfg.min_samples, config=cfg,
        )
        self.idx = 0  # running index of the next call
        self.w_raw: list[Any] = []
        self.m_raw: list[Any] = []
        self.m_host: list[int] | None = [] if isinstance(clock, CudaEventClock) else None
        self.gc_count = 0
        self.t_warm: int | None = None
        self.t_meas: int | None = None
        self.gc_at_meas = 0
        self._p_last = self.now() - _PROGRESS_INTERVAL_NS
        self._p_frac, self._p_phase = 0.0, ""

    # -- plumbing ----------------------------------------------------------
    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_count += 1

    def _report(self, fraction: float, n: int, phase: str, force: bool = False) -> None:
        if self.progress is None:
            return
        t = self.now()
        if phase != self._p_phase:
            self._p_frac, self._p_phase = 0.0, phase
        fraction = max(self._p_frac, min(1.0, max(0.0, fraction)))
        if force or t - self._p_last >= _PROGRESS_INTERVAL_NS:
            self._p_last, self._p_frac = t, fraction
            self.progress(fraction, n, phase)

    def _timed(self, phase: str, phase_start: int, n: int, block: int, dest: list[Any], host: Any = None) -> None:
        """Time ``n`` samples of ``block`` calls from the running index on."""
        try:
            self.clock.measure(self.call, self.sync, self.idx, n, block, dest, host)
        except CallFailed as f:
            exc, it = f.original, f.index - phase_start
            raise _Stopped(ModelRunError(
                f"the model raised {type(exc).__name__}: {exc} during {phase} at iteration {it} "
                f"(call index {f.index}); fix the model or its inputs and run again",
                phase=phase, iteration=it)) from exc
        self.idx += n * block

    # -- phases --------------------------------------------------------------
    def run(self) -> LoopOutcome:
        gc_was_enabled = gc.isenabled()
        gc.collect()
        on_gc = self._on_gc  # one bound method, so remove() finds it
        gc.callbacks.append(on_gc)
        if not self.cfg.keep_gc:
            gc.disable()
        try:
            last_med = self._first_inference()
            last_med = self._warm_up(last_med)
            self.out["block_size"] = self._choose_block(last_med)
            self.out["stop_reason"] = self._measure(last_med)
        except _Stopped as s:
            self.out["stop_reason"], self.out["error"] = "error", s.error
        except KeyboardInterrupt:
            self.out["stop_reason"], self.out["interrupted"] = "interrupted", True
        finally:
            t_end = self.now()
            gc.callbacks.remove(on_gc)  # before re-enabling: the backlog collects at once
            if gc_was_enabled:
                gc.enable()
        return self._finish(t_end)

    def _first_inference(self) -> float:
        first: list[Any] = []
        self._report(0.0, 0, "first-inference", force=True)
        self._timed("first-inference", 0, 1, 1, first)
        self.out["first_call_s"] = first_s = self.to_s(first[0])
        try:  # through the same path, with the same sync
            self.out["timer_overhead_s"] = measure_timer_overhead(self.clock, self.sync)
        except CallFailed as f:
            raise _Stopped(ModelRunError(
                f"sync raised {type(f.original).__name__}: {f.original} while measuring the timer overhead; "
                "check the device and its driver", phase="timer-overhead", iteration=f.index)) from f.original
        return float(first_s)

    def _warm_up(self, last_med: float) -> float:
        """Windows until steady (see the module docstring); returns the last window's median (s)."""
        cfg, now, to_s = self.cfg, self.now, self.to_s
        self.t_warm = t0 = now()
        w_start, max_s, w_max = self.idx, cfg.effective_warmup_max_s, cfg.warmup_max_iters
        est = max(last_med, 1e-9)
        prev: list[Any] | None = None
        while True:
            done, el = self.idx - w_start, to_s(now() - t0)
            if w_max == 0 or max_s == 0:
                stop = "skipped"
            elif w_max is not None and done >= w_max:
                stop = "max-iters"
            elif el >= max_s:
                stop = "max-time"
            else:
                stop = ""
            if stop:
                break
            n = max(cfg.warmup_window, math.ceil(cfg.warmup_window_s / est))
            n = min(n, max(1, math.ceil((max_s - el) / est)))
            if w_max is not None:
                n = min(n, w_max - done)
            a = len(self.w_raw)
            self._timed("warm-up", w_start, n, 1, self.w_raw)
            cur = self.w_raw[a:]
            last_med = to_s(float(np.median(cur)))
            est = max(last_med, 1e-9)
            if n >= cfg.warmup_window:  # a window cut short by the maxima is not judged
                if prev is not None and warmup_steady(prev, cur, cfg.warmup_tolerance):
                    if self.idx - w_start >= cfg.warmup_min_iters and to_s(now() - t0) >= cfg.warmup_min_s:
                        stop = "steady"
                        break
                prev = cur
            if self.progress is not None:
                frac = max(to_s(now() - t0) / max_s, (self.idx - w_start) / w_max if w_max else 0.0)
                self._report(frac, self.idx - w_start, "warm-up")
        self.out["warmup_stop"] = stop
        self.out["warmup_s"] = to_s(now() - t0)
        self.t_warm = None
        return last_med

    def _choose_block(self, last_med: float) -> int:
        cfg, o = self.cfg, self.out["timer_overhead_s"] or 0.0
        if cfg.block_size is not None:
            k = cfg.block_size
        elif cfg.block_threshold > 0 and o > 0 and last_med < cfg.block_threshold * o:
            k = math.ceil(cfg.block_threshold * o / max(last_med, 1e-12))
        else:
            k = 1
        return max(1, min(k, cfg.max_block_size, cfg.max_iters or k))

    def _measure(self, last_med: float) -> str:
        """Chunks between stop checks until a stop rule fires; returns its name."""
        cfg, now, to_s, k = self.cfg, self.now, self.to_s, self.out["block_size"]
        m_raw, max_iters = self.m_raw, cfg.max_iters
        m_start = self.idx
        est = max(last_med * k, 1e-9)  # seconds per sample
        n_min = cfg.min_samples
        need = max(n_min, math.ceil(cfg.min_iters / k))
        next_ci_n, ci = need, math.inf
        self.gc_at_meas = self.gc_count
        self.t_meas = t_start = now()
        while True:
            n = len(m_raw)
            el = to_s(now() - t_start)
            c = max(1, math.ceil(cfg.check_interval_s / est))
            if n < need:
                c = min(c, need - n)
            c = min(c, max(1, math.ceil((cfg.max_time_s - el) / est)))
            if max_iters is not None:
                c = min(c, (max_iters - n * k) // k)
            t0 = now()
            self._timed("measure", m_start, c, k, m_raw, self.m_host)
            t1 = now()
            n += c
            est = max(to_s(t1 - t0) / c, 1e-9)
            el = to_s(t1 - t_start)
            if n >= next_ci_n and n * k >= cfg.min_iters and el >= cfg.min_time_s:
                ci = median_ci_halfwidth_rel(np.sort(np.asarray(m_raw, dtype=np.float64)), cfg.confidence)
                next_ci_n = max(n + 1, math.ceil(n * (1 + cfg.check_growth)))
                if ci <= cfg.precision:
                    return "precision"
            if max_iters is not None and max_iters - n * k < k:
                return "max-iters"
            if el >= cfg.max_time_s:
                return "max-time"
            if self.progress is not None:
                frac = el / cfg.max_time_s
                if max_iters:
                    frac = max(frac, n * k / max_iters)
                if math.isfinite(ci) and ci > 0:
                    frac = max(frac, min(1.0, n / n_min) * min(1.0, (cfg.precision / ci) ** 2))
                self._report(frac, n, "measure")

    def _finish(self, t_end: int) -> LoopOutcome:
        """What was measured, whatever stopped it."""
        out, to_s = self.out, self.to_s
        if self.t_warm is not None:  # stopped inside warm-up
            out["warmup_s"] = to_s(t_end - self.t_warm)
        out["warmup_iters"] = len(self.w_raw)
        if self.t_meas is not None:
            out["measure_s"] = to_s(t_end - self.t_meas)
            out["gc_collections"] = self.gc_count - self.gc_at_meas
            out["gc_collections_warmup"] = self.gc_at_meas
        else:
            out["gc_collections_warmup"] = self.gc_count
        k = out["block_size"]
        samples = np.asarray(self.m_raw, dtype=np.float64) * (to_s(1.0) / k)
        out["n_calls"] = int(samples.size) * k
        host = None
        if self.m_host is not None:
            host = np.asarray(self.m_host[: samples.size], dtype=np.float64) * (1e-9 / k)
            med_dev = float(np.median(samples)) if samples.size else 0.0
            if host.size and med_dev > 0:
                out["device_host_ratio"] = float(np.median(host)) / med_dev
        if samples.size:
            out["ci_halfwidth_rel"] = median_ci_halfwidth_rel(np.sort(samples), self.cfg.confidence)
        if self.progress is not None and out["stop_reason"] not in ("error", "interrupted"):
            self.progress(1.0, int(samples.size), "measure")
        return LoopOutcome(
            samples_s=samples,
            warmup_samples_s=np.asarray(self.w_raw, dtype=np.float64) * to_s(1.0),
            host_samples_s=host,
            **out,
        )
