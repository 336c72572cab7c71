"""Multi-stream: each query carries N samples (``samples_per_query``, MLPerf's
default 8), issued as one batch of N rows; the next query is issued when the
last completes. Headline: the p99 of query latency (MLPerf's multi-stream metric).

The mechanics are single-stream's (a closed loop over prepared batches of N
rows, timed by ``timing/loop.py``); what differs is the batch, the percentile
judged, and that the loop is asked for enough queries for LoadGen's p99 early
stopping estimate (h(1) + 1 = 662 at 0.99 confidence).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..models.base import Runner
from ..stats import early_stopping_min_passing
from ..timing.loop import LoopConfig, LoopOutcome
from .single_stream import run_single_stream

__all__ = ["NAME", "DEFAULT_SAMPLES_PER_QUERY", "run_multi_stream", "min_queries_for_estimate"]

NAME = "multi-stream"
DEFAULT_SAMPLES_PER_QUERY = 8


def min_queries_for_estimate(percentile: float, confidence: float = 0.99) -> int:
    """Queries LoadGen's early stopping needs before it gives a percentile estimate: h(1) + 1."""
    return early_stopping_min_passing(1, percentile, confidence) + 1


def run_multi_stream(
    runner: Runner,
    prepared: Sequence[Any],
    config: LoopConfig,
    progress: Callable[[float, int, str], None] | None = None,
) -> LoopOutcome:
    """Time queries of ``samples_per_query`` rows (``prepared`` batches of that size)."""
    return run_single_stream(runner, prepared, config, progress)
