"""One generator process: an event loop that sends its share of the requests and records each.

The parent (``generator.py``) plans the run and hands each process a
:class:`Part`: the protocol's prepared :class:`~.protocols.Target`, and either
its share of the open-loop schedule (intended send times, seconds from one
global ``t0`` shared by all processes, with their global request indices) or
its share of the closed-loop users. :func:`run_part` runs it on a fresh event
loop (uvloop when installed) and returns plain data (numpy arrays, encoded
HdrHistograms), so it can come back over a pipe from a spawned process.

Requests go out on the lean HTTP/1.1 client (``http1``: pre-built requests,
httptools parsing) where it applies (plain ``http://``, whole responses) and
on aiohttp otherwise (https, streams); ``Part.client`` can force either.

Per request (DESIGN "Samples"; times are ``perf_counter`` seconds):

* ``intended_s``, ``sent_s``, ``done_s``: when it was meant to go, when the
  request left (started, or got a connection when ``connections`` caps them),
  when it finished (answered or failed), from ``t0``. A closed loop has no
  schedule: intended == sent (but for a wait for a connection).
* ``wait_s``: how long it waited for a free connection (0 without a cap). The
  schedule lag, the generator's own lateness, is ``sent - wait - intended``.
* ``ttfb_s`` (response headers), ``connect_s`` (a new connection was opened
  for it: DNS + TCP + TLS, from aiohttp's trace hooks or the lean client), ``ttft_s`` (first
  token, streams): durations from ``sent``. NaN where they did not happen.
* ``status`` (HTTP, 0 without a response), ``error_kind`` (index into
  ``protocols.KINDS``), ``tokens`` and ``decode_s`` (first to last token).

Requests scheduled before ``t0`` (warm-up) are sent but not returned. Every
request that was sent is returned with its kind, whatever happened to it: one
still running when the drain time (``timeout_s`` + 1 s) ran out counts as a
timeout. Only requests abandoned at an interrupt (Ctrl-C) are left out, and
counted.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from .pacing import Pacer
from .protocols import KINDS, OK, OTHER, REFUSED, TIMEOUT, Target, classify, read_sse

__all__ = ["Part", "run_part", "loop_factory", "hist_new", "hist_from", "HIST_MAX_US", "choose_client", "CLIENTS"]

now = time.perf_counter
HIST_MAX_US = 3_600_000_000  # one hour, in µs
HIST_DIGITS = 3
PROGRESS_EVERY_S = 0.5
MAX_EXAMPLES = 5

_COLUMNS: dict[str, tuple[Any, Any]] = {
    "id": (np.int64, -1), "intended_s": (np.float64, math.nan), "sent_s": (np.float64, math.nan),
    "ttfb_s": (np.float64, math.nan), "done_s": (np.float64, math.nan), "connect_s": (np.float64, math.nan),
    "status": (np.int16, 0), "error_kind": (np.int8, OTHER), "ttft_s": (np.float64, math.nan),
    "tokens": (np.int32, 0), "decode_s": (np.float64, math.nan), "wait_s": (np.float64, 0.0),
}


@dataclass
class Part:
    """One process's share of a run (picklable)."""

    index: int
    processes: int
    target: Target
    mode: str  # "open" | "closed"
    offsets: np.ndarray | None = None  # open: intended send times, s from t0 (warm-up ones < 0)
    ids: np.ndarray | None = None  # open: global request index of each offset
    users: int = 0  # closed
    think_s: float = 0.0
    duration_s: float = 10.0
    warmup_s: float = 0.0
    max_requests: int = 1_000_000  # closed: this process's share
    timeout_s: float = 30.0
    connect_timeout_s: float = 3.0
    raw_limit: int = 2_000_000
    pacing: str = "auto"
    client: str = "auto"  # "auto" | "lean" | "aiohttp": see choose_client
    connections: int | None = None  # this process's cap on open connections (None: one per request in flight)


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def hist_new() -> Any:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, HIST_MAX_US, HIST_DIGITS)


