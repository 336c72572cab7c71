"""Servers on loopback for the load tests: each in its own process (``_servers.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent


def _start(mode: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(HERE / "_servers.py"), mode], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.strip().isdigit():
            raise RuntimeError(f"test server '{mode}' did not start (printed {line!r})")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def server() -> Iterator[str]:
    yield from _start("general")


@pytest.fixture(scope="session")
def stall_server() -> Iterator[str]:
    yield from _start("stall")


@pytest.fixture(scope="session")
def capacity_server() -> Iterator[str]:
    yield from _start("capacity")


@pytest.fixture
def free_port() -> int:
    """A port with nothing listening on it (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
