"""What the server counts, twice: Prometheus text for scrapers, totals as JSON for ``/stats``.

Both read the same events, recorded by the request handlers and the batcher:
a request answered (status, latency), a request's wait in the queue and its
batch's compute time, a model call (rows, requests), a cache lookup. Each app
has its own Prometheus registry (no process-wide globals), so two servers in
one process, as in the tests, do not mix their counts.

Times are seconds. Queue time runs from a request's arrival at the batcher to
its batch's dispatch; compute time is the batch's model call as the worker
measured it; latency is the whole request inside the server (read, parse,
queue, compute, encode). What latency holds beyond queue + compute is the
server's own overhead (parsing, hand-off to the worker, IPC for processes).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _Total:
    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds

    def json(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "mean": self.total / self.count if self.count else None}


class ServeMetrics:
    def __init__(self, model: str) -> None:
        from prometheus_client import CollectorRegistry, Counter as PCounter, Gauge, Histogram

        self.model = model
        self.started = time.time()
        self.registry = CollectorRegistry()
        reg, lab = self.registry, ["model"]
        self._requests = PCounter("infermeter_requests", "Infer requests answered, by HTTP status", ["model", "status"], registry=reg)
        self._latency = Histogram("infermeter_request_latency_seconds", "Infer request time inside the server",
                                  lab, buckets=_LATENCY_BUCKETS, registry=reg)
        self._queue = Histogram("infermeter_queue_time_seconds", "Time a request waited for its batch to be dispatched",
                                lab, buckets=_LATENCY_BUCKETS, registry=reg)
        self._compute = Histogram("infermeter_compute_time_seconds", "Model call time per batch (as the worker measured it)",
                                  lab, buckets=_LATENCY_BUCKETS, registry=reg)
        self._batch = Histogram("infermeter_batch_size", "Rows per model call (realised batch size)",
                                lab, buckets=_BATCH_BUCKETS, registry=reg)
        self._batch_requests = Histogram("infermeter_batch_requests", "Requests per model call",
                                         lab, buckets=_BATCH_BUCKETS, registry=reg)
        self._batch_failures = PCounter("infermeter_batch_failures", "Model calls that raised", lab, registry=reg)
        self._hits = PCounter("infermeter_cache_hits", "Requests answered from the response cache", lab, registry=reg)
        self._misses = PCounter("infermeter_cache_misses", "Cache lookups that found nothing", lab, registry=reg)
        self._gauges = (Gauge("infermeter_queue_depth", "Requests waiting for a batch", lab, registry=reg),
                        Gauge("infermeter_in_flight_requests", "Requests inside the server", lab, registry=reg))
        self.in_flight = 0
        self.by_status: Counter[int] = Counter()
        self.latency = _Total()
        self.queue_time = _Total()
        self.compute_time = _Total()  # per request: its batch's call
        self.batch_compute = _Total()  # per model call
        self.batch_sizes: Counter[int] = Counter()
        self.batch_rows = 0
        self.batch_failures = 0

    def bind_depth(self, depth: Callable[[], int]) -> None:
        """Read the queue depth from the batcher when scraped."""
        self._gauges[0].labels(self.model).set_function(lambda: float(depth()))
        self._gauges[1].labels(self.model).set_function(lambda: float(self.in_flight))

    # ------------------------------------------------------------------ events

    def answered(self, status: int, seconds: float) -> None:
        self.by_status[status] += 1
        self.latency.add(seconds)
        self._requests.labels(self.model, str(status)).inc()
        self._latency.labels(self.model).observe(seconds)

    def queued(self, queue_s: float, compute_s: float) -> None:
        self.queue_time.add(queue_s)
        self.compute_time.add(compute_s)
        self._queue.labels(self.model).observe(queue_s)

    def batch(self, rows: int, requests: int, compute_ns: int, ok: bool) -> None:
        if not ok:
            self.batch_failures += 1
            self._batch_failures.labels(self.model).inc()
            return
        self.batch_sizes[rows] += 1
        self.batch_rows += rows
        self.batch_compute.add(compute_ns / 1e9)
        self._compute.labels(self.model).observe(compute_ns / 1e9)
        self._batch.labels(self.model).observe(rows)
        self._batch_requests.labels(self.model).observe(requests)

    def cache_lookup(self, hit: bool) -> None:
        (self._hits if hit else self._misses).labels(self.model).inc()

    # ------------------------------------------------------------------ outputs

    def prometheus(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def json(self) -> dict[str, Any]:
        batches = self.batch_compute.count
        ok = sum(n for s, n in self.by_status.items() if s < 400)
        return {
            "uptime_s": time.time() - self.started,
            "requests": {"total": sum(self.by_status.values()), "ok": ok,
                         "by_status": {str(s): n for s, n in sorted(self.by_status.items())},
                         "in_flight": self.in_flight},
            "latency_s": self.latency.json(),
            "queue_time_s": self.queue_time.json(),
            "compute_time_s": self.compute_time.json(),
            "batches": {
                "count": batches, "failed": self.batch_failures, "rows": self.batch_rows,
                "mean_rows": self.batch_rows / batches if batches else None,
                "size_histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                "compute_time_s": self.batch_compute.json(),
            },
        }
