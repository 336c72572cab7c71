"""A lean HTTP/1.1 keep-alive client for the generator's hot path: asyncio protocols + httptools.

Why not aiohttp here: aiohttp costs about 60-80 µs of Python per request (its
request/response objects, middleware hooks, header multidicts, timers), which
caps one generator process near 12k requests/s on this project's machine, and a
pacer that must hold a schedule to well under a millisecond has to leave most
of the core free. Plain request/response over loopback needs none of that:
this client writes a pre-built request (request line, headers and body encoded
once per distinct body) to an idle keep-alive connection, parses the answer
with httptools (the llhttp parser in C that uvicorn uses), and resolves a
future. aiohttp stays in charge of everything else (https, streamed responses,
metadata and probes), so this module handles only ``http://`` and whole
responses.

Semantics kept from the aiohttp path (the engine records both the same way):

* one connection per request in flight; an open loop against a slow server
  opens as many as it needs, unless ``connections`` caps them (then a request
  waits for a free one, first come first served, and :meth:`request` says how
  long it waited); a connection goes back to the pool only when the server
  keeps it alive;
* ``timeout_s`` bounds the whole request (connect included), ``connect_timeout_s``
  the TCP connect; a timed-out or cancelled request closes its connection, so a
  late answer can never be read as another request's;
* ``connect_s``: the time to open a new connection (NaN when one was reused);
  ``first_byte``: when the first byte of the answer arrived (perf_counter).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["available", "Http1Client", "Answer", "build_request", "ServerClosed"]

now = time.perf_counter


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("httptools") is not None


class ServerClosed(ConnectionError):
    """The server closed the connection before the answer was complete."""


class Answer:
    """One complete response: status, headers (lower-case names), body, first-byte time."""

    __slots__ = ("status", "headers", "body", "first_byte")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, first_byte: float) -> None:
        self.status, self.headers, self.body, self.first_byte = status, headers, body, first_byte


class _Headers(dict):  # type: ignore[type-arg]
    """Header lookup by any case, as ``protocols.classify`` expects of aiohttp's headers."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, key.lower(), default)


def build_request(method: str, url: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The bytes of one request to ``url`` (request line, Host, the headers, Content-Length, body)."""
    u = urlsplit(url)
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {u.netloc}"]
    skip = {"host", "content-length", "connection", "transfer-encoding"}
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in skip]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time (no pipelining)."""

    def __init__(self, client: Http1Client) -> None:
        import httptools

        self.client = client
        self.transport: Any = None
        self.parser = httptools.HttpResponseParser(self)
        self.parse_error = httptools.HttpParserError
        self.waiter: asyncio.Future[Answer] | None = None
        self._reset()

    def _reset(self) -> None:
        self.first_byte = math.nan
        self.headers: _Headers = _Headers()
        self.body: list[bytes] = []
        self.headers_done = False

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.first_byte != self.first_byte:  # NaN: the first bytes of this answer
            self.first_byte = now()
        try:
            self.parser.feed_data(data)
        except self.parse_error as exc:
            self._fail(ValueError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._forget(self)
        w = self.waiter
        if w is None or w.done():
            return
        self.waiter = None
        h = self.headers
        if self.headers_done and "content-length" not in h and "chunked" not in h.get("transfer-encoding", ""):
            # a body delimited by the connection's end (HTTP/1.0 style) is complete now
            w.set_result(Answer(self.parser.get_status_code(), h, b"".join(self.body), self.first_byte))
        else:
            w.set_exception(ServerClosed("the server closed the connection before answering in full"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        w = self.waiter
        self.waiter = None
        answer = Answer(self.parser.get_status_code(), self.headers, b"".join(self.body), self.first_byte)
        keep = self.parser.should_keep_alive()
        self._reset()
        if keep and w is not None and not w.done():
            self.client._release(self)
        else:
            self.close()
        if w is not None and not w.done():
            w.set_result(answer)

    # use
    def send(self, data: bytes, waiter: asyncio.Future[Answer]) -> None:
        self.waiter = waiter
        self.transport.write(data)

    def _fail(self, exc: Exception) -> None:
        w = self.waiter
        self.waiter = None
        self.close()
        if w is not None and not w.done():
            w.set_exception(exc)

    def close(self) -> None:
        self.client._forget(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class Http1Client:
    """Requests to one ``http://host:port`` over a pool of keep-alive connections."""

    def __init__(self, url: str, connect_timeout_s: float, timeout_s: float, connections: int | None = None) -> None:
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"the lean client speaks plain http://, not {url}")
        self.host, self.port = u.hostname, u.port or 80
        self.connect_timeout_s, self.timeout_s = connect_timeout_s, timeout_s
        self.limit = connections
        self._idle: list[_Conn] = []
        self._all: set[_Conn] = set()
        self._opening = 0  # connections being opened (they count against the limit)
        self._queue: collections.deque[asyncio.Future[_Conn | None]] = collections.deque()

    def _forget(self, conn: _Conn) -> None:
        if conn in self._all:
            self._all.discard(conn)
            self._hand(None)  # a slot is free: the next waiter opens a connection
        try:
            self._idle.remove(conn)
        except ValueError:
            pass

    def _hand(self, conn: _Conn | None) -> bool:
        """Give ``conn`` (or, None, a free slot) to the longest-waiting request; False when none waits."""
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    def _release(self, conn: _Conn) -> None:
        if not self._hand(conn):
            self._idle.append(conn)

    async def _connect(self, deadline: float) -> _Conn:
        loop = asyncio.get_running_loop()
        self._opening += 1
        try:
            limit = max(0.0, min(self.connect_timeout_s, deadline - now()))
            _, conn = await asyncio.wait_for(loop.create_connection(lambda: _Conn(self), self.host, self.port), limit)
        except BaseException:
            self._hand(None)  # the slot this attempt held is free again
            raise
        finally:
            self._opening -= 1
        self._all.add(conn)
        return conn

    async def request(self, data: bytes) -> tuple[Answer, float, float]:
        """Send ``data`` (see :func:`build_request`); the answer, the connect time (NaN: a connection
        was reused) and the time spent waiting for a free connection (0 without ``connections``).
        ``timeout_s`` counts from the call, the wait included."""
        loop = asyncio.get_running_loop()
        start = now()
        deadline = start + self.timeout_s
        waited = 0.0
        conn: _Conn | None = None
        if self._idle:
            conn = self._idle.pop()
        elif self.limit is not None and len(self._all) + self._opening >= self.limit:
            slot: asyncio.Future[_Conn | None] = loop.create_future()
            self._queue.append(slot)
            try:
                conn = await asyncio.wait_for(slot, max(0.0, deadline - now()))
            except BaseException:
                if slot.done() and not slot.cancelled() and slot.result() is not None:
                    self._release(slot.result())  # handed over as we gave up: pass it on
                raise
            waited = now() - start
        connect = math.nan
        if conn is None:
            c0 = now()
            conn = await self._connect(deadline)
            connect = now() - c0
        waiter: asyncio.Future[Answer] = loop.create_future()
        timer = loop.call_later(max(deadline - now(), 0.0), _expire, conn, waiter)
        conn.send(data, waiter)
        try:
            return await waiter, connect, waited
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled():  # cancelled (drain, Ctrl-C): never reuse this connection
                conn.waiter = None
                conn.close()

    def close(self) -> None:
        for c in list(self._all):
            c.close()
        self._idle.clear()


def _expire(conn: _Conn, waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        conn._fail(asyncio.TimeoutError())
