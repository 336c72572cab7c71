"""Busy-wait callables for the compare/check tests: a base service time and versions of it
a known fraction slower. Importable by spec as ``spin_compare:NAME`` (tests/ is on PYTHONPATH)."""

from __future__ import annotations

import os

import numpy as np

from spin import spin_ns

BASE_NS = 500_000


def base(x: np.ndarray) -> np.ndarray:
    spin_ns(BASE_NS)
    return x


def base_again(x: np.ndarray) -> np.ndarray:
    """The same code as ``base`` under another name."""
    spin_ns(BASE_NS)
    return x


def slower_3pct(x: np.ndarray) -> np.ndarray:
    spin_ns(int(BASE_NS * 1.03))
    return x


def slower_20pct(x: np.ndarray) -> np.ndarray:
    spin_ns(int(BASE_NS * 1.20))
    return x


# ``tunable`` keeps one spec while its speed changes, as a model does between two commits:
# SPIN_COMPARE_FACTOR (read at import, for CLI subprocesses) or FACTOR (set in-process).
FACTOR = float(os.environ.get("SPIN_COMPARE_FACTOR", "1"))


def tunable(x: np.ndarray) -> np.ndarray:
    spin_ns(int(BASE_NS * FACTOR))
    return x
