"""Waking an event loop at a send time, well under a millisecond late.

Event-loop timers are coarse: asyncio and uvloop both wait in ``epoll_wait``
with a millisecond timeout (uvloop rounds a 0.4 ms sleep to 0 or 1 ms), so
``asyncio.sleep`` alone sends 0.3-1 ms late on average. Two ways to do better,
both *cooperative* (the loop keeps reading responses while the pacer waits):

* ``timerfd`` (Linux, the default there): an absolute-time ``timerfd``
  registered as a reader on the loop wakes it at the target without burning
  CPU; the pacer then spins the last ``guard`` by yielding to the loop
  (``await asyncio.sleep(0)``) and reading the clock. The guard adapts: 1.5x
  a decaying maximum of how late recent wake-ups came (an idle VM wakes
  100-300 µs late, a busy loop ~10 µs), at most 1 ms and at most a quarter
  of the time between sends, so spinning never takes more than ~25% of a core.
* ``spin`` (elsewhere): ``asyncio.sleep`` until ``guard`` (2 ms: the loops'
  timers have millisecond resolution) before the target, then the same
  cooperative spin. As accurate, but the spin costs up to 2 ms of CPU per
  request: from 500 requests/s on it is a whole core.

Measured on a 2-core VM shared with other work (uvloop, fast aiohttp server in
another process, one generator process; lag = request started - intended):
constant rate, p99 lag ~35-100 µs at 100/s, ~15-60 µs at 500-2,000/s, under
1 ms up to ~6,000/s (generator ~70% of a core); from ~7,000-8,000/s it
crosses 1 ms on and off, and the loop saturates near 10,000/s. Poisson
arrivals: p99 ~300-500 µs at 100-4,000/s (a send due while the loop handles
a response waits for it). The spin method: p99 ~10-60 µs, but a busy core
at any rate over ~500/s.

:class:`Pacer` counts the time it spent spinning idle (``spin_s``) so the
generator's CPU figure can leave it out: a process busy spinning is idle.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from typing import Any

__all__ = ["Pacer", "timerfd_available"]

now = time.perf_counter
_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1
GUARD_TIMERFD_S = 200e-6  # the first guard; then GUARD_MARGIN x the decaying max of observed wake-up lateness
GUARD_MIN_S, GUARD_MAX_S, GUARD_MARGIN, LATE_DECAY = 20e-6, 1e-3, 1.5, 0.98
GUARD_GAP_SHARE, GAP_ALPHA = 0.25, 0.05
GUARD_SLEEP_S = 2e-3
SPIN_IDLE_CAP_S = 5e-6  # one idle spin step (sleep(0) + clock read) takes ~1 µs on uvloop, ~2 µs on asyncio


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _perf_counter_is_monotonic() -> bool:
    return "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation


def timerfd_available() -> bool:
    """True where a timerfd can wake the loop on ``perf_counter``'s clock (Linux)."""
    if not sys.platform.startswith("linux") or not _perf_counter_is_monotonic():
        return False
    try:
        return hasattr(ctypes.CDLL(None, use_errno=True), "timerfd_create")
    except OSError:
        return False


class _TimerFd:
    """One absolute-time timerfd on CLOCK_MONOTONIC (the clock of ``perf_counter`` on Linux)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._loop = loop
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except (BlockingIOError, InterruptedError):
            return
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, when: float) -> None:
        sec = int(when)
        v = self._spec.it_value
        v.tv_sec, v.tv_nsec = sec, int((when - sec) * 1e9)
        if self._libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, self._ref, None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self._loop.remove_reader(self.fd)
        os.close(self.fd)


class Pacer:
    """``await pacer.until(t)`` returns the first ``perf_counter()`` reading at or after ``t``.

    ``method``: ``"timerfd"``, ``"spin"`` or ``"auto"`` (timerfd where available).
    Create it inside the running loop; :meth:`close` it when done.
    """

    def __init__(self, method: str = "auto", guard_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._tfd: _TimerFd | None = None
        if method == "auto":
            method = "timerfd" if timerfd_available() else "spin"
        if method == "timerfd":
            try:
                self._tfd = _TimerFd(loop)
            except (OSError, AttributeError, NotImplementedError):
                method = "spin"
        if method not in ("timerfd", "spin"):
            raise ValueError(f"unknown pacing method {method!r}")
        self.method = method
        self._adaptive = guard_s is None and self._tfd is not None
        self.guard_s = guard_s if guard_s is not None else (GUARD_TIMERFD_S if self._tfd else GUARD_SLEEP_S)
        self._late = self.guard_s
        self._gap = 1e-3  # moving average of the time between targets
        self._last: float | None = None
        self.spin_s = 0.0
        self.waits = 0  # sends preceded by a timer wait (the others were due already)
        self.spin_wall_s = 0.0

    async def until(self, target: float) -> float:
        if self._adaptive:
            if self._last is not None:
                self._gap += GAP_ALPHA * (min(target - self._last, 1.0) - self._gap)
            self._last = target
            # spin as long as wake-ups have lately been late (a decaying maximum), plus a margin,
            # but at most a quarter of the time between sends
            self._late *= LATE_DECAY
            cap = min(GUARD_MAX_S, GUARD_GAP_SHARE * self._gap)
            self.guard_s = max(min(GUARD_MARGIN * self._late, cap), GUARD_MIN_S)
        t = now()
        wake = target - self.guard_s
        if t < wake:
            self.waits += 1
            if self._tfd is not None:
                await self._tfd.wait(wake)
                t = now()
                if t - wake > self._late:
                    self._late = t - wake
            else:
                await asyncio.sleep(wake - t)
                t = now()
        if t < target:
            idle, cap, t_spin = 0.0, SPIN_IDLE_CAP_S, t
            while t < target:  # cooperative spin: the loop serves responses between readings
                await asyncio.sleep(0)
                t1 = now()
                dt = t1 - t
                idle += dt if dt < cap else cap  # a longer step ran callbacks: that part was work
                t = t1
            self.spin_s += idle
            self.spin_wall_s += t - t_spin
        return t

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "guard_s": self.guard_s, "adaptive_guard": self._adaptive,
                "timer_waits": self.waits, "spin_wall_s": self.spin_wall_s, "spin_idle_s": self.spin_s}

    def close(self) -> None:
        if self._tfd is not None:
            self._tfd.close()
            self._tfd = None
