"""A generator process: ``python -m infermeter.load.worker`` (spawned, never forked).

A fresh interpreter, like the sweep's workers: no inherited event loop, sockets
or threads, and no re-import of the caller's ``__main__`` (which
``multiprocessing``'s spawn would do, running an unguarded script again). It
leads its own session, so Ctrl-C in the terminal reaches only the parent, which
tells the workers to stop.

The conversation is pickled frames (8-byte big-endian length + pickle) on
stdin/stdout; the worker moves its stdout aside first so a library printing
cannot corrupt it::

    parent -> worker: Part, then ("go", t0), later perhaps ("stop",) or ("interrupt",)
    worker -> parent: ("ready", pid), ("progress", {...}) twice a second, then ("result", {...}) or ("error", text)
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from typing import Any

__all__ = ["write_frame", "read_frame", "FrameReader", "main"]

_HEADER = struct.Struct("!Q")


def write_frame(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        b = os.read(fd, min(left, 1 << 20))
        if not b:
            raise EOFError("the other end closed the pipe")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_frame(fd: int) -> Any:
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, n))


class FrameReader:
    """``fileno()`` + ``recv()`` over a pipe: what the engine's control hook and
    ``multiprocessing.connection.wait`` expect."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def recv(self) -> Any:
        return read_frame(self.fd)


def main() -> None:
    out = os.dup(1)
    os.dup2(2, 1)  # print() now goes to stderr; frames go to `out`
    try:
        part = read_frame(0)
        write_frame(out, ("ready", os.getpid()))
        msg = read_frame(0)
        if msg[0] != "go":
            return
        from .engine import run_part

        res = run_part(part, float(msg[1]), report=lambda d: write_frame(out, ("progress", d)), control=FrameReader(0))
        write_frame(out, ("result", res))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        try:
            write_frame(out, ("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
        sys.exit(1)


if __name__ == "__main__":
    main()
