"""Python callables served in the tests, by import path (``<this module>:NAME``).

Slow ones busy-wait (never sleep), as the other timing tests do.
"""

from __future__ import annotations

import time

import numpy as np


def spin_s(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


double.infermeter_inputs = ["x:float32[B,4]"]  # type: ignore[attr-defined]


def slow(x: np.ndarray) -> np.ndarray:
    """0.4 s a call, whatever the batch."""
    spin_s(0.4)
    return x * 2


slow.infermeter_inputs = ["x:float32[B,4]"]  # type: ignore[attr-defined]


def fails_on_negative(x: np.ndarray) -> np.ndarray:
    """No declared inputs: the server is told them with ``inputs``."""
    if (x < 0).any():
        raise ValueError("negative inputs are not allowed")
    return x + 1


def pair(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Two inputs sharing a symbolic dim: one output row per input row."""
    return (input_ids * attention_mask).sum(axis=1, keepdims=True).astype(np.float32)


pair.infermeter_inputs = ["input_ids:int64[B,seq]", "attention_mask:int64[B,seq]"]  # type: ignore[attr-defined]
