"""A loopback server that answers in ~1 ms but stalls for STALL seconds every PERIOD seconds.

``python _stall_server.py STALL PERIOD`` prints its port (127.0.0.1, picked by the OS),
then serves ``GET /`` until killed. Time is cut into periods of PERIOD seconds from
the server's start; the last STALL seconds of each are a stall: a request that
arrives in one is held until the stall ends, then answered like any other. So a
request arriving ``u`` seconds into a stall waits ``STALL - u`` seconds more than
usual: the geometry ``load_correctness.py`` derives the expected percentiles from.
(The server holds requests instead of freezing its loop, so the stall's end does not
add a backlog of queued work: the measured figures follow the geometry closely.)
It runs in its own process so that it shares no GIL with the generator.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiohttp import web

SERVICE_S = 0.001


def app(stall_s: float, period_s: float) -> web.Application:
    t0 = time.monotonic()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        phase = (time.monotonic() - t0) % period_s
        if phase >= period_s - stall_s:
            await asyncio.sleep(period_s - phase)  # held until the stall ends
        await asyncio.sleep(SERVICE_S)
        return web.json_response({"ok": True})

    a = web.Application()
    a.router.add_get("/", handle)
    return a


async def main(stall_s: float, period_s: float) -> None:
    runner = web.AppRunner(app(stall_s, period_s), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(float(sys.argv[1]), float(sys.argv[2])))
