"""The scenario settings ``bench()`` takes, validated once, at construction.

A setting that belongs to another scenario is a usage error rather than
silently ignored (``--qps`` with single-stream says so), and every default that
depends on the scenario is resolved here and recorded: requested and effective
settings both go into ``Result.config`` (LoadGen logs both).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..errors import UsageError
from .multi_stream import DEFAULT_SAMPLES_PER_QUERY
from .verdict import DEFAULT_MIN_DURATION_S, DEFAULT_MIN_QUERIES, DEFAULT_PERCENTILE

__all__ = ["SCENARIOS", "ScenarioSettings", "scenario_settings"]

SCENARIOS = ("single-stream", "multi-stream", "offline", "server")
DEFAULT_MAX_BATCH = 1
DEFAULT_PEAK_STEPS = 8
DEFAULT_PEAK_TIME_S = 180.0


@dataclass(frozen=True)
class ScenarioSettings:
    """Effective settings (scenario defaults filled in). Times in seconds."""

    scenario: str = "single-stream"
    samples_per_query: int = DEFAULT_SAMPLES_PER_QUERY
    offline_samples: int | None = None
    qps: float | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_s: float = 0.0
    latency_bound_s: float | None = None
    target_percentile: float = 90.0
    min_duration_s: float = 0.0
    min_queries: int = 100
    find_peak: bool = False
    peak_steps: int = DEFAULT_PEAK_STEPS
    peak_time_s: float = DEFAULT_PEAK_TIME_S

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


def _num(flag: str, v: Any, *, low: float = 0.0, strict: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or not math.isfinite(v):
        raise UsageError(f"{flag} must be a finite number, got {v!r}")
    if (v <= low) if strict else (v < low):
        raise UsageError(f"{flag} must be {'above' if strict else 'at least'} {low:g}, got {v!r}")
    return float(v)


def _int(flag: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise UsageError(f"{flag} must be a whole number >= {low}, got {v!r}")
    return int(v)


def scenario_settings(
    scenario: str = "single-stream",
    *,
    batch_sizes: Sequence[int] = (1,),
    samples_per_query: int | None = None,
    offline_samples: int | None = None,
    qps: float | None = None,
    max_batch: int | None = None,
    max_wait_ms: float | None = None,
    latency_bound_ms: float | None = None,
    target_percentile: float | None = None,
    min_duration_s: float | None = None,
    min_queries: int | None = None,
    find_peak: bool = False,
    peak_steps: int | None = None,
    peak_time_s: float | None = None,
    max_time_s: float = 30.0,
) -> ScenarioSettings:
    """Check the scenario keywords of ``bench()`` and fill in the scenario's defaults.

    ``min_duration_s=None``: 5 s for server and offline (LoadGen's default is 10 s;
    5 s suits a command line); for single- and multi-stream, the timing loop's
    own ``min_time_s`` (their adaptive stop decides the length), i.e. no extra
    minimum. Given explicitly, it also becomes the closed-loop scenarios' minimum
    measuring time.
    """
    name = str(scenario).strip().lower().replace("_", "-")
    if name not in SCENARIOS:
        raise UsageError(f"unknown scenario '{scenario}'; use one of: {', '.join(SCENARIOS)}")
    server, offline, multi = name == "server", name == "offline", name == "multi-stream"

    def only(flag: str, value: Any, ok: bool, where: str, fix: str) -> None:
        if value is not None and value is not False and not ok:
            raise UsageError(f"{flag} applies to {where}, not {name}; {fix} or drop {flag}")

    only("--qps", qps, server, "the server scenario", "add --scenario server")
    only("--max-batch", max_batch, server, "the server scenario", "add --scenario server")
    only("--max-wait-ms", max_wait_ms, server, "the server scenario", "add --scenario server")
    only("--latency-bound-ms", latency_bound_ms, server, "the server scenario", "add --scenario server")
    only("--samples-per-query", samples_per_query, multi, "the multi-stream scenario", "add --scenario multi-stream")
    only("--offline-samples", offline_samples, offline, "the offline scenario", "add --scenario offline")
    if find_peak and not server:
        raise UsageError("--find-peak searches the server scenario's highest QPS; add --scenario server")
    only("--peak-steps", peak_steps, find_peak, "--find-peak", "add --find-peak")
    only("--peak-time", peak_time_s, find_peak, "--find-peak", "add --find-peak")
    if multi and list(batch_sizes) != [1]:
        raise UsageError(
            "multi-stream sets the batch of a query with --samples-per-query; drop --batch "
            f"(got {','.join(str(b) for b in batch_sizes)})"
        )

    kw: dict[str, Any] = {"scenario": name}
    if qps is not None:
        kw["qps"] = _num("--qps", qps)
    elif server and not find_peak:
        raise UsageError("the server scenario needs --qps (queries per second), or --find-peak to search for the highest")
    if samples_per_query is not None:
        kw["samples_per_query"] = _int("--samples-per-query", samples_per_query, 1)
    if offline_samples is not None:
        kw["offline_samples"] = _int("--offline-samples", offline_samples, 1)
    if max_batch is not None:
        kw["max_batch"] = _int("--max-batch", max_batch, 1)
    if max_wait_ms is not None:
        kw["max_wait_s"] = _num("--max-wait-ms", max_wait_ms, strict=False) / 1e3
    if latency_bound_ms is not None:
        kw["latency_bound_s"] = _num("--latency-bound-ms", latency_bound_ms) / 1e3
    if find_peak and latency_bound_ms is None:
        raise UsageError("--find-peak needs --latency-bound-ms: the peak is the highest QPS that stays within it")
    if target_percentile is not None:
        p = _num("--target-percentile", target_percentile)
        if not p < 100:
            raise UsageError(f"--target-percentile must be between 0 and 100 (e.g. 99), got {target_percentile!r}")
        if offline:
            raise UsageError("--target-percentile does not apply to offline (its headline is throughput)")
        kw["target_percentile"] = p
    else:
        kw["target_percentile"] = DEFAULT_PERCENTILE.get(name, 99.0)
    if min_duration_s is not None:
        kw["min_duration_s"] = _num("--min-duration", min_duration_s, strict=False)
    else:
        kw["min_duration_s"] = DEFAULT_MIN_DURATION_S if (server or offline) else 0.0
    kw["min_queries"] = (
        _int("--min-queries", min_queries, 0) if min_queries is not None else DEFAULT_MIN_QUERIES[name]
    )
    kw["find_peak"] = bool(find_peak)
    if peak_steps is not None:
        kw["peak_steps"] = _int("--peak-steps", peak_steps, 1)
    if peak_time_s is not None:
        kw["peak_time_s"] = _num("--peak-time", peak_time_s)
    _num("--max-time", max_time_s)
    return ScenarioSettings(**kw)
