"""Clocks: the only code in infermeter that reads time.

A clock owns the *timed path*: the few lines between the two clock reads that
surround a model call. ``loop.py`` decides how many calls to time and when to
stop; it never reads time itself except through ``clock.now_ns``, and it times
calls only through :meth:`HostClock.measure` / :meth:`CudaEventClock.measure`.
The timer overhead (:func:`measure_timer_overhead`) is measured through that
very same ``measure`` method with a no-op call, so it is the overhead the model
calls actually pay.

Why ``measure`` is written out four times (sync or not, blocks or not): the
host fast path must cost as little as a bare ``perf_counter_ns`` pair. Each
variant binds everything to locals and does nothing inside the timed region but
the call (and the sync where there is one); the subtraction and the append
happen after the second read.

The device clock never imports torch: it is handed an event factory
(``Runner.event_factory()``, ``torch.cuda.Event``-like).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

__all__ = [
    "Clock",
    "HostClock",
    "CudaEventClock",
    "CallFailed",
    "measure_timer_overhead",
    "noop_call",
]

NowNs = Callable[[], int]
Call = Callable[[int], object]
Sync = Callable[[], None]


class CallFailed(Exception):
    """A timed call raised. ``index`` is the running index passed to the failing
    call; ``original`` the exception it raised. Samples completed before it are
    already in the output lists."""

    def __init__(self, index: int, original: BaseException) -> None:
        super().__init__(f"call {index} raised {type(original).__name__}: {original}")
        self.index = index
        self.original = original


def noop_call(i: int) -> None:
    """The no-op timed by :func:`measure_timer_overhead`."""
    return None


class Clock(Protocol):
    """What ``loop.py`` needs from a clock."""

    name: str
    now_ns: NowNs

    def measure(
        self,
        call: Call,
        sync: Sync | None,
        start: int,
        count: int,
        block: int,
        out: list[Any],
        host_out: list[int] | None = None,
    ) -> None: ...

    def to_seconds(self, value: float) -> float: ...


class HostClock:
    """``time.perf_counter_ns`` on the host (monotonic, system-wide, ns ticks).

    ``now_ns`` is injectable so tests can drive the loop with a seeded fake clock
    and check exact output.
    """

    name = "host"
    unit_ns = 1.0  # samples are integer nanoseconds

    def __init__(self, now_ns: NowNs | None = None) -> None:
        self.now_ns: NowNs = now_ns if now_ns is not None else time.perf_counter_ns

    def __repr__(self) -> str:
        return f"HostClock(now_ns={getattr(self.now_ns, '__qualname__', self.now_ns)!r})"

    @staticmethod
    def to_seconds(value: float) -> float:
        return value * 1e-9

    def measure(
        self,
        call: Call,
        sync: Sync | None,
        start: int,
        count: int,
        block: int,
        out: list[Any],
        host_out: list[int] | None = None,
    ) -> None:
        """Time ``count`` samples and append them to ``out`` (int ns each).

        A sample is one call (``block == 1``) or the total of ``block``
        consecutive calls (the caller divides). Call ``j`` gets running index
        ``start + j``. ``sync`` (if any) runs after every call, inside the timed
        region. ``host_out`` is ignored (the host clock *is* the host).

        Raises :class:`CallFailed` if a call or the sync raises an ``Exception``;
        ``KeyboardInterrupt`` propagates unchanged.
        """
        now = self.now_ns
        ap = out.append
        stop = start + count * block
        i = start
        try:
            if block == 1:
                if sync is None:
                    for i in range(start, stop):
                        t0 = now()
                        call(i)
                        t1 = now()
                        ap(t1 - t0)
                else:
                    for i in range(start, stop):
                        t0 = now()
                        call(i)
                        sync()
                        t1 = now()
                        ap(t1 - t0)
            else:
                if sync is None:
                    for b in range(start, stop, block):
                        t0 = now()
                        for i in range(b, b + block):
                            call(i)
                        t1 = now()
                        ap(t1 - t0)
                else:
                    for b in range(start, stop, block):
                        t0 = now()
                        for i in range(b, b + block):
                            call(i)
                            sync()
                        t1 = now()
                        ap(t1 - t0)
        except Exception as exc:  # KeyboardInterrupt is not an Exception: propagates
            raise CallFailed(i, exc) from exc


class CudaEventClock:
    """Device time from CUDA events, host time as a cross-check.

    Per sample: host read, ``start.record()``, the call(s), ``end.record()``,
    ``sync()`` (the runner's), ``end.synchronize()``, host read. The sample is
    ``start.elapsed_time(end)`` (ms → ns, float), read after the second host
    read so it costs nothing inside the timed region; the host interval of the
    same sample goes to ``host_out``. In blocks, every call but the last is
    followed by ``sync()`` inside the event interval, so each call still runs
    alone on the device (the sample is a latency, not a pipelined throughput).

    One pair of events is reused: each sample is complete (synchronised) before
    the next one records, so no allocation happens per sample.
    """

    name = "cuda-events"
    unit_ns = 1.0

    def __init__(self, event_factory: Callable[..., Any], host_now_ns: NowNs | None = None) -> None:
        self.event_factory = event_factory
        self.now_ns: NowNs = host_now_ns if host_now_ns is not None else time.perf_counter_ns
        self._start = event_factory(enable_timing=True)
        self._end = event_factory(enable_timing=True)

    def __repr__(self) -> str:
        return f"CudaEventClock(event_factory={self.event_factory!r})"

    @staticmethod
    def to_seconds(value: float) -> float:
        return value * 1e-9

    def measure(
        self,
        call: Call,
        sync: Sync | None,
        start: int,
        count: int,
        block: int,
        out: list[Any],
        host_out: list[int] | None = None,
    ) -> None:
        """Like :meth:`HostClock.measure`; ``out`` gets device ns (float),
        ``host_out`` (if given) the host ns of the same samples."""
        now = self.now_ns
        ev0, ev1 = self._start, self._end
        rec0, rec1, wait1 = ev0.record, ev1.record, ev1.synchronize
        elapsed = ev0.elapsed_time
        ap = out.append
        hap = host_out.append if host_out is not None else None
        do_sync: Sync = sync if sync is not None else _nothing
        stop = start + count * block
        i = start
        try:
            if block == 1:
                for i in range(start, stop):
                    t0 = now()
                    rec0()
                    call(i)
                    rec1()
                    do_sync()
                    wait1()
                    t1 = now()
                    ap(elapsed(ev1) * 1e6)
                    if hap is not None:
                        hap(t1 - t0)
            else:
                for b in range(start, stop, block):
                    last = b + block - 1
                    t0 = now()
                    rec0()
                    for i in range(b, last):
                        call(i)
                        do_sync()
                    i = last
                    call(last)
                    rec1()
                    do_sync()
                    wait1()
                    t1 = now()
                    ap(elapsed(ev1) * 1e6)
                    if hap is not None:
                        hap(t1 - t0)
        except Exception as exc:
            raise CallFailed(i, exc) from exc


def _nothing() -> None:
    return None


def measure_timer_overhead(
    clock: Clock | None = None,
    sync: Sync | None = None,
    *,
    samples: int = 1000,
    warmup: int = 100,
    max_s: float = 0.1,
) -> float:
    """The harness's own cost per timed call, in seconds.

    Times :func:`noop_call` through ``clock.measure`` — exactly the path model
    calls take, with the same ``sync`` — and returns the median of up to
    ``samples`` samples (after ``warmup`` discarded ones), stopping early after
    ``max_s`` seconds of the clock's host time. Median, not minimum: it is the
    typical cost the model calls pay, and what decides whether calls are too
    short to time one by one.
    """
    if clock is None:
        clock = HostClock()
    sink: list[Any] = []
    clock.measure(noop_call, sync, 0, warmup, 1, sink)
    out: list[Any] = []
    now = clock.now_ns
    t_end = now() + int(max_s * 1e9)
    chunk = 100
    while len(out) < samples:
        clock.measure(noop_call, sync, len(out), min(chunk, samples - len(out)), 1, out)
        if now() >= t_end:
            break
    out.sort()
    return clock.to_seconds(float(out[len(out) // 2])) if out else 0.0
