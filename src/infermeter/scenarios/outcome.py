"""What every scenario hands back to ``bench()``: raw samples plus the scenario's
own figures (headline, verdict, details), so one function builds the Result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import ModelRunError
from ..result import Headline, Throughput, Verdict
from ..stats import percentile, percentile_ci
from ..timing.loop import LoopOutcome

__all__ = ["ScenarioOutcome", "from_loop", "latency_headline", "failure_text"]


def _empty() -> npt.NDArray[np.float64]:
    return np.zeros(0, dtype=np.float64)


@dataclass
class ScenarioOutcome:
    """One scenario run. ``samples_s`` are the latencies ``Result.latency`` is
    computed from (per query; per batch for offline; per block where calls were
    timed in blocks). ``throughput`` None means "batch / mean latency" (one stream)."""

    samples_s: npt.NDArray[np.float64]
    per: Literal["call", "block"] = "call"
    block_size: int = 1
    first_call_s: float | None = None
    warmup_iters: int = 0
    warmup_samples_s: npt.NDArray[np.float64] = field(default_factory=_empty)
    warmup_s: float = 0.0
    measure_s: float = 0.0
    stop_reason: str = ""
    timer_overhead_s: float | None = None
    gc_collections: int = 0
    gc_disabled: bool = True
    clock: str = "host"
    device_host_ratio: float | None = None
    error: ModelRunError | None = None
    interrupted: bool = False
    throughput: Throughput | None = None
    headline: Headline | None = None
    verdict: Verdict | None = None
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    loop: LoopOutcome | None = None  # the closed-loop scenarios' raw outcome

    @property
    def n_samples(self) -> int:
        return int(self.samples_s.size)


def from_loop(outcome: LoopOutcome, gc_disabled: bool) -> ScenarioOutcome:
    """A closed-loop (single-/multi-stream) loop outcome as a scenario outcome."""
    return ScenarioOutcome(
        samples_s=np.asarray(outcome.samples_s, dtype=np.float64),
        per="block" if outcome.block_size > 1 else "call",
        block_size=outcome.block_size,
        first_call_s=outcome.first_call_s,
        warmup_iters=outcome.warmup_iters,
        warmup_samples_s=np.asarray(outcome.warmup_samples_s, dtype=np.float64),
        warmup_s=outcome.warmup_s,
        measure_s=outcome.measure_s,
        stop_reason=outcome.stop_reason,
        timer_overhead_s=outcome.timer_overhead_s,
        gc_collections=outcome.gc_collections,
        gc_disabled=gc_disabled,
        clock=outcome.clock,
        device_host_ratio=outcome.device_host_ratio,
        error=outcome.error,
        interrupted=outcome.interrupted,
        loop=outcome,
    )


def latency_headline(samples_s: npt.ArrayLike, p: float, confidence: float = 0.95) -> Headline | None:
    """``p{p} latency`` (nearest rank) with its distribution-free CI; None without samples."""
    x = np.asarray(samples_s, dtype=np.float64)
    if x.size == 0:
        return None
    lo, hi = percentile_ci(x, p, confidence)
    return Headline(metric=f"p{p:g} latency", value=percentile(x, p), unit="s", ci_low=lo, ci_high=hi)


def failure_text(outcome: ScenarioOutcome) -> str | None:
    """Why a run has no trustworthy result, or None when it finished."""
    if outcome.error is not None:
        return str(outcome.error)
    if outcome.interrupted:
        return "interrupted (Ctrl-C)"
    if not outcome.n_samples:
        return "no samples were measured"
    return None
