"""Single-stream: one query at a time, the next issued when the last completes.

The prepared batches are made before timing starts and cycled, so input
conversion and host→device copies are outside the timed region; a timed call is
``runner(prepared) + runner.sync()``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ..models.base import Runner
from ..timing.loop import LoopConfig, LoopOutcome, run_loop

__all__ = ["NAME", "run_single_stream"]

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
