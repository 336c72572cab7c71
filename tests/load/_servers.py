"""Test servers for the load generator, run as a subprocess: ``python _servers.py MODE``.

Prints the port it listens on (127.0.0.1, picked by the OS), then serves until killed.
Each runs in its own process so that it does not share a GIL with the generator.

* ``general``: ``/fast`` (JSON at once), ``/flaky`` (500 for every other request),
  ``/v2/models/m`` (OIP metadata) and ``/v2/models/m/infer`` (checks the request against
  the metadata, JSON or binary extension, decoding the binary body itself; the last
  decoded request is at ``/_last``), ``/v2/models/bad/infer`` (not JSON),
  ``/v1/models`` and ``/v1/chat/completions`` (5 SSE chunks 10 ms apart),
  ``/broken/v1/chat/completions`` (a stream that is not SSE).
  ``/drop`` closes every other connection without an answer.
* ``stall``: ``/slow`` answers after 20 ms, but the whole server freezes (a blocking
  sleep) for the second half of every 2 s from its start.
* ``capacity``: ``/work`` busy-computes 5 ms, one request at a time (~200 requests/s);
  ``/ramp`` answers after 30 ms per second since its burst began (a burst ends when no
  request came for 0.1 s), concurrently: latency rises at a steady throughput.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time

import numpy as np
from aiohttp import web

META = {"name": "m", "platform": "test", "inputs": [
    {"name": "x", "datatype": "FP32", "shape": [-1, 16]},
    {"name": "ids", "datatype": "INT64", "shape": [-1, -1]},
], "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]}
NP = {"FP32": "<f4", "INT64": "<i8"}
STATE: dict = {"flaky": 0, "last": None, "t0": time.monotonic()}


def _check(inputs: list, arrays: dict) -> dict:
    """Validate decoded inputs against META (batch 2, d1 = 8); return the summary /_last shows."""
    want = {m["name"]: m for m in META["inputs"]}
    out = []
    for t in inputs:
        m = want[t["name"]]
        shape = [int(d) for d in t["shape"]]
        assert t["datatype"] == m["datatype"], t
        assert len(shape) == len(m["shape"]) and all(w in (-1, s) for w, s in zip(m["shape"], shape)), t
        a = arrays[t["name"]]
        assert list(a.shape) == shape, (a.shape, shape)
        out.append({"name": t["name"], "shape": shape, "datatype": t["datatype"], "sum": float(a.astype(np.float64).sum())})
    assert sorted(x["name"] for x in out) == sorted(want)
    return {"inputs": out}


async def infer(request: web.Request) -> web.Response:
    body = await request.read()
    hl = request.headers.get("Inference-Header-Content-Length")
    try:
        if hl is None:
            doc = json.loads(body)
            arrays = {t["name"]: np.asarray(t["data"], dtype=NP[t["datatype"]]).reshape(t["shape"]) for t in doc["inputs"]}
            STATE["last"] = {"binary": False, **_check(doc["inputs"], arrays)}
        else:
            n = int(hl)
            doc = json.loads(body[:n])
            pos, arrays = n, {}
            for t in doc["inputs"]:
                size = int(t["parameters"]["binary_data_size"])
                arrays[t["name"]] = np.frombuffer(body[pos:pos + size], NP[t["datatype"]]).reshape(t["shape"])
                pos += size
            assert pos == len(body), "trailing bytes"
            STATE["last"] = {"binary": True, **_check(doc["inputs"], arrays)}
    except Exception as exc:  # noqa: BLE001
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return web.json_response({"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [0.5, 0.5]}]})


async def drop(request: web.Request) -> web.Response:
    await request.read()
    STATE["drop"] = STATE.get("drop", 0) + 1
    if STATE["drop"] % 2 == 0:
        assert request.transport is not None
        request.transport.close()  # no answer: the client sees the connection end
    return web.json_response({"ok": True})


async def chat(request: web.Request) -> web.StreamResponse:
    req = await request.json()
    assert req["stream"] is True and req["messages"][0]["role"] == "user"
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    first = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}  # no content: not a token
    await resp.write(f"data: {json.dumps(first)}\n\n".encode())
    for i in range(5):
        await asyncio.sleep(0.010)
        chunk = {"choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]}
        await resp.write(f": keep-alive\n\ndata: {json.dumps(chunk)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def broken_stream(request: web.Request) -> web.StreamResponse:
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"hello, this is not SSE\n\n")
    return resp


def general() -> web.Application:
    async def fast(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    async def flaky(request: web.Request) -> web.Response:
        await request.read()
        STATE["flaky"] += 1
        if STATE["flaky"] % 2 == 0:
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"ok": True})

    async def bad(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="this is not json", content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/fast", fast)
    app.router.add_route("*", "/flaky", flaky)
    app.router.add_get("/v2/models/m", lambda r: web.json_response(META))
    app.router.add_post("/v2/models/m/infer", infer)
    app.router.add_post("/v2/models/bad/infer", bad)
    app.router.add_get("/_last", lambda r: web.json_response(STATE["last"]))
    app.router.add_route("*", "/drop", drop)
    app.router.add_get("/v1/models", lambda r: web.json_response({"data": [{"id": "tiny-llm"}]}))
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/broken/v1/chat/completions", broken_stream)
    return app


def stall() -> web.Application:
    async def slow(request: web.Request) -> web.Response:
        await request.read()
        phase = (time.monotonic() - STATE["t0"]) % 2.0
        if phase >= 1.0:
            time.sleep(2.0 - phase)  # freeze the whole server until the window ends
        await asyncio.sleep(0.020)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/slow", slow)
    return app


def capacity() -> web.Application:
    async def work(request: web.Request) -> web.Response:
        await request.read()
        end = time.perf_counter() + 0.005
        x = 0.0
        while time.perf_counter() < end:  # busy: the event loop serves nothing else meanwhile
            x += math.sqrt(2.0)
        return web.json_response({"ok": True})

    ramp = {"start": 0.0, "last": -1.0}

    async def rising(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        if now - ramp["last"] > 0.1:
            ramp["start"] = now
        ramp["last"] = now
        await asyncio.sleep(0.03 * (now - ramp["start"]))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/work", work)
    app.router.add_route("*", "/ramp", rising)
    return app


async def main(mode: str) -> None:
    app = {"general": general, "stall": stall, "capacity": capacity}[mode]()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    STATE["t0"] = time.monotonic()
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1]))
