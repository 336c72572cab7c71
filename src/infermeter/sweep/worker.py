"""One sweep point in a fresh interpreter: ``python -m infermeter.sweep.worker``.

Protocol (pyperf ``_manager.py`` style): the parent writes one JSON line on stdin,
``{"kwargs": {...bench keywords, "model": SPEC}}``, and keeps stdin open; the
worker answers with JSON lines on its original stdout, which it keeps for
messages only (the model's own prints go to stderr, so they cannot corrupt the
channel):

* ``{"type": "hello", "pid", "t_ns"}`` — the interpreter is up (before infermeter is imported);
* ``{"type": "ready", "t_ns"}`` — ``infermeter.measure`` imported;
* ``{"type": "progress", "event", "payload", "t_ns"}`` — ``bench()``'s progress events;
* ``{"type": "result", "result": {...Result JSON}}`` — the measurement (ok or failed);
* ``{"type": "error", "error", "error_type"}`` — ``bench()`` raised before it had a result.

``t_ns`` is ``time.monotonic_ns()``, comparable with the parent's on the same machine.
The worker exits 0 after sending a result or an error; any other exit is a crash.
If its stdin reaches end of file before it is done, the parent is gone and it exits at once.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable, Mapping

__all__ = ["main", "start", "finish"]

_EXIT_ORPHANED = 3


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def start() -> tuple[Callable[[Mapping[str, Any]], None], dict[str, Any]] | None:
    """Open the message channel, say hello, read the payload and watch stdin for the
    parent's death. Returns (send, payload), or None when the parent sent nothing.
    Shared by every worker kind (sweep points, optimize candidates)."""
    t_start = time.monotonic_ns()
    msg_fd = os.dup(1)
    os.dup2(2, 1)  # print() in the model lands on stderr, never in the message channel
    channel = os.fdopen(msg_fd, "w", encoding="utf-8", buffering=1)
    lock = threading.Lock()

    def send(message: Mapping[str, Any]) -> None:
        text = json.dumps(message, separators=(",", ":"), default=str)
        with lock:
            channel.write(text + "\n")
            channel.flush()

    send({"type": "hello", "pid": os.getpid(), "t_ns": t_start})
    line = sys.stdin.readline()
    if not line:
        return None
    payload = json.loads(line)

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at end of file: the parent closed the pipe or died
        os._exit(_EXIT_ORPHANED)

    threading.Thread(target=watch_stdin, name="infermeter-worker-stdin", daemon=True).start()
    return send, payload


def finish(code: int) -> None:
    """Flush and leave without interpreter teardown: the work is done, and finalisers can hang or crash."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> int:
    started = start()
    if started is None:
        return _EXIT_ORPHANED
    send, payload = started

    from infermeter.measure import bench

    send({"type": "ready", "t_ns": time.monotonic_ns()})
    kwargs = dict(payload["kwargs"])
    model = kwargs.pop("model")
    finished: list[Any] = []

    def progress(event: str, data: Mapping[str, Any]) -> None:
        if event == "point-done":
            finished.append(data.get("result"))
            return
        send({"type": "progress", "event": event, "payload": {k: _jsonable(v) for k, v in data.items()}, "t_ns": time.monotonic_ns()})

    try:
        result = bench(model, **kwargs, store=False, progress=progress)
    except Exception as exc:
        kept = [r for r in finished if r is not None]
        if kept:  # bench saved a partial (failed) result before raising
            send({"type": "result", "result": kept[-1].to_json_dict()})
        else:
            send({"type": "error", "error": str(exc), "error_type": type(exc).__name__})
        return 0
    if isinstance(result, list):  # find_peak: one result per search step; the last one holds the peak
        result = result[-1]
    send({"type": "result", "result": result.to_json_dict()})
    return 0


if __name__ == "__main__":
    finish(main())
