"""Timing: clocks (the only code that reads time), the timed loop (first call,
warm-up until steady, blocks for short calls, adaptive stop) and peak-RSS
accounting. Nothing here imports torch; device clocks get their events from
``Runner.event_factory()``."""

from .clocks import CallFailed, Clock, CudaEventClock, HostClock, measure_timer_overhead
from .loop import STOP_REASONS, LoopConfig, LoopOutcome, run_loop
from .memory import PeakRSS

__all__ = [
    "Clock",
    "HostClock",
    "CudaEventClock",
    "CallFailed",
    "measure_timer_overhead",
    "LoopConfig",
    "LoopOutcome",
    "run_loop",
    "STOP_REASONS",
    "PeakRSS",
]
