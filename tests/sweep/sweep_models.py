"""Models that misbehave the ways a sweep point can (crash, OOM-like kill, hang), and one whose
latency depends on which process runs it. Importable as ``sweep_models:NAME`` when tests/sweep is on
PYTHONPATH (the sweep tests put it there for their worker processes)."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from spin import spin_ns


def crash_with_stderr(x: np.ndarray) -> np.ndarray:
    """Says why on stderr, then dies without any exception handler seeing it."""
    print("allocating the big buffer", file=sys.stderr)
    print("fatal: simulated native crash in the model", file=sys.stderr, flush=True)
    os._exit(7)


def killed_like_oom(x: np.ndarray) -> np.ndarray:
    """Ends the way the kernel's OOM killer ends a process: SIGKILL."""
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def hangs(x: np.ndarray) -> np.ndarray:
    """Never returns (spins for an hour)."""
    spin_ns(3600 * 1_000_000_000)
    return x


def prints_to_stdout(x: np.ndarray) -> np.ndarray:
    """A chatty model: its prints must not corrupt the worker's message channel."""
    print('{"type": "result", "result": "not really"}')
    spin_ns(100_000)
    return x


def _claim_process_index() -> int:
    """0 for the first process that imports this in SWEEP_TEST_DIR, 1 for the next …"""
    folder = os.environ.get("SWEEP_TEST_DIR")
    if not folder:
        return 0
    i = 0
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"claim-{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return i
        except FileExistsError:
            i += 1


_INDEX = _claim_process_index()


def slower_each_process(x: np.ndarray) -> np.ndarray:
    """100 µs in the first process, 200 µs in the second …: a between-process difference by construction."""
    spin_ns(100_000 * (1 + _INDEX))
    return x