def hist_from(values_s: np.ndarray) -> Any:
    """An HdrHistogram (µs, 3 significant digits) of ``values_s``: one record call per distinct µs."""
    h = hist_new()
    v = np.asarray(values_s, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size:
        us = np.clip(np.rint(v * 1e6), 1, HIST_MAX_US).astype(np.int64)
        vals, counts = np.unique(us, return_counts=True)
        for a, c in zip(vals.tolist(), counts.tolist()):
            h.record_value(a, c)
    return h


class _Columns:
    """Per-request numpy columns that grow by doubling (a closed loop does not know its count)."""

    def __init__(self, capacity: int) -> None:
        self.n = 0
        self.cap = max(16, capacity)
        self.a = {k: np.full(self.cap, fill, dtype=dt) for k, (dt, fill) in _COLUMNS.items()}

    def add(self) -> int:
        if self.n == self.cap:
            self.cap *= 2
            for k, (dt, fill) in _COLUMNS.items():
                grown = np.full(self.cap, fill, dtype=dt)
                grown[: self.n] = self.a[k]
                self.a[k] = grown
        self.n += 1
        return self.n - 1

    def view(self) -> dict[str, np.ndarray]:
        return {k: v[: self.n] for k, v in self.a.items()}


def _raise_fd_limit() -> None:
    """An open loop against a slow server holds one connection per request in flight."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass


class _Engine:
    def __init__(self, part: Part, t0: float, report: Callable[[dict[str, Any]], None] | None, control: Any) -> None:
        self.p = part
        self.t0 = t0
        self.report = report
        self.control = control
        n = len(part.offsets) if part.offsets is not None else 1024
        self.cols = _Columns(n)
        self.itl: list[float] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop = False
        self.interrupted = False
        self.drain_expired = False
        self.abandoned = 0
        self.sent = self.done = self.errors = 0
        self.measured = 0
        self.examples: list[str] = []
        t = part.target
        self.method, self.url, self.headers = t.method, t.url, t.headers
        self.chat = t.protocol == "openai-chat"
        self.protocol = t.protocol
        self.client = choose_client(t, part.client)
        self.one = self._one_lean if self.client == "lean" else self._one
        self.lean: Any = None
        self.requests: list[bytes] = []

    # ------------------------------------------------------------ one request

    async def _one(self, gid: int, intended: float | None) -> None:
        t = self.p.target
        conn = SimpleNamespace(connect=math.nan, wait=0.0)
        tokens: list[float] = []
        status, ttfb, kind = 0, math.nan, OTHER
        self.sent += 1
        sent = now()
        try:
            async with self.session.request(self.method, self.url, data=t.body(gid), headers=self.headers,
                                            trace_request_ctx=conn) as resp:
                ttfb = now() - sent
                status = resp.status
                if t.streaming and 200 <= status < 300:
                    kind = await read_sse(resp.content, self.chat, now, tokens)
                else:
                    kind = classify(t.protocol, status, resp.headers, await resp.read())
        except asyncio.CancelledError:
            kind = self._cancelled()
        except Exception as exc:  # aiohttp.ClientConnectorError, disconnects, payload errors …
            kind = self._failed(exc)
        if conn.wait:  # it waited for a free connection (--connections): it left only then
            sent += conn.wait
            ttfb -= conn.wait
        self._record(gid, intended, sent, ttfb, conn.connect, status, kind, tokens, conn.wait)

    async def _one_lean(self, gid: int, intended: float | None) -> None:
        """One plain-HTTP request on the lean client (``http1``); recorded exactly as ``_one`` does."""
        status, ttfb, kind, connect, waited = 0, math.nan, OTHER, math.nan, 0.0
        self.sent += 1
        sent = now()
        try:
            answer, connect, waited = await self.lean.request(self.requests[self.p.target.body_index(gid)])
            sent += waited  # it left when it had a connection (--connections)
            status = answer.status
            ttfb = answer.first_byte - sent
            kind = classify(self.protocol, status, answer.headers, answer.body)
        except asyncio.CancelledError:
            kind = self._cancelled()
        except Exception as exc:  # disconnects, malformed HTTP, OS errors
            kind = self._failed(exc)
        self._record(gid, intended, sent, ttfb, connect, status, kind, None, waited)

    def _cancelled(self) -> int:
        """A request cancelled at the drain's end is a timeout; at an interrupt it is abandoned (re-raised)."""
        if not self.drain_expired:
            self.abandoned += 1
            raise asyncio.CancelledError
        return TIMEOUT

    def _failed(self, exc: Exception) -> int:
        """The kind of a request that raised (either client), keeping a few examples of the unexplained."""
        if isinstance(exc, asyncio.TimeoutError):
            return TIMEOUT
        os_err = getattr(exc, "os_error", exc)  # aiohttp wraps the OSError; the lean client raises it
        if isinstance(os_err, ConnectionRefusedError) or getattr(os_err, "errno", None) == errno.ECONNREFUSED:
            return REFUSED
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{type(exc).__name__}: {exc}"[:200])
        return OTHER

    def _record(self, gid: int, intended: float | None, sent: float, ttfb: float, connect: float, status: int,
                kind: int, tokens: list[float] | None, wait: float) -> None:
        done = now()
        t0 = self.t0
        c = self.cols
        k = c.add()
        a = c.a
        a["id"][k] = gid
        a["intended_s"][k] = (sent - t0) if intended is None else intended
        a["sent_s"][k] = sent - t0
        a["done_s"][k] = done - t0
        a["ttfb_s"][k] = ttfb
        a["connect_s"][k] = connect
        a["status"][k] = status
        a["error_kind"][k] = kind
        a["wait_s"][k] = wait
        if tokens:
            a["tokens"][k] = len(tokens)
            a["ttft_s"][k] = tokens[0] - sent
            a["decode_s"][k] = tokens[-1] - tokens[0]
            if (intended if intended is not None else sent - t0) >= 0:
                self.itl.extend(np.diff(tokens).tolist())
        self.done += 1
        if kind != OK:
            self.errors += 1

    # ------------------------------------------------------------ loops

    async def _open(self, pacer: Pacer) -> None:
        assert self.p.offsets is not None and self.p.ids is not None
        loop = asyncio.get_running_loop()
        offs, ids, t0, tasks, one = self.p.offsets.tolist(), self.p.ids.tolist(), self.t0, self.tasks, self.one
        for off, gid in zip(offs, ids):
            if self.stop:
                break
            await pacer.until(t0 + off)
            task = loop.create_task(one(gid, off))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            # Let the request start now: going straight back to a timer wait delays the task's first
            # step by ~40 µs on uvloop (~3 µs this way). Behind schedule, this also lets responses in.
            await asyncio.sleep(0)

    async def _user(self, u: int) -> None:
        p = self.p
        end = self.t0 + p.duration_s
        await asyncio.sleep(max(0.0, self.t0 - p.warmup_s - now()))
        k = 0
        while not self.stop:
            t = now()
            if t >= end:
                break
            if t >= self.t0:
                if self.measured >= p.max_requests:
                    break
                self.measured += 1
            await self.one((k * p.users + u) * p.processes + p.index, None)
            k += 1
            if p.think_s > 0:
                await asyncio.sleep(p.think_s)

    async def _closed(self) -> None:
        users = [asyncio.ensure_future(self._user(u)) for u in range(self.p.users)]
        for u in users:
            self.tasks.add(u)
            u.add_done_callback(self.tasks.discard)
        await asyncio.gather(*users)

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            if self.report is not None:
                elapsed = now() - self.t0
                self.report({"process": self.p.index, "elapsed_s": elapsed, "warmup": elapsed < 0, "sent": self.sent,
                             "done": self.done, "errors": self.errors, "in_flight": self.sent - self.done})

    def _on_control(self) -> None:
        try:
            msg = self.control.recv()
        except (EOFError, OSError):  # the parent is gone: stop, and stop listening to a closed pipe
            asyncio.get_running_loop().remove_reader(self.control.fileno())
            msg = ("stop",)
        if msg and msg[0] in ("stop", "interrupt"):  # interrupt: Ctrl-C in the parent
            self.stop = True
            self.interrupted = self.interrupted or msg[0] == "interrupt"

    async def main(self) -> dict[str, Any]:
        import aiohttp

        loop = asyncio.get_running_loop()
        trace = aiohttp.TraceConfig()

        async def c_start(session: Any, ctx: Any, params: Any) -> None:
            ctx.c0 = now()

        async def c_end(session: Any, ctx: Any, params: Any) -> None:
            if ctx.trace_request_ctx is not None:
                ctx.trace_request_ctx.connect = now() - ctx.c0

        async def q_start(session: Any, ctx: Any, params: Any) -> None:
            ctx.q0 = now()

        async def q_end(session: Any, ctx: Any, params: Any) -> None:
            if ctx.trace_request_ctx is not None:
                ctx.trace_request_ctx.wait = now() - ctx.q0

        trace.on_connection_create_start.append(c_start)
        trace.on_connection_create_end.append(c_end)
        trace.on_connection_queued_start.append(q_start)
        trace.on_connection_queued_end.append(q_end)
        p = self.p
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=p.connections or 0, ttl_dns_cache=None),
            timeout=aiohttp.ClientTimeout(total=p.timeout_s, sock_connect=p.connect_timeout_s),
            trace_configs=[trace],
        )
        if self.client == "lean":
            from .http1 import Http1Client, build_request

            self.lean = Http1Client(self.url, p.connect_timeout_s, p.timeout_s, p.connections)
            t = p.target
            self.requests = [build_request(self.method, self.url, self.headers, b) for b in t.bodies]
        pacer = Pacer(p.pacing)
        if self.control is not None:
            loop.add_reader(self.control.fileno(), self._on_control)
        prog = asyncio.ensure_future(self._progress())
        freeze = gc.get_freeze_count() == 0  # leave a caller's own freeze alone
        if freeze:
            gc.collect()
            gc.freeze()  # the objects made so far are never collected: shorter gen-2 pauses during the run
        start_wall, start_cpu = now(), time.thread_time()
        try:
            try:
                if p.mode == "open":
                    await self._open(pacer)
                else:
                    await self._closed()
            except asyncio.CancelledError:  # Ctrl-C: stop sending, keep what was measured
                self._interrupt()
            try:
                await self._drain(1.0 if self.interrupted else p.timeout_s + 1.0)
            except asyncio.CancelledError:  # Ctrl-C while draining: give up on what is in flight
                self._interrupt()
                await self._drain(0.0)
        finally:
            wall, cpu = now() - start_wall, time.thread_time() - start_cpu
            prog.cancel()
            if self.control is not None:
                loop.remove_reader(self.control.fileno())
            await self.session.close()
            if self.lean is not None:
                self.lean.close()
            pacer.close()
            if freeze:
                gc.unfreeze()
        return self._result(wall, cpu, pacer)

    def _interrupt(self) -> None:
        self.interrupted = self.stop = True
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def _drain(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for the requests in flight, then cancel the rest: each one
        counts as a timeout, or (after an interrupt) is abandoned."""
        if self.tasks and wait_s > 0:
            await asyncio.wait(set(self.tasks), timeout=wait_s)
        if self.tasks:
            self.drain_expired = not self.interrupted
            for t in list(self.tasks):
                t.cancel()
            await asyncio.wait(set(self.tasks), timeout=1.0)

    # ------------------------------------------------------------ what goes back

    def _result(self, wall: float, cpu: float, pacer: Pacer) -> dict[str, Any]:
        cols = self.cols.view()
        keep = cols["intended_s"] >= 0  # warm-up requests are not part of the run
        cols = {k: v[keep] for k, v in cols.items()}
        order = np.argsort(cols["intended_s"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        kind, n = cols["error_kind"], int(keep.sum())
        ok = kind == OK
        done = cols["done_s"]
        hist = {
            "corrected": hist_from(done[ok] - cols["intended_s"][ok]).encode(),
            "service": hist_from(done[ok] - cols["sent_s"][ok]).encode(),
            "lag": hist_from(cols["sent_s"] - cols["wait_s"] - cols["intended_s"]).encode(),
            "ttfb": hist_from(cols["ttfb_s"]).encode(),
        }
        per_second: dict[str, list[int]] = {"count": [], "errors": []}
        if n:
            sec = np.floor(cols["intended_s"]).astype(np.int64)
            m = int(sec.max()) + 1
            per_second = {"count": np.bincount(sec, minlength=m).tolist(),
                          "errors": np.bincount(sec[~ok], minlength=m).tolist()}
        spin = min(pacer.spin_s, cpu)
        return {
            "process": self.p.index, "n": n, "n_ok": int(ok.sum()),
            "counts": np.bincount(kind, minlength=len(KINDS)).tolist(),
            "last_done_s": float(done.max()) if n else 0.0,
            "last_intended_s": float(cols["intended_s"].max()) if n else 0.0,
            "last_ok_s": float(done[ok].max()) if ok.any() else 0.0,
            "columns": cols if n <= self.p.raw_limit else None,
            "itl_s": np.asarray(self.itl, dtype=np.float64) if n <= self.p.raw_limit else None,
            "tokens": int(cols["tokens"].sum()),
            "hist": hist, "per_second": per_second,
            "cpu": {"process": self.p.index, "cpu_s": cpu, "wall_s": wall, "spin_s": spin,
                    "cpu_share": cpu / wall if wall > 0 else 0.0,
                    "busy": (cpu - spin) / wall if wall > 0 else 0.0},
            "pacing": {**pacer.describe(), "client": self.client}, "abandoned": self.abandoned, "interrupted": self.interrupted,
            "examples": self.examples,
        }


def run_part(part: Part, t0: float, report: Callable[[dict[str, Any]], None] | None = None, control: Any = None) -> dict[str, Any]:
    """Run one process's share on a fresh event loop (in this thread) and return its records."""
    _raise_fd_limit()
    factory, name = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        out = runner.run(_Engine(part, t0, report, control).main())
    out["pacing"]["loop"] = name
    return out


CLIENTS = ("auto", "lean", "aiohttp")


def choose_client(target: Target, asked: str) -> str:
    """``lean`` (``http1``: plain http://, whole responses) where it applies and is installed,
    else ``aiohttp``; ``asked`` is ``auto``, or a client named by the user."""
    from urllib.parse import urlsplit

    fits = not target.streaming and urlsplit(target.url).scheme == "http"
    if asked == "aiohttp" or not fits:
        return "aiohttp"
    from .http1 import available

    return "lean" if available() else "aiohttp"
