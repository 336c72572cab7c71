"""``infermeter load URL``: plan a run, check the server answers, run the processes, merge.

The path of one run:

1. **plan** the schedule (open loop: seeded arrivals or a trace, warm-up
   requests before ``t0`` at negative times) or the users (closed loop);
2. **prepare** the request bodies (``protocols.prepare_target``: OIP metadata,
   the OpenAI model list) and send one **probe** request: a refused or
   unreachable URL, or a 404 for the model, is a :class:`UsageError` at once
   instead of a run full of failures;
3. **run**: one process runs in this thread; ``processes`` > 1 are spawned
   (``python -m infermeter.load.worker``, never forked: no inherited event loop
   or sockets), each with its own event loop and its share of the schedule, request ``i`` going to process
   ``i % P`` with intended times from one ``t0`` chosen after every process is
   ready (``perf_counter`` is the system-wide monotonic clock, so all share it);
4. **merge** (``outcome.merge_parts``) and add the quality warnings: the
   generator fell behind its schedule, or saturated its CPU.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from multiprocessing.connection import wait as wait_conns
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

import numpy as np

from ..errors import InfermeterError, UsageError
from ..stats import percentile
from .arrivals import arrival_offsets, read_trace
from .config import LoadConfig
from .engine import Part, run_part
from .outcome import RAW_LIMIT, LoadOutcome, merge_parts
from .protocols import Target, prepare_target
from .worker import FrameReader, write_frame
from .summary import to_result

__all__ = ["run_load", "LoadOutcome", "to_result", "Progress"]

Progress = Callable[[str, dict[str, Any]], None]
T = TypeVar("T")

PROBE_TIMEOUT_S = 10.0  # the probe request's total timeout at least (its connect: --connect-timeout)
START_DELAY_S = 0.1  # t0 this long after the processes are ready: the first send does not race start-up
READY_TIMEOUT_S = 120.0
LAG_P99_WARN_S = 1e-3
LATE_WARN_S = 10e-3
LATE_P = 99.9  # warn too when more than 0.1% of requests went out over LATE_WARN_S late
CPU_BUSY_WARN = 0.9
ERROR_WARN = 0.01
_PROBE_USAGE_STATUS = (400, 401, 403, 404, 405, 415, 422)


def _off_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` here, or in a helper thread when this thread already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(1) as ex:
        return ex.submit(fn).result()


# ---------------------------------------------------------------- plan


def _schedule(cfg: LoadConfig, notes: list[str]) -> tuple[np.ndarray, float | None, str]:
    """Intended send times from t0 (warm-up ones negative), the offered rate, and why it ends."""
    w, d = cfg.warmup_s, cfg.duration_s
    if cfg.trace is not None:
        t = read_trace(cfg.trace) - w
        if t[-1] >= d:
            notes.append(f"the trace runs {t[-1] + w:.3g} s; only its first {w + d:.3g} s were replayed (--duration)")
            t = t[t < d]
        why = "trace-end"
    else:
        assert cfg.rate is not None
        t = arrival_offsets(cfg.rate, w + d, cfg.arrival, cfg.seed, 2**62) - w
        why = "duration"
    measured = int((t >= 0).sum())
    if measured > cfg.max_requests:
        t = t[: len(t) - measured + cfg.max_requests]
        why = "max-requests"
    m = t[t >= 0]
    if m.size == 0:
        raise UsageError("the schedule holds no request to measure; raise --rate or --duration, or check the trace")
    if cfg.rate is not None:
        offered: float | None = float(cfg.rate)
    else:
        offered = (m.size - 1) / float(m[-1] - m[0]) if m.size > 1 and m[-1] > m[0] else None
    return t, offered, why


def _share(total: int | None, i: int, p: int) -> int | None:
    """Process ``i``'s part of a cap of ``total`` connections split over ``p`` processes."""
    return None if total is None else max(1, total // p + (i < total % p))


def _parts(cfg: LoadConfig, target: Target, notes: list[str]) -> tuple[list[Part], np.ndarray | None, float | None, str]:
    def part(i: int, p: int, mode: str) -> Part:
        return Part(i, p, target, mode, think_s=cfg.think_s, duration_s=cfg.duration_s, warmup_s=cfg.warmup_s,
                    timeout_s=cfg.timeout_s, connect_timeout_s=cfg.connect_timeout_s, raw_limit=RAW_LIMIT // p,
                    client=cfg.client, connections=_share(cfg.connections, i, p))

    p = cfg.processes
    if cfg.mode == "open":
        t, offered, why = _schedule(cfg, notes)
        ids = np.arange(len(t), dtype=np.int64)
        p = min(p, len(t))
        parts = [part(i, p, "open") for i in range(p)]
        for i, pt in enumerate(parts):  # request i goes to process i % p
            pt.offsets, pt.ids = t[i::p], ids[i::p]
        return parts, t, offered, why
    c = cfg.concurrency
    assert c is not None
    if p > c:
        notes.append(f"--processes {p} is more than --concurrency {c}: {c} processes were used")
        p = c
    parts = [part(i, p, "closed") for i in range(p)]
    for i, pt in enumerate(parts):
        pt.users = c // p + (i < c % p)
        pt.max_requests = cfg.max_requests // p + (i < cfg.max_requests % p)
    return parts, None, None, "duration"


# ---------------------------------------------------------------- prepare and probe


def _unreachable(cfg: LoadConfig, exc: BaseException) -> UsageError:
    os_err = getattr(exc, "os_error", None)
    host = urlsplit(cfg.url).hostname
    if isinstance(os_err, ConnectionRefusedError) or "Connection refused" in str(exc):
        return UsageError(f"cannot connect to {cfg.url}: connection refused; is the server running?")
    if type(exc).__name__ == "ClientConnectorDNSError" or "Name or service not known" in str(exc) or \
            "nodename nor servname" in str(exc):
        return UsageError(f"cannot connect to {cfg.url}: cannot resolve host '{host}'; check the address")
    if isinstance(exc, asyncio.TimeoutError):
        return UsageError(f"cannot connect to {cfg.url}: no answer within {cfg.connect_timeout_s:g} s (connect) / "
                          f"{max(cfg.timeout_s, PROBE_TIMEOUT_S):g} s (first request); check the address, port and "
                          "firewall, or raise --timeout")
    return UsageError(f"cannot connect to {cfg.url}: {type(exc).__name__}: {exc}; check the URL and that the server is up")


async def _prepare(cfg: LoadConfig, n_requests: int | None = None) -> Target:
    import aiohttp

    # the connect bound says "unreachable"; the answer may take longer than a run's --timeout (a slow first
    # request, a server mid-stall): the run counts timeouts, the probe only asks whether anyone answers
    timeout = aiohttp.ClientTimeout(total=max(cfg.timeout_s, PROBE_TIMEOUT_S), sock_connect=cfg.connect_timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async def get_json(url: str) -> tuple[int, Any]:
                async with s.get(url, headers=cfg.headers) as r:
                    body = await r.read()
                    try:
                        return r.status, json.loads(body)
                    except ValueError:
                        return r.status, None

            target = await prepare_target(cfg, get_json, n_requests)
            async with s.request(target.method, target.url, data=target.body(0), headers=target.headers) as r:
                text = (await r.read())[:200].decode("utf-8", "replace")
                if r.status in _PROBE_USAGE_STATUS:
                    raise UsageError(f"the server answered {r.status} {r.reason} to {target.method} {target.url} "
                                     f"({' '.join(text.split())[:120]!r}); check the URL, --protocol, --model and the body")
            return target
    except InfermeterError:
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise _unreachable(cfg, exc) from None


# ---------------------------------------------------------------- run


class _Worker:
    """One spawned generator process (``python -m infermeter.load.worker``) and its pipes."""

    def __init__(self, index: int, part: Part) -> None:
        import infermeter

        self.index = index
        env = dict(os.environ)
        root = str(Path(infermeter.__file__).resolve().parent.parent)  # importable however infermeter was found
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infermeter.load.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, env=env, start_new_session=hasattr(os, "killpg"),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.reader = FrameReader(self.proc.stdout.fileno())
        self.part = part

    def send(self, msg: Any) -> None:
        assert self.proc.stdin is not None
        try:
            write_frame(self.proc.stdin.fileno(), msg)
        except OSError:
            pass  # it died: reading from it says so

    def recv(self) -> Any:
        try:
            return self.reader.recv()
        except (EOFError, OSError):
            raise InfermeterError(f"generator process {self.index} died without a result ({self._why()}); "
                                  "run again with fewer --processes or a lower --rate") from None

    def _why(self) -> str:
        code = self.proc.wait(timeout=5.0)
        self.stderr.seek(0)
        tail = [ln for ln in self.stderr.read().decode("utf-8", "replace").splitlines() if ln.strip()][-1:]
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return how + (f": {tail[0][:200]}" if tail else "")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL) if hasattr(os, "killpg") else self.proc.kill()
                except (ProcessLookupError, PermissionError):
                    pass
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


def _run_spawned(parts: list[Part], cfg: LoadConfig, progress: Progress | None) -> list[dict[str, Any]]:
    workers: list[_Worker] = []
    try:
        for part in parts:
            workers.append(_Worker(part.index, part))
        for w in workers:
            w.send(w.part)
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = {w.reader.fileno(): w for w in workers}
        while waiting:
            if time.monotonic() > deadline:
                raise InfermeterError(f"generator processes did not start within {READY_TIMEOUT_S:g} s; "
                                      "the machine may be overloaded, try fewer --processes")
            for fd in wait_conns(list(waiting), timeout=1.0):
                w = waiting.pop(fd)  # type: ignore[arg-type]
                msg = w.recv()
                if msg[0] != "ready":
                    raise InfermeterError(f"generator process {w.index} failed to start: {msg[1]}")
        t0 = time.perf_counter() + START_DELAY_S + cfg.warmup_s
        for w in workers:
            w.send(("go", t0))
        return _collect(workers, t0, cfg, progress)
    finally:
        for w in workers:
            w.close()


def _collect(workers: list[_Worker], t0: float, cfg: LoadConfig, progress: Progress | None) -> list[dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    latest: dict[int, dict[str, Any]] = {}
    pending = {w.reader.fileno(): w for w in workers}
    deadline = t0 + cfg.duration_s + cfg.timeout_s + 30.0
    interrupted = False
    while pending:
        try:
            for fd in wait_conns(list(pending), timeout=0.5):
                w = pending[fd]  # type: ignore[index]
                msg = w.recv()
                if msg[0] == "progress":
                    latest[w.index] = msg[1]
                elif msg[0] == "result":
                    results[w.index] = msg[1]
                    del pending[fd]  # type: ignore[arg-type]
                else:
                    raise InfermeterError(f"generator process {w.index} failed: {msg[1]}")
            if progress is not None and latest:
                progress("run", _sum_progress(latest, cfg))
            if time.perf_counter() > deadline:
                raise InfermeterError(f"generator processes did not finish {deadline - t0:.0f} s after the start; "
                                      "this is a bug in infermeter, please report it")
        except KeyboardInterrupt:  # the workers lead their own sessions: tell them, then collect what they kept
            if interrupted:
                raise
            interrupted = True
            for w in pending.values():
                w.send(("interrupt",))
    return [results[i] for i in sorted(results)]


def _sum_progress(latest: dict[int, dict[str, Any]], cfg: LoadConfig) -> dict[str, Any]:
    elapsed = max(d["elapsed_s"] for d in latest.values())
    out: dict[str, Any] = {"elapsed_s": elapsed, "warmup": elapsed < 0, "duration_s": cfg.duration_s}
    for k in ("sent", "done", "errors", "in_flight"):
        out[k] = sum(d[k] for d in latest.values())
    return out


def run_load(cfg: LoadConfig, progress: Progress | None = None) -> LoadOutcome:
    """Run the load ``cfg`` describes and return what it measured (see the module docstring).

    ``progress(phase, info)`` is called with ``"prepare"``, then ``"run"`` about twice a
    second (elapsed_s from t0, negative in the warm-up; warmup; duration_s; sent, done,
    errors, in_flight: counts so far, warm-up included), then ``"done"``. With one
    process it runs on the generator's event loop: keep it quick.
    Ctrl-C stops the run early and returns what was measured (``stop_reason``
    ``"interrupted"``, with a warning). ``processes`` > 1 start fresh interpreters
    (``python -m infermeter.load.worker``); the intended send times of all come from one
    ``t0`` on the system's monotonic clock.
    Raises :class:`UsageError` when the server cannot be reached or rejects the request.
    """
    notes: list[str] = []
    if progress is not None:
        progress("prepare", {"url": cfg.url, "protocol": cfg.protocol})
    if cfg.trace:
        _schedule(cfg, [])  # a bad trace file is the user's to fix before any server is contacted
    n_requests = None
    if cfg.repeat > 0:  # the bodies --repeat needs depend on how many requests there will be
        n_requests = len(_schedule(cfg, [])[0]) if cfg.mode == "open" else cfg.max_requests
    target = _off_loop(lambda: asyncio.run(_prepare(cfg, n_requests)))
    parts, schedule, offered, why = _parts(cfg, target, notes)
    if len(parts) == 1:
        def report(d: dict[str, Any]) -> None:
            if progress is not None:
                progress("run", {**{k: v for k, v in d.items() if k != "process"}, "duration_s": cfg.duration_s})

        t0 = time.perf_counter() + START_DELAY_S + cfg.warmup_s
        results = [_off_loop(lambda: run_part(parts[0], t0, report))]
    else:
        results = _run_spawned(parts, cfg, progress)
    scheduled = int((schedule >= 0).sum()) if schedule is not None else None
    out = merge_parts(cfg, target, results, offered=offered, scheduled=scheduled, warnings=[])
    out.stop_reason = "interrupted" if out.interrupted else why
    out.warnings = notes + _warnings(out, results)
    if progress is not None:
        progress("done", {"requests": out.requests, "succeeded": out.succeeded, "goodput": out.goodput})
    return out


# ---------------------------------------------------------------- quality warnings


def _lag(out: LoadOutcome, p: float) -> float:
    if out.records is not None:
        r = out.records
        return percentile(r["sent_s"] - r["wait_s"] - r["intended_s"], p) if r["sent_s"].size else 0.0
    h = out.lag_histogram
    return h.get_value_at_percentile(p) * 1e-6 if h.get_total_count() else 0.0


def _warnings(out: LoadOutcome, results: list[dict[str, Any]]) -> list[str]:
    w: list[str] = []
    if out.mode == "open" and out.requests:
        p99, p999 = _lag(out, 99), _lag(out, LATE_P)
        if p99 > LAG_P99_WARN_S or p999 > LATE_WARN_S:
            w.append(f"the generator fell behind its schedule: schedule lag p99 {p99 * 1e3:.3g} ms, p99.9 "
                     f"{p999 * 1e3:.3g} ms (warn above {LAG_P99_WARN_S * 1e3:g} / {LATE_WARN_S * 1e3:g} ms); latencies "
                     "still run from the intended send times, but the load was burstier than asked; use more --processes "
                     "or a lower --rate")
    busy = [c for c in out.generator_cpu if c["busy"] >= CPU_BUSY_WARN]
    if busy:
        worst = max(busy, key=lambda c: c["busy"])
        w.append(f"the generator saturated its CPU (process {worst['process']}: {worst['busy']:.0%} busy): figures are a "
                 "lower bound on the server; use more --processes or run the generator on another machine")
    if out.requests and out.error_rate > ERROR_WARN:
        kinds = ", ".join(f"{k} {v}" for k, v in out.errors.items())
        w.append(f"{out.requests - out.succeeded} of {out.requests} requests failed ({kinds})")
    examples = [e for r in results for e in r["examples"]]
    if examples:
        w.append(f"{out.counts['other']} requests failed for other reasons, e.g. {examples[0]}")
    abandoned = sum(r["abandoned"] for r in results)
    if out.interrupted:
        w.append(f"interrupted: the run stopped early; {abandoned} requests in flight were abandoned and are not counted")
    if out.records is None:
        w.append(f"{out.requests} requests is more than {RAW_LIMIT}: per-request records were not kept; percentiles come "
                 "from HdrHistograms (3 significant digits) and over-time percentiles are left out")
    if out.scheduled is not None and out.requests < out.scheduled and not out.interrupted:
        w.append(f"{out.scheduled - out.requests} scheduled requests were not sent")
    return w


def with_rate(cfg: LoadConfig, rate: float, duration_s: float) -> LoadConfig:
    """``cfg`` as an open loop at ``rate`` for ``duration_s`` (a step of ``find_max``)."""
    return replace(cfg, mode="open", rate=float(rate), trace=None, concurrency=None, duration_s=duration_s)
