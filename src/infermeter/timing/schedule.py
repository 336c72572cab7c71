"""Open-loop timing: arrivals at scheduled times, a queue, a batching worker.

This is the server scenario's engine and, with ``clocks.py``, the only code that
reads time for it. ``scenarios/server.py`` decides the policy (the arrival
schedule, when to stop, what the records mean); this module does the mechanics:

* **issuer** (a thread): for query ``i`` it waits until its scheduled time
  ``t0 + offsets[i]`` (:func:`wait_until`: sleep until ``spin_ns`` before it,
  then spin on ``perf_counter_ns``), stamps ``issued[i]`` and puts ``i`` on the
  queue. It never waits for the model: arrivals are open-loop, so a slow model
  cannot slow the arrivals down and hide its queueing (coordinated omission).
* **worker** (a thread): takes the first waiting query, then more until the
  batch has ``max_batch`` queries or ``max_wait_ns`` have passed since the first
  one was issued (a query that waited that long already is not held back);
  stamps ``started`` for each, calls ``call_batch(k)`` (the runner on a batch of
  ``k`` queries, synced), stamps ``done`` and the batch size for each.
* **controller** (the calling thread): every ``check_interval_s`` asks
  ``should_stop(progress)``; when it says so, or the schedule runs out, the
  issuer stops; the worker then drains what was issued (at most ``drain_s``;
  queries still queued after that are *dropped*: ``done == 0``). Ctrl-C lands
  here: both threads are stopped and the records so far are returned.

Records are per query, ns on ``perf_counter_ns`` (``DESIGN`` "Samples"):
scheduled, issued, started, done, batch size. Latency is ``done - scheduled``:
it runs from the *scheduled* arrival, so time a query spent waiting to be
issued (the issuer late) or queued (the model busy) counts.

Python threads share the GIL. The worker's model call releases it for torch and
ONNX Runtime; a pure-Python model keeps it, so the issuer can be late by up to
the interpreter's switch interval. :func:`run_open_loop` lowers that interval
(``switch_interval_s``) for the run and restores it, and disables the garbage
collector (its pauses would show as lag) unless ``keep_gc``.
"""

from __future__ import annotations

import gc
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["SPIN_NS", "wait_until", "OpenLoopProgress", "OpenLoopRecords", "run_open_loop"]

SPIN_NS = 200_000  # sleep until this long before the target, then spin: Linux sleeps overshoot by ~50-100 µs
# With a 1 µs timer slack, sleeps overshoot by ~5 µs (p99 ~20 µs, but ~80 µs at p99.x on an idle
# 2-core VM): spinning the last 100 µs took the p99 lag at 1,000 QPS from ~80 µs (50 µs spin) to
# ~25 µs, for ~10% of a core.
SPIN_NS_LOW_SLACK = 100_000
TIMER_SLACK_NS = 1_000

NowNs = Callable[[], int]


