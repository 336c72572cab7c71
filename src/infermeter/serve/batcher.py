"""Dynamic batching: requests wait in a queue and ride to the model together.

One batcher task on the event loop takes the first waiting request, then more
of the same kind until the batch holds ``max_batch`` rows or ``max_wait_ms``
has passed since the first one arrived, and hands the batch to ``execute`` (a
coroutine that runs the model off the event loop). At most ``concurrency``
batches are in flight, one per worker; while every worker is busy requests pile
up, so the next batch is fuller: the batcher only forms a batch once a worker
can take it.

Requests batch together when their inputs agree in everything but the rows:
same names, dtypes and non-batch dims (two ``seq`` lengths run separately). A
request larger than ``max_batch`` rows runs alone. If a batch fails, each of
its requests is run again alone, so one bad request fails only itself; if the
model's outputs cannot be split back by rows, batching is turned off.

The clock is injected (``perf_counter_ns`` by default): queue time is measured
from a request's arrival to its batch's dispatch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

import numpy as np

__all__ = ["Batcher", "BatchResult", "QueueFull", "ShuttingDown", "concat_parts", "split_rows", "call_model"]

Arrays = Mapping[str, np.ndarray]
#: Runs the model on the parts of a batch (concatenated by the worker); returns the outputs and the compute time (ns).
Execute = Callable[[Sequence[Arrays]], Awaitable[tuple[list[np.ndarray], int]]]
#: Told of every model call: rows, requests, compute time (ns), whether it succeeded.
OnBatch = Callable[[int, int, int, bool], None]


class QueueFull(Exception):
    """``max_queue`` requests are already waiting."""


class ShuttingDown(Exception):
    """The batcher no longer takes requests."""


class Unsplittable(Exception):
    """A batched output has no row axis to split back by request."""


@dataclass(frozen=True)
class BatchResult:
    outputs: list[np.ndarray]
    queue_ns: int  # arrival → dispatch of its batch
    compute_ns: int  # the batch's model call, as the worker measured it
    batch_rows: int
    batch_requests: int


class _Item:
    __slots__ = ("inputs", "rows", "key", "future", "arrived_ns")

    def __init__(self, inputs: Arrays, rows: int, key: object, future: asyncio.Future[BatchResult], arrived_ns: int):
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.future = future
        self.arrived_ns = arrived_ns


def concat_parts(parts: Sequence[Arrays]) -> dict[str, np.ndarray]:
    """One batch from request parts, along axis 0 (a single part is passed as is)."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split_rows(outputs: Sequence[np.ndarray], rows: Sequence[int]) -> list[list[np.ndarray]]:
    """Per request, its rows of every output (the inverse of :func:`concat_parts`)."""
    if len(rows) == 1:
        return [list(outputs)]
    total = sum(rows)
    for k, out in enumerate(outputs):
        if out.ndim == 0 or out.shape[0] != total:
            raise Unsplittable(f"output {k} has shape {tuple(out.shape)} for a batch of {total} rows; "
                               "batching needs one output row per input row on axis 0")
    bounds = np.cumsum(rows)[:-1]
    per_output = [np.split(out, bounds) for out in outputs]
    return [[parts[i] for parts in per_output] for i in range(len(rows))]


