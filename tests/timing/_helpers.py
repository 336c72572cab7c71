"""Test helpers: a busy-wait spin (never sleep) and a deterministic fake clock."""

from __future__ import annotations

import time
from typing import Callable

_now = time.perf_counter_ns


def spin_ns(ns: int) -> None:
    """Busy-wait ``ns`` nanoseconds on the same clock the harness reads."""
    end = _now() + ns
    while _now() < end:
        pass


class FakeTime:
    """A seeded fake clock: every read advances ``tick`` ns (the 'timer overhead');
    fake calls advance it by their latency. Samples are then exactly latency + tick."""

    def __init__(self, tick: int = 10) -> None:
        self.t = 1_000_000_000
        self.tick = tick
        self.reads = 0

    def now_ns(self) -> int:
        v = self.t
        self.t += self.tick
        self.reads += 1
        return v

    def advance(self, ns: int) -> None:
        self.t += ns

    def call(self, latency: Callable[[int], int]) -> Callable[[int], None]:
        def call(i: int) -> None:
            self.t += latency(i)

        return call


class FakeEvent:
    """``torch.cuda.Event``-like, on a FakeTime (or any ns clock): records the time, elapsed in ms."""

    log: list[str] = []

    def __init__(self, now_ns: Callable[[], int], enable_timing: bool = False) -> None:
        assert enable_timing
        self._now = now_ns
        self.t: int | None = None

    def record(self) -> None:
        self.t = self._now()
        FakeEvent.log.append("record")

    def synchronize(self) -> None:
        FakeEvent.log.append("synchronize")

    def elapsed_time(self, other: "FakeEvent") -> float:
        assert self.t is not None and other.t is not None
        return (other.t - self.t) / 1e6
