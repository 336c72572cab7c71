"""The queueing model under ``infermeter plan``: service times per batch size, and a simulated server.

A sweep of batch sizes says how long one batch takes; it does not say what p99
a server sees at 5,000 requests/s, because that is mostly queueing, and
queueing depends on the whole distribution of service times, the batching
policy and the number of replicas. Closed forms exist only for the textbook
cases (M/M/1, M/D/1, M/M/c), so this module simulates: a discrete-event model
of a shared FIFO queue served by ``replicas`` identical servers that batch the
way ``serve/batcher.py`` does (a free server takes up to ``max_batch`` waiting
requests once that many wait or the oldest has waited ``max_wait_s``), fed by
Poisson (or evenly spaced) arrivals, with a fraction of requests answered by a
cache before they reach the queue. The tests check it against those closed
forms.

A request to a real server also spends time outside the model's queue: the
client sending it, the network, the server reading, parsing and validating it,
encoding and sending the answer. That is ``overhead_s``, a constant added to
every request's latency, hit or miss (``load.plan.calibrate_overhead`` measures
it from a low-rate load run). It is kept outside the queue: parsing happens on
the event loop while the model computes, and a constant delay of a Poisson
stream is still a Poisson stream, so it moves every percentile by the same
amount and leaves the queueing alone.

Service times are resampled from the measured samples (a bootstrap), so a
heavy tail measured at a batch size is kept, not smoothed into a mean.
Statistics go through ``stats`` (nearest-rank percentiles) like every other
figure.
"""

from __future__ import annotations

import heapq
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import UsageError
from ..result import LatencyStats, Result
from ..stats import describe_latency, percentile
from ..stats._base import _ms

__all__ = ["ServiceModel", "service_from_results", "SimOutcome", "simulate", "latency_curve", "ARRIVALS"]

_F64 = npt.NDArray[np.float64]
ARRIVALS = ("poisson", "constant")
GROWTH_RATIO = 1.5  # second half's mean wait over the first half's above this ...
GROWTH_BATCHES = 5  # ... and by more than this many full batches' service time: the queue was still growing


# ---------------------------------------------------------------- service model


