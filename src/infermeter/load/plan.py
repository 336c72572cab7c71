"""Capacity planning by simulation: how many replicas a rate needs under an SLO.

``plan`` simulates the server of ``load.queueing`` (a shared FIFO queue, dynamic
batching, a cache hit ratio, R replicas, service times resampled from measured
samples per batch size) at the target rate for R = 1, 2, ... and returns the
fewest replicas whose simulated latency meets the SLO.

Service times measured by ``bench`` hold the model call only. A request to a
real server also spends time outside the model's queue: sending, the network,
reading and parsing the body, encoding and sending the answer, the client
reading it: a few milliseconds per request for ``zoo:bert-mini`` behind
``infermeter serve`` on a 2-core machine (benchmarks/plan_accuracy.py), which
the model-only samples miss. ``overhead_s`` adds such a constant to every
request (``infermeter plan --overhead-ms``), and :func:`calibrate_overhead`
measures it from a load run at a low rate (``infermeter plan --calibrate
RUN``): the run's median latency minus the median the simulation predicts for
that run's rate without overhead. At a low rate there is little queueing, so
the difference is what the server and the network add, and also how much
slower the model ran inside the server than under ``bench`` at that rate (on a
shared 2-core VM, model calls spaced 100 ms apart took ~20% longer than
back-to-back ones), which is why the constant is measured, not assumed. A run
at a high rate would fold the queueing model's own error into the overhead,
so the calibration says so when the run was above ``CALIBRATE_MAX_LOAD`` of
capacity.

The simulator lives in ``load.queueing``; its names are re-exported here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from ..result import Result
from ..stats._base import _ms
from .queueing import (ServiceModel, SimOutcome, _check_sim_args, _check_stat, _stat, latency_curve, service_from_results,
                       simulate)

__all__ = [
    "ServiceModel",
    "service_from_results",
    "SimOutcome",
    "simulate",
    "latency_curve",
    "PlanResult",
    "plan",
    "parse_slo",
    "Calibration",
    "calibrate_overhead",
    "overhead_from_result",
    "CALIBRATE_MAX_LOAD",
]

CALIBRATE_MAX_LOAD = 0.3  # a calibration run above this share of capacity gets a note


# ---------------------------------------------------------------- SLOs


_SLO = re.compile(r"^\s*(mean|p\d+(?:\.\d+)?)\s*<=?\s*(\d+(?:\.\d*)?(?:e[-+]?\d+)?)\s*(ms|us|µs|s)\s*$", re.I)
_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def parse_slo(text: str) -> tuple[str, float]:
    """``'p99<50ms'`` -> ``('p99', 0.05)``: a statistic and its bound in seconds."""
    mt = _SLO.match(text)
    if not mt:
        raise UsageError(f"cannot read SLO {text!r}: write it as STAT<VALUE UNIT, e.g. 'p99<50ms' or 'mean<=2ms'")
    stat = mt.group(1).lower()
    _check_stat(stat)
    return stat, float(mt.group(2)) * _UNIT[mt.group(3).lower()]


# ---------------------------------------------------------------- planning



@dataclass
class PlanResult:
    """Replicas needed for ``rate`` under ``slo``; ``rows`` are the replica counts simulated, ascending."""

    rate: float
    slo: tuple[str, float]
    replicas_needed: int | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan(
    service: ServiceModel,
    rate: float,
    slo: tuple[str, float],
    *,
    max_batch: int = 1,
    max_wait_s: float = 0.0,
    cache_hit_ratio: float = 0.0,
    cache_hit_s: float = 0.0,
    max_replicas: int = 256,
    n_requests: int = 50_000,
    seed: int = 0,
    extrapolate: bool = False,
    overhead_s: float = 0.0,
) -> PlanResult:
    """The fewest replicas whose simulated latency meets ``slo`` (stable, and the statistic under its bound).

    Starts at the fewest replicas with the capacity for the miss rate
    (``ceil(rate x misses / (max_batch / mean service(max_batch)))``: the mean,
    because capacity is total work over time), then tries R+1, R+2, R+4 ...
    and bisects between the last failure and the first success, so an SLO no
    replica count can meet costs a few simulations, not hundreds. Every count
    uses the same seed, so the rows differ by the replica count alone. The row
    for R-1 is always there to show it fails. ``overhead_s`` is added to every
    request's latency (see the module docstring).
    """
    stat, bound = slo
    p = _check_stat(stat)
    stat = "mean" if p is None else (str(stat).strip().lower() if isinstance(stat, str) else f"p{p:g}")
    if not (math.isfinite(bound) and bound > 0):
        raise UsageError(f"the SLO bound must be a positive number of seconds, got {bound!r}")
    if int(max_replicas) != max_replicas or max_replicas < 1:
        raise UsageError(f"max replicas must be a whole number >= 1, got {max_replicas!r}")
    kw: dict[str, Any] = dict(
        max_batch=max_batch, max_wait_s=max_wait_s, cache_hit_ratio=cache_hit_ratio, cache_hit_s=cache_hit_s,
        n_requests=n_requests, seed=seed, extrapolate=extrapolate, overhead_s=overhead_s,
    )
    _check_sim_args(service, rate, 1, max_batch, max_wait_s, cache_hit_ratio, cache_hit_s,
                    n_requests, "poisson", 0.1, extrapolate, overhead_s)
    per_replica = service.throughput(max_batch)
    miss_rate = rate * (1.0 - cache_hit_ratio)
    r0 = max(1, math.ceil(miss_rate / per_replica)) if math.isfinite(per_replica) else 1
    notes = [
        f"one replica serves at most {per_replica:,.0f} requests/s (batches of {max_batch}, "
        f"mean service {_ms(service.mean(max_batch))}); {miss_rate:,.0f} requests/s reach the queue",
        f"each replica count: {n_requests:,} simulated Poisson arrivals, seed {seed}, first 10% left out",
    ]
    if overhead_s > 0:
        notes.append(f"every request also pays {_ms(overhead_s)} outside the model's queue (HTTP, parsing, network)")
    notes += _model_notes(service, max_batch, stat, cache_hit_ratio)
    out = PlanResult(rate=float(rate), slo=(stat, float(bound)), replicas_needed=None, notes=notes)
    if r0 > max_replicas:
        notes.append(f"capacity alone needs {r0} replicas, above the limit of {max_replicas}: raise it")
        return out

    tried: dict[int, dict[str, Any]] = {}

    def meets(r: int) -> bool:
        if r not in tried:
            o = simulate(service, rate, replicas=r, **kw)
            value = o.stat(stat)
            tried[r] = {
                "replicas": r, "p50": o.p50, "p99": o.p99, stat: value, "utilisation": o.utilisation,
                "mean_batch": o.mean_batch, "stable": o.stable, "meets": bool(o.stable and value <= bound),
            }
        return bool(tried[r]["meets"])

    fail, r, step = r0 - 1, r0, 1
    while not meets(r):
        fail = r
        if r >= max_replicas:
            break
        r, step = min(r + step, max_replicas), step * 2
    if tried[r]["meets"]:
        while r - fail > 1:  # bisect: fail fails, r meets
            mid = (fail + r) // 2
            if meets(mid):
                r = mid
            else:
                fail = mid
        if r > 1:
            meets(r - 1)
        out.replicas_needed = r
    else:
        notes.append(
            f"even {max_replicas} replicas do not meet {stat} < {_ms(bound)}: the bound is below what a request "
            "takes without queueing (lower max wait or batch, or relax the SLO), or raise the replica limit"
        )
    out.rows = [tried[k] for k in sorted(tried)]
    return out


def _model_notes(service: ServiceModel, max_batch: int, stat: str, hit_ratio: float) -> list[str]:
    notes = []
    if max_batch > service.largest:
        notes.append(
            f"batches above {service.largest} rows were not measured: their service times are extrapolated "
            "linearly from the largest measured sizes"
        )
    if service.batch_sizes[0] > 1:
        notes.append(
            f"batches under {service.batch_sizes[0]} rows were not measured: they are timed as "
            f"{service.batch_sizes[0]} rows (conservative)"
        )
    p = _check_stat(stat)
    if p is not None and hit_ratio > 0 and hit_ratio * 100 >= p:
        notes.append(
            f"with {hit_ratio:.0%} cache hits, {stat} is a cache hit's latency: the SLO says nothing about misses"
        )
    return notes


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """A per-request overhead measured from a load run: ``measured_s`` minus ``simulated_s`` (the run's
    ``stat`` and the simulation's at the run's rate without overhead), floored at 0."""

    overhead_s: float
    stat: str
    measured_s: float
    simulated_s: float
    rate: float
    requests: int
    offered_load: float
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"overhead {_ms(self.overhead_s)} per request: measured {self.stat} {_ms(self.measured_s)} at "
                f"{self.rate:,.4g} requests/s ({self.requests:,} requests{', ' + self.source if self.source else ''}) "
                f"minus simulated {_ms(self.simulated_s)}")


def calibrate_overhead(
    service: ServiceModel,
    latencies: Sequence[float] | np.ndarray,
    rate: float,
    *,
    stat: str = "p50",
    max_batch: int = 1,
    max_wait_s: float = 0.0,
    cache_hit_ratio: float = 0.0,
    cache_hit_s: float = 0.0,
    n_requests: int = 50_000,
    seed: int = 0,
    extrapolate: bool = False,
    source: str = "",
) -> Calibration:
    """The time a served request spends outside the model's queue, from latencies measured at ``rate``.

    ``latencies`` (s) are a load run's, from the intended send time, against a
    server with the same batching and cache settings given here. The overhead
    is the run's ``stat`` (the median by default: robust, and least touched by
    queueing) minus the simulated one at the same rate; 0 when the simulation is
    already slower (the notes say so: the service samples are slower than the
    server's model calls).
    """
    x = np.asarray(latencies, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 20:
        raise UsageError(f"calibrating needs the latencies of at least 20 requests, got {x.size}; run the load longer")
    p = _check_stat(stat)
    name = "mean" if p is None else f"p{p:g}"
    o = simulate(service, rate, max_batch=max_batch, max_wait_s=max_wait_s, cache_hit_ratio=cache_hit_ratio,
                 cache_hit_s=cache_hit_s, n_requests=n_requests, seed=seed, extrapolate=extrapolate)
    measured = _stat(x, name)
    simulated = o.stat(name)
    notes: list[str] = []
    if o.offered_load > CALIBRATE_MAX_LOAD:
        notes.append(f"the calibration run offered {o.offered_load:.0%} of capacity: above {CALIBRATE_MAX_LOAD:.0%} "
                     "its queueing is in the overhead too; calibrate from a run at a lower rate")
    if measured < simulated:
        notes.append(f"the run's {name} ({_ms(measured)}) is below the simulated {_ms(simulated)}: the service samples "
                     "are slower than the server's model calls (another machine or thread setting?); overhead 0")
    return Calibration(overhead_s=max(0.0, measured - simulated), stat=name, measured_s=measured, simulated_s=simulated,
                       rate=float(rate), requests=int(x.size), offered_load=o.offered_load, source=source, notes=notes)


def overhead_from_result(service: ServiceModel, result: Result, **kw: Any) -> Calibration:
    """:func:`calibrate_overhead` from a stored open-loop load run (``infermeter load URL --rate R``).

    The rate is the one the run's seeded schedule realised (``scheduled_rate``),
    else the rate asked for; the latencies are its kept samples, or only its
    percentiles when it kept none (then ``stat`` must be one the result holds).
    """
    if result.scenario != "load-open":
        raise UsageError(f"calibrate from an open-loop load run (infermeter load URL --rate R), not a "
                         f"{result.scenario} result ({result.id})")
    if result.status != "ok" or result.latency is None:
        raise UsageError(f"run {result.id} has no latencies to calibrate from ({result.error or result.status})")
    d = result.scenario_details or {}
    rate = d.get("scheduled_rate") or d.get("offered_rate")
    if not rate:
        raise UsageError(f"run {result.id} does not say the rate it offered; calibrate from an open-loop run with --rate")
    src = f"run {result.id}"
    lat = result.latency
    if lat.samples:
        return calibrate_overhead(service, lat.samples, float(rate), source=src, **kw)
    stat = str(kw.pop("stat", "p50"))
    est = getattr(lat, stat, None) if stat != "mean" else lat.mean
    if est is None:
        raise UsageError(f"run {result.id} kept no samples and no {stat}; calibrate with p50, p90, p99 or mean")
    # a stand-in sample whose every percentile is the stored figure
    return calibrate_overhead(service, np.full(max(lat.count, 20), est.value), float(rate), stat=stat, source=src, **kw)
