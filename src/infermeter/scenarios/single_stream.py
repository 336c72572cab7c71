"""Single-stream: one query at a time, the next issued when the last completes.

The prepared batches are made before timing starts and cycled, so input
conversion and host→device copies are outside the timed region; a timed call is
``runner(prepared) + runner.sync()``. Headline: the p90 latency (MLPerf's
single-stream metric), with every percentile kept in ``Result.latency``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..models.base import Runner
from ..timing.loop import LoopConfig, LoopOutcome, run_loop
from .outcome import ScenarioOutcome, failure_text, from_loop, latency_headline
from .verdict import Rules, judge

__all__ = ["NAME", "run_single_stream", "closed_loop_outcome"]

NAME = "single-stream"


def run_single_stream(
    runner: Runner,
    prepared: Sequence[Any],
    config: LoopConfig,
    progress: Callable[[float, int, str], None] | None = None,
) -> LoopOutcome:
    """Drive ``runner`` over ``prepared`` batches until the loop's stop rule fires."""
    if not prepared:
        raise ValueError("run_single_stream needs at least one prepared batch")
    n = len(prepared)
    if n == 1:
        only = prepared[0]

        def call(i: int) -> object:
            return runner(only)

    else:
        pool = list(prepared)

        def call(i: int) -> object:
            return runner(pool[i % n])

    sync = runner.sync if runner.needs_sync() else None
    return run_loop(call, sync, config=config, event_factory=runner.event_factory(), progress=progress)


def closed_loop_outcome(loop: LoopOutcome, rules: Rules, config: LoopConfig) -> ScenarioOutcome:
    """Headline (the rules' percentile of query latency, with its CI) and verdict
    of a closed-loop run (single- or multi-stream)."""
    out = from_loop(loop, gc_disabled=not config.keep_gc)
    assert rules.percentile is not None
    out.headline = latency_headline(out.samples_s, rules.percentile)
    notes = []
    if out.block_size > 1:
        notes.append(
            f"calls were timed in blocks of {out.block_size}: percentiles and early stopping are over block means"
        )
    hint = "raise --max-time" if config.max_time_s < rules.min_duration_s else "raise --max-time or --min-iters"
    out.verdict = judge(
        rules, duration_s=out.measure_s, queries=loop.n_calls, latencies_s=out.samples_s,
        longer_hint=hint, failure=failure_text(out),
    )
    out.details = {"target_percentile": rules.percentile, "min_duration_s": rules.min_duration_s,
                   "min_queries": rules.min_queries, "notes": notes}
    return out
