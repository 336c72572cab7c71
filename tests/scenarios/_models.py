"""Callables with known service times for scenario tests (busy-wait spins, never sleep)."""

from __future__ import annotations

import time

import numpy as np

_now = time.perf_counter_ns


def spin_ns(ns: int) -> None:
    end = _now() + ns
    while _now() < end:
        pass


def noop(x: np.ndarray) -> np.ndarray:
    return x


def one_ms(x: np.ndarray) -> np.ndarray:
    spin_ns(1_000_000)
    return x


def per_row_100us(x: np.ndarray) -> np.ndarray:
    spin_ns(100_000 * len(x))
    return x


def batch_2ms(x: np.ndarray) -> np.ndarray:
    """2 ms per call whatever the batch: batching multiplies capacity."""
    spin_ns(2_000_000)
    return x


class StallOnce:
    """``base_ns`` per call, but call number ``at`` stalls for ``stall_ns`` (once)."""

    def __init__(self, base_ns: int, stall_ns: int, at: int) -> None:
        self.base_ns, self.stall_ns, self.at, self.calls = base_ns, stall_ns, at, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        spin_ns(self.stall_ns if self.calls == self.at else self.base_ns)
        return x
