"""Callables with known service times (busy-wait spins, never sleep) for tests.

Importable by spec as ``spin:NAME`` when this folder is on PYTHONPATH.
"""

from __future__ import annotations

import os
import time

import numpy as np

_now = time.perf_counter_ns


def spin_ns(ns: int) -> None:
    """Busy-wait for ``ns`` nanoseconds of wall time."""
    end = _now() + ns
    while _now() < end:
        pass


def predict_1ms(x: np.ndarray) -> np.ndarray:
    spin_ns(1_000_000)
    return x


def predict_200us(x: np.ndarray) -> np.ndarray:
    spin_ns(200_000)
    return x


def per_sample_100us(x: np.ndarray) -> np.ndarray:
    """100 µs per row of the batch: latency scales with batch size."""
    spin_ns(100_000 * len(x))
    return x


_calls = {"n": 0}


def raises_at_call_300(x: np.ndarray) -> np.ndarray:
    _calls["n"] += 1
    if _calls["n"] >= 300:
        raise RuntimeError("kaboom inside the model")
    spin_ns(200_000)
    return x


def raises_when_batch_is_4(x: np.ndarray) -> np.ndarray:
    if len(x) == 4:
        raise ValueError("cannot handle batch 4")
    spin_ns(50_000)
    return x


def interrupt_when_batch_is_2(x: np.ndarray) -> np.ndarray:
    if len(x) == 2:
        raise KeyboardInterrupt
    spin_ns(50_000)
    return x


def hard_exit_on_batch_2(x: np.ndarray) -> np.ndarray:  # a crash no exception handler sees
    if len(x) == 2:
        os._exit(9)
    spin_ns(50_000)
    return x


def hangs_on_batch_2(x: np.ndarray) -> np.ndarray:
    """Never returns once it sees a batch of 2 (spins for an hour)."""
    spin_ns(3600 * 1_000_000_000 if len(x) == 2 else 50_000)
    return x