@dataclass(frozen=True, eq=False)
class ServiceModel:
    """Service time samples (s) per measured batch size, and how to get one for any batch.

    A measured batch size is resampled as is. Between two measured sizes the
    median is interpolated linearly in the batch size and a resampled draw of
    the nearest measured size is scaled to it, which keeps that size's spread.
    Below the smallest measured size a batch costs as much as the smallest (as
    if padded to it: conservative). Above the largest the two largest medians
    are extrapolated linearly (time proportional to rows with one size); only
    when the caller allows it (``extrapolate=True``).
    """

    samples: dict[int, np.ndarray]
    source: str = ""
    _cache: dict[int, tuple[_F64, float]] = field(default_factory=dict, init=False, repr=False)
    _medians: dict[int, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.samples:
            raise UsageError("a service model needs service time samples for at least one batch size")
        clean: dict[int, _F64] = {}
        for b, s in sorted(self.samples.items()):
            if int(b) != b or b < 1:
                raise UsageError(f"batch sizes must be positive integers, got {b!r}")
            x = np.asarray(s, dtype=np.float64).ravel()
            if x.size == 0 or not np.all(np.isfinite(x)) or np.any(x < 0):
                raise UsageError(f"service times for batch {b} must be finite, non-negative and not empty")
            clean[int(b)] = x
        object.__setattr__(self, "samples", clean)
        self._medians.update({b: float(np.median(x)) for b, x in clean.items()})

    @property
    def batch_sizes(self) -> list[int]:
        return list(self.samples)

    @property
    def largest(self) -> int:
        return max(self.samples)

    def median(self, batch: int) -> float:
        """Modelled median service time of a batch of ``batch`` rows (s)."""
        src, scale = self._source(batch)
        return float(np.median(src)) * scale

    def mean(self, batch: int) -> float:
        """Modelled mean service time (s): what capacity is made of (total work over time)."""
        src, scale = self._source(batch)
        return float(np.mean(src)) * scale

    def throughput(self, batch: int) -> float:
        """Rows/s one replica serves when every batch has ``batch`` rows."""
        m = self.mean(batch)
        return math.inf if m <= 0 else batch / m

    def draw(self, batch: int, rng: np.random.Generator) -> float:
        """One service time (s) for a batch of ``batch`` rows."""
        src, scale = self._source(batch)
        return float(src[rng.integers(src.size)]) * scale

    def _target_median(self, b: int) -> float:
        sizes, med = self.batch_sizes, self._medians
        if b <= sizes[0]:
            return med[sizes[0]]
        if b >= sizes[-1]:
            if len(sizes) == 1:
                return med[sizes[-1]] * b / sizes[-1]
            b1, b2 = sizes[-2], sizes[-1]
            slope = max((med[b2] - med[b1]) / (b2 - b1), 0.0)
            return med[b2] + slope * (b - b2)
        hi = next(s for s in sizes if s >= b)
        lo = max(s for s in sizes if s <= b)
        return med[lo] + (med[hi] - med[lo]) * (b - lo) / (hi - lo)

    def _source(self, batch: int) -> tuple[_F64, float]:
        """(samples to resample, factor to scale them by) for a batch size; cached."""
        hit = self._cache.get(batch)
        if hit is not None:
            return hit
        if batch < 1:
            raise UsageError(f"a batch has at least one row, got {batch}")
        if batch in self.samples:
            out = (self.samples[batch], 1.0)
        else:
            sizes = self.batch_sizes
            near = min(sizes, key=lambda s: (abs(s - batch), -s))  # a tie goes to the larger: conservative
            if batch < sizes[0]:
                near = sizes[0]
            m = self._medians[near]
            out = (self.samples[near], self._target_median(batch) / m if m > 0 else 1.0)
        self._cache[batch] = out
        return out


def service_from_results(results: Sequence[Result]) -> ServiceModel:
    """Service times per batch size from ok results of one model (samples of equal batch sizes pooled).

    Server-scenario latencies are left out: they include queueing, which is
    what the simulation adds.
    """
    pooled: dict[int, list[np.ndarray]] = {}
    models: set[str] = set()
    skipped_server = 0
    for r in results:
        if r.status != "ok" or r.latency is None or not r.latency.samples:
            continue
        if r.scenario == "server":
            skipped_server += 1
            continue
        models.add(f"{r.model.spec} ({r.model.backend}, {r.model.device})")
        pooled.setdefault(r.batch_size, []).append(np.asarray(r.latency.samples, dtype=np.float64))
    if not pooled:
        why = (
            "server-scenario latencies include queueing" if skipped_server
            else "no ok result with latency samples was given"
        )
        raise UsageError(f"nothing to plan from: {why}; plan from a single-stream sweep (bench --batch-size 1,8,32)")
    if len(models) > 1:
        raise UsageError(f"results are from {len(models)} models ({', '.join(sorted(models))}): plan one model at a time")
    samples = {b: np.concatenate(xs) for b, xs in sorted(pooled.items())}
    counts = ", ".join(f"{b} (n={x.size})" for b, x in samples.items())
    source = f"{next(iter(models))}; batch sizes {counts}"
    if skipped_server:
        source += f"; {skipped_server} server-scenario result(s) left out"
    return ServiceModel(samples=samples, source=source)


# ---------------------------------------------------------------- simulation


@dataclass(eq=False)
class SimOutcome:
    """One simulated run at one rate. Arrays cover the measured requests (after warm-up), in arrival order.

    ``latencies`` run from arrival to completion (s), ``overhead_s`` included;
    ``hits`` marks cache hits; ``waits`` is the time a miss spent queued
    (batching wait included; 0 for hits). ``utilisation`` is the mean busy fraction of a replica over the run.
    ``stable`` is False when the offered load reaches capacity, or when the
    second half's mean wait is over 1.5x the first half's (and longer by more
    than 5 full batches' service time): the queue was still growing, and the
    percentiles then depend on how long the run was.
    """

    rate: float
    replicas: int
    max_batch: int
    max_wait_s: float
    cache_hit_ratio: float
    latencies: _F64
    utilisation: float
    mean_batch: float
    batch_histogram: dict[int, int]
    n: int
    stable: bool
    hits: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    waits: _F64 = field(default_factory=lambda: np.zeros(0))
    offered_load: float = 0.0  # miss rate over capacity (replicas x max_batch / mean service at max_batch)
    cache_hit_s: float = 0.0
    overhead_s: float = 0.0
    arrivals: str = "poisson"
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p90(self) -> float:
        return percentile(self.latencies, 90)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    @property
    def mean(self) -> float:
        return float(np.mean(self.latencies))

    @property
    def miss_latencies(self) -> _F64:
        return self.latencies[~self.hits]

    def stat(self, name: str) -> float:
        """``mean`` or a nearest-rank percentile named like ``p99``, ``p99.9``, ``p999``."""
        return _stat(self.latencies, name)

    def describe(self) -> LatencyStats:
        """Every latency figure with its CI (``stats.describe_latency``), samples not kept."""
        return describe_latency(self.latencies, keep_samples=False)


def _check_sim_args(
    service: ServiceModel, rate: float, replicas: int, max_batch: int, max_wait_s: float,
    cache_hit_ratio: float, cache_hit_s: float, n_requests: int, arrivals: str, warmup_fraction: float,
    extrapolate: bool, overhead_s: float = 0.0,
) -> None:
    if not (isinstance(rate, (int, float, np.number)) and math.isfinite(rate) and rate > 0):
        raise UsageError(f"the arrival rate must be a positive number of requests/s, got {rate!r}")
    if int(replicas) != replicas or replicas < 1:
        raise UsageError(f"replicas must be a whole number >= 1, got {replicas!r}")
    if int(max_batch) != max_batch or max_batch < 1:
        raise UsageError(f"max batch must be a whole number >= 1, got {max_batch!r}")
    if max_batch > service.largest and not extrapolate:
        raise UsageError(
            f"max batch {max_batch} is above the largest measured batch size {service.largest}: "
            f"measure batch {max_batch} too, lower the max batch, or allow linear extrapolation (--extrapolate)"
        )
    if not (math.isfinite(max_wait_s) and max_wait_s >= 0):
        raise UsageError(f"max wait must be >= 0 s, got {max_wait_s!r}")
    if not 0.0 <= cache_hit_ratio < 1.0:
        raise UsageError(f"cache hit ratio must be in [0, 1), got {cache_hit_ratio!r}")
    if not (math.isfinite(cache_hit_s) and cache_hit_s >= 0):
        raise UsageError(f"cache hit latency must be >= 0 s, got {cache_hit_s!r}")
    if not (isinstance(overhead_s, (int, float, np.number)) and math.isfinite(overhead_s) and overhead_s >= 0):
        raise UsageError(f"the per-request overhead must be >= 0 s, got {overhead_s!r}")
    if n_requests < 100:
        raise UsageError(f"simulate at least 100 requests (tens of thousands for a p99), got {n_requests}")
    if arrivals not in ARRIVALS:
        raise UsageError(f"arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")
    if not 0.0 <= warmup_fraction <= 0.5:
        raise UsageError(f"warm-up fraction must be in [0, 0.5], got {warmup_fraction!r}")


def simulate(
    service: ServiceModel,
    rate: float,
    *,
    replicas: int = 1,
    max_batch: int = 1,
    max_wait_s: float = 0.0,
    cache_hit_ratio: float = 0.0,
    cache_hit_s: float = 0.0,
    n_requests: int = 50_000,
    arrivals: str = "poisson",
    seed: int = 0,
    warmup_fraction: float = 0.1,
    extrapolate: bool = False,
    overhead_s: float = 0.0,
) -> SimOutcome:
    """Simulate ``n_requests`` arrivals at ``rate``/s; see the module and ``SimOutcome`` docstrings.

    Batching: a free replica takes up to ``max_batch`` waiting requests once
    ``max_batch`` are waiting or the oldest has waited ``max_wait_s``; until
    then it waits (a timer). Cache hits never queue: their latency is
    ``cache_hit_s``. ``overhead_s`` is added to every request, hit or miss
    (see the module docstring). The first ``warmup_fraction`` of requests (the
    queue filling from empty) is left out of every figure.
    """
    _check_sim_args(service, rate, replicas, max_batch, max_wait_s, cache_hit_ratio, cache_hit_s,
                    n_requests, arrivals, warmup_fraction, extrapolate, overhead_s)
    rng = np.random.default_rng(seed)
    n = int(n_requests)
    gaps = rng.exponential(1.0 / rate, n) if arrivals == "poisson" else np.full(n, 1.0 / rate)
    t_arr = np.cumsum(gaps)
    hit = rng.random(n) < cache_hit_ratio if cache_hit_ratio > 0 else np.zeros(n, dtype=bool)
    miss_idx = np.flatnonzero(~hit)
    arr: list[float] = t_arr[miss_idx].tolist()
    m = len(arr)
    draws: list[float] = rng.random(m).tolist()  # at most one batch per miss

    srcs: dict[int, tuple[list[float], int, float]] = {}
    for k in range(1, max_batch + 1):
        src, scale = service._source(k)
        srcs[k] = (src.tolist(), src.size, scale)

    # Misses queue FIFO, so the queue is always the index range [head, i) and a batch is a
    # contiguous run of indices: record (start, end, size) per batch, expand afterwards.
    b_start: list[float] = []
    b_end: list[float] = []
    b_size: list[int] = []
    busy: list[float] = []  # heap of completion times
    free, head, i, d = replicas, 0, 0, 0
    now, inf = 0.0, math.inf
    push, pop = heapq.heappush, heapq.heappop
    while True:
        while free and i > head:  # dispatch what the policy allows now
            q = i - head
            if q < max_batch and now < arr[head] + max_wait_s:
                break
            k = q if q < max_batch else max_batch
            src, size, scale = srcs[k]
            s = src[int(draws[d] * size)] * scale
            d += 1
            b_start.append(now)
            b_end.append(now + s)
            b_size.append(k)
            push(busy, now + s)
            head += k
            free -= 1
        t_next = arr[i] if i < m else inf
        t_done = busy[0] if busy else inf
        t_timer = arr[head] + max_wait_s if free and i > head else inf
        if t_done <= t_next and t_done <= t_timer:
            if t_done == inf:
                break
            now = pop(busy)
            free += 1
        elif t_next <= t_timer:
            now = t_next
            i += 1
        else:
            now = t_timer

    sizes = np.asarray(b_size, dtype=np.int64)
    starts = np.repeat(np.asarray(b_start), sizes)
    ends = np.repeat(np.asarray(b_end), sizes)
    arr_np = t_arr[miss_idx]
    lat = np.full(n, float(cache_hit_s))
    lat[miss_idx] = ends - arr_np
    if overhead_s:
        lat += overhead_s
    wait = np.zeros(n)
    wait[miss_idx] = starts - arr_np

    cut = int(n * warmup_fraction)
    lat_m, wait_m, hit_m = lat[cut:], wait[cut:], hit[cut:]
    # batches holding a measured request: those whose first request arrived after the cut
    first = np.cumsum(sizes) - sizes
    keep = miss_idx[first] >= cut if sizes.size else np.zeros(0, dtype=bool)
    kept = sizes[keep]
    hist = {int(b): int(c) for b, c in zip(*np.unique(kept, return_counts=True))}
    span = float(b_end[-1]) if b_end else float(t_arr[-1])
    total_busy = float(np.sum(np.asarray(b_end) - np.asarray(b_start))) if b_end else 0.0
    capacity = replicas * service.throughput(max_batch)
    offered = rate * (1.0 - cache_hit_ratio) / capacity if capacity > 0 else 0.0
    stable, why = _stability(wait_m[~hit_m], offered, service.mean(max_batch))
    notes = [why] if why else []
    return SimOutcome(
        rate=float(rate), replicas=int(replicas), max_batch=int(max_batch), max_wait_s=float(max_wait_s),
        cache_hit_ratio=float(cache_hit_ratio), latencies=lat_m,
        utilisation=total_busy / (replicas * span) if span > 0 else 0.0,
        mean_batch=float(kept.mean()) if kept.size else 0.0, batch_histogram=hist, n=int(lat_m.size),
        stable=stable, hits=hit_m, waits=wait_m, offered_load=offered, cache_hit_s=float(cache_hit_s),
        overhead_s=float(overhead_s), arrivals=arrivals, seed=seed, notes=notes,
    )


def _stability(waits: _F64, offered: float, batch_time: float) -> tuple[bool, str]:
    if offered >= 1.0:
        return False, f"offered load is {offered:.0%} of capacity: the queue grows without bound"
    if waits.size < 20:
        return True, ""
    h = waits.size // 2
    w1, w2 = float(waits[:h].mean()), float(waits[h:].mean())
    if w2 > GROWTH_RATIO * w1 and w2 - w1 > GROWTH_BATCHES * batch_time:
        return False, (
            f"the queue was still growing: mean wait {_ms(w1)} in the first half, {_ms(w2)} in the second "
            "(too close to capacity for a steady state; percentiles depend on the run's length)"
        )
    return True, ""


def latency_curve(service: ServiceModel, rates: Sequence[float], **kw: Any) -> list[SimOutcome]:
    """``simulate`` at each rate (same seed: common random numbers, so the curve is smooth)."""
    return [simulate(service, r, **kw) for r in rates]


# ---------------------------------------------------------------- statistics by name


def _check_stat(name: str | float) -> float | None:
    """The percentile a stat names (None for the mean); a bare number is a percentile; UsageError otherwise."""
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        name = f"p{name:g}"
    s = str(name).strip().lower()
    if s == "mean":
        return None
    if s == "p999":
        return 99.9
    if re.fullmatch(r"p\d+(\.\d+)?", s) and 0 < float(s[1:]) <= 100:
        return float(s[1:])
    raise UsageError(f"unknown latency statistic {name!r}: use mean or a percentile such as p50, p99, p99.9")


def _stat(latencies: _F64, name: str) -> float:
    p = _check_stat(name)
    return float(np.mean(latencies)) if p is None else percentile(latencies, p)