def reduce_timer_slack(slack_ns: int = TIMER_SLACK_NS) -> bool:
    """Ask Linux to wake this thread's sleeps within ``slack_ns`` (default slack:
    50 µs). Per thread, needs no privilege; False where unavailable. With it the
    issuer can sleep until 100 µs before an arrival instead of spinning for
    200 µs, which leaves the CPU (and the GIL) to the worker and keeps the
    scheduler from treating the issuer as a CPU hog to preempt."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(29, ctypes.c_ulong(slack_ns), 0, 0, 0)) == 0  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return False


def wait_until(target_ns: int, now: NowNs = time.perf_counter_ns, spin_ns: int = SPIN_NS) -> int:
    """Return at ``target_ns`` (``now``'s clock), as precisely as the host allows.

    Sleeps (releasing the GIL) until ``spin_ns`` before the target, then
    busy-waits on ``now``. Returns the first reading at or after the target, so
    the caller has its timestamp without another clock read. A target already
    past returns at once.
    """
    t = now()
    rem = target_ns - t
    if rem > spin_ns:
        time.sleep((rem - spin_ns) * 1e-9)
        t = now()
    while t < target_ns:
        t = now()
    return t


@dataclass
class OpenLoopProgress:
    """What the controller sees at each check."""

    elapsed_s: float  # scheduled offset of the last issued query
    issued: int
    done: int
    over_bound: int  # completed queries whose latency exceeded ``bound_ns`` (0 without a bound)


@dataclass
class OpenLoopRecords:
    """Per-query records (ns, ``perf_counter_ns``); entries past ``issued`` are unused.

    ``done[i] == 0`` for an issued query means it was dropped (still queued when
    the drain time ran out, or the run stopped on an error or Ctrl-C).
    """

    t0_ns: int
    scheduled: list[int]
    issued_at: list[int]
    started: list[int]
    done: list[int]
    batch: list[int]
    issued: int = 0
    stop_reason: str = "schedule-end"  # "rule" | "schedule-end" | "error" | "interrupted"
    error: BaseException | None = None
    error_query: int | None = None
    interrupted: bool = False
    gc_collections: int = 0
    switch_interval_s: float = 0.0
    spin_ns: int = 0
    end_ns: int = 0  # when the worker finished (drained or gave up)
    notes: list[str] = field(default_factory=list)


class _Shared:
    """State the three threads share; plain attributes (reads and writes are atomic under the GIL)."""

    __slots__ = ("stop", "abort", "issued", "done", "over", "error", "error_query", "spin_ns")

    def __init__(self) -> None:
        self.stop = False  # issuer: issue no more
        self.abort = False  # worker: run no more batches
        self.issued = 0
        self.done = 0
        self.over = 0
        self.error: BaseException | None = None
        self.error_query: int | None = None
        self.spin_ns = 0


_END = -1  # sentinel on the queue: the issuer is finished


def _issuer(
    offsets: list[int], t0: int, issued_at: list[int], put: Callable[[int], None], sh: _Shared, now: NowNs,
    spin_ns: int | None,
) -> None:
    low_slack = reduce_timer_slack()
    if spin_ns is None:
        spin_ns = SPIN_NS_LOW_SLACK if low_slack else SPIN_NS
    sh.spin_ns = spin_ns
    wait = wait_until
    try:
        for i, off in enumerate(offsets):
            if sh.stop:
                break
            issued_at[i] = wait(t0 + off, now, spin_ns)
            put(i)
            sh.issued = i + 1
    finally:
        put(_END)


def _worker(
    get: Callable[..., int],
    offsets: list[int],
    rec: OpenLoopRecords,
    call_batch: Callable[[int], object],
    sh: _Shared,
    now: NowNs,
    max_batch: int,
    max_wait_ns: int,
    bound_ns: int | None,
) -> None:
    issued_at, started, done, bsize = rec.issued_at, rec.started, rec.done, rec.batch
    limit = rec.t0_ns + bound_ns if bound_ns is not None else None  # over the bound: done - offset > limit
    # the worker keeps the default timer slack: the model runs on this thread, and a model
    # that sleeps (I/O, a remote call) must behave as it would anywhere else
    empty = queue.Empty
    ended = False
    batch: list[int] = []
    while not ended and not sh.abort:
        first = get()
        if first == _END:
            break
        batch = [first]
        deadline = issued_at[first] + max_wait_ns
        while len(batch) < max_batch:
            try:
                j = get(False)
            except empty:
                rem = deadline - now()
                if rem <= 0:
                    break
                try:
                    j = get(True, rem * 1e-9)
                except empty:
                    break
            if j == _END:
                ended = True
                break
            batch.append(j)
        k = len(batch)
        t_start = now()
        try:
            call_batch(k)
        except Exception as exc:  # the model failed: stop everything, keep what was measured
            sh.error, sh.error_query = exc, batch[0]
            sh.stop = sh.abort = True
            return
        t_done = now()
        over = 0
        for j in batch:
            started[j] = t_start
            done[j] = t_done
            bsize[j] = k
            if limit is not None and t_done - offsets[j] > limit:
                over += 1
        sh.over += over
        sh.done += k
    rec.end_ns = now()


def run_open_loop(
    offsets_ns: Sequence[int],
    call_batch: Callable[[int], object],
    *,
    max_batch: int = 1,
    max_wait_ns: int = 0,
    bound_ns: int | None = None,
    should_stop: Callable[[OpenLoopProgress], bool] | None = None,
    check_interval_s: float = 0.05,
    drain_s: float = 10.0,
    on_check: Callable[[OpenLoopProgress], None] | None = None,
    keep_gc: bool = False,
    switch_interval_s: float | None = 1e-4,
    spin_ns: int | None = None,
    start_delay_ns: int = 5_000_000,
    now: NowNs = time.perf_counter_ns,
) -> OpenLoopRecords:
    """Issue query ``i`` at ``t0 + offsets_ns[i]`` and serve it in batches; see the module docstring.

    ``call_batch(k)`` runs the model on a batch of ``k`` queries and returns
    when it is done (synced). ``t0`` is ``start_delay_ns`` after the threads are
    started, so the first arrival does not race their start-up. ``bound_ns``
    lets the worker count over-bound queries for ``should_stop`` as they
    complete. ``switch_interval_s=None`` leaves the interpreter's switch
    interval alone. ``spin_ns=None``: 100 µs where the issuer's timer slack could
    be lowered (:func:`reduce_timer_slack`), else 200 µs.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    offsets = [int(o) for o in offsets_ns]
    n = len(offsets)
    sh = _Shared()
    q: queue.SimpleQueue[int] = queue.SimpleQueue()
    gc_count = [0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_count[0] += 1

    rec = OpenLoopRecords(t0_ns=0, scheduled=[], issued_at=[0] * n, started=[0] * n, done=[0] * n, batch=[0] * n)
    old_switch = sys.getswitchinterval()
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.callbacks.append(on_gc)
    if not keep_gc:
        gc.disable()
    if switch_interval_s is not None:
        sys.setswitchinterval(switch_interval_s)
    rec.switch_interval_s = sys.getswitchinterval()
    rec.t0_ns = t0 = now() + start_delay_ns  # after every allocation above
    worker = threading.Thread(
        target=_worker, args=(q.get, offsets, rec, call_batch, sh, now, max_batch, max_wait_ns, bound_ns),
        name="infermeter-server-worker", daemon=True,
    )
    issuer = threading.Thread(
        target=_issuer, args=(offsets, t0, rec.issued_at, q.put, sh, now, spin_ns),
        name="infermeter-server-issuer", daemon=True,
    )

    def progress() -> OpenLoopProgress:
        k = sh.issued
        return OpenLoopProgress(elapsed_s=offsets[k - 1] * 1e-9 if k else 0.0, issued=k, done=sh.done, over_bound=sh.over)

    def halt() -> None:
        sh.stop = sh.abort = True
        issuer.join()
        worker.join()

    try:
        worker.start()
        issuer.start()
        try:
            while issuer.is_alive():
                issuer.join(check_interval_s)
                if sh.error is not None:
                    break
                p = progress()
                if on_check is not None:
                    on_check(p)
                if should_stop is not None and not sh.stop and should_stop(p):
                    rec.stop_reason = "rule"
                    sh.stop = True
            sh.stop = True
            issuer.join()
            worker.join(drain_s)
            if worker.is_alive():
                sh.abort = True
                worker.join()
                rec.notes.append(f"queries still queued {drain_s:g} s after the last arrival were dropped")
        except KeyboardInterrupt:
            rec.interrupted = True
            rec.stop_reason = "interrupted"
            halt()
        except BaseException:  # a callback failed: stop the threads, then let it propagate
            halt()
            raise
    finally:
        gc.callbacks.remove(on_gc)
        if gc_was_enabled:
            gc.enable()
        sys.setswitchinterval(old_switch)
    rec.scheduled = [t0 + o for o in offsets]
    if sh.error is not None:
        rec.stop_reason = "error"
        rec.error, rec.error_query = sh.error, sh.error_query
    rec.issued = sh.issued
    rec.gc_collections = gc_count[0]
    rec.spin_ns = sh.spin_ns
    if rec.end_ns == 0:
        rec.end_ns = now()
    return rec