class Batcher:
    def __init__(
        self,
        execute: Execute,
        *,
        max_batch: int = 1,
        max_wait_ms: float = 0.0,
        max_queue: int = 1024,
        concurrency: int = 1,
        clock: Callable[[], int] = time.perf_counter_ns,
        on_batch: OnBatch | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0 or max_queue < 1 or concurrency < 1:
            raise ValueError("max_batch, max_queue and concurrency must be >= 1 and max_wait_ms >= 0")
        self.max_batch = max_batch
        self.max_wait_ns = int(max_wait_ms * 1e6)
        self.max_queue = max_queue
        self.concurrency = concurrency
        self._execute = execute
        self._clock = clock
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._held = 0  # requests taken from the queue into a batch being formed
        self._running = 0  # requests in batches at the workers
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closing = False
        self.solo = False  # set when outputs cannot be split by rows: batching off

    # ------------------------------------------------------------------ public

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a batch)."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Requests taken from the queue and not answered yet."""
        return self._held + self._running

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="infermeter-batcher")

    async def submit(self, inputs: Arrays, rows: int, *, batchable: bool = True) -> BatchResult:
        """Queue one request and wait for its share of a batch's outputs.

        Raises :class:`QueueFull` at once when ``max_queue`` requests wait, and
        :class:`ShuttingDown` once :meth:`stop` was called.
        """
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} requests are already waiting (max_queue {self.max_queue})")
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())) if batchable else None
        fut: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(inputs, rows, key, fut, self._clock()))
        self._arrived.set()
        return await fut

    async def stop(self, drain: bool = True) -> None:
        """Take no more requests; answer those queued and in flight (``drain``) or fail them."""
        self._closing = True
        if not drain:
            while self._queue:
                item = self._queue.popleft()
                if not item.future.done():
                    item.future.set_exception(ShuttingDown("the server shut down before this request ran"))
        while self._queue or self._held or self._tasks:
            await asyncio.sleep(0.005)
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None

    # ------------------------------------------------------------------ the batcher task

    async def _run(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                items = await self._collect()
            except BaseException:
                self._slots.release()
                raise
            self._held = 0
            self._running += len(items)
            task = asyncio.get_running_loop().create_task(self._dispatch(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _collect(self) -> list[_Item]:
        first = await self._first()
        items, rows = [first], first.rows
        self._held = 1
        if self.solo or first.key is None:  # nothing may join it: do not wait
            return items
        deadline = first.arrived_ns + self.max_wait_ns
        while rows < self.max_batch:
            item = self._take(first.key, self.max_batch - rows)
            if item is not None:
                items.append(item)
                rows += item.rows
                self._held += 1
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining / 1e9)
            except asyncio.TimeoutError:
                pass
        return items

    async def _first(self) -> _Item:
        while True:
            while self._queue:
                item = self._queue.popleft()
                if not item.future.done():  # its client went away
                    return item
            self._arrived.clear()
            await self._arrived.wait()

    def _take(self, key: object, room: int) -> _Item | None:
        for i, item in enumerate(self._queue):
            if item.key is not None and item.key == key and item.rows <= room and not item.future.done():
                del self._queue[i]
                return item
        return None

    async def _dispatch(self, items: list[_Item]) -> None:
        try:
            if len(items) > 1:
                try:
                    await self._call(items)
                except Exception:
                    for item in items:  # one bad request fails only itself
                        if not item.future.done():
                            await self._call_quietly([item])
            else:
                await self._call_quietly(items)
        finally:
            self._running -= len(items)
            self._slots.release()

    async def _call_quietly(self, items: list[_Item]) -> None:
        try:
            await self._call(items)
        except Exception as exc:
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)

    async def _call(self, items: list[_Item]) -> None:
        try:
            results = await call_model(self._execute, items, self._clock, self._on_batch)
        except Unsplittable:
            self.solo = True
            raise
        for item, result in zip(items, results):
            if not item.future.done():
                item.future.set_result(result)


async def call_model(execute: Execute, items: Sequence[Any], clock: Callable[[], int],
                     on_batch: OnBatch | None) -> list[BatchResult]:
    """One model call on ``items`` (each with ``inputs``, ``rows``, ``arrived_ns``), for either batcher:
    each item's share of the outputs, with its queue and compute time. The call is counted in
    ``on_batch`` whether it succeeds or raises; :class:`Unsplittable` when the outputs cannot be
    split by rows (the caller then stops batching)."""
    rows = [it.rows for it in items]
    start = clock()
    try:
        outputs, compute_ns = await execute([it.inputs for it in items])
        shares = split_rows(outputs, rows)
    except Exception:
        if on_batch is not None:
            on_batch(sum(rows), len(items), clock() - start, False)
        raise
    if on_batch is not None:
        on_batch(sum(rows), len(items), compute_ns, True)
    return [BatchResult(share, start - it.arrived_ns, compute_ns, sum(rows), len(items)) for it, share in zip(items, shares)]
