"""Loopback servers for the load benchmarks: nginx with a fixed JSON body, and process-group hygiene.

Every server starts in its own session (process group) so that stopping it stops
all of it (nginx's master and worker, a helper's children), whatever happened
in the benchmark.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BODY = '{"ok":true}'

NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_nginx() -> str | None:
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def stop_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group ``proc`` leads (started with ``start_new_session=True``), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:  # the leader may be gone while children of its group live on
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(grace_s)


def wait_http(url: str, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not answer within {timeout_s:g} s: {last}")


@contextmanager
def nginx(binary: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """nginx, one worker, answering ``BODY`` to any path on a free 127.0.0.1 port: yields (url, proc)."""
    tmp = Path(tempfile.mkdtemp(prefix="infermeter-nginx-"))
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, body=BODY))
    proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(conf)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr.log", "wb"))
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            wait_http(url, proc)
        except RuntimeError as exc:
            log = "".join((tmp / f).read_text(errors="replace") for f in ("stderr.log", "error.log") if (tmp / f).exists())
            raise RuntimeError(f"nginx did not start: {exc}\n{log.strip()}") from None
        yield url, proc
    finally:
        stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def worker_pids(proc: subprocess.Popen) -> list[int]:
    """The children of ``proc`` (nginx's workers), for CPU accounting."""
    import psutil

    try:
        return [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        return []


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (those still alive)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) so far of ``pid`` and each of its descendants, by pid."""
    import psutil

    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def steady_cpu(samples: list[tuple[float, dict[int, float]]], start: float, end: float) -> float | None:
    """Cores busy between ``start`` and ``end`` (perf_counter) from ``(t, tree_cpu)`` samples: the CPU added
    between the first sample at or after ``start`` and the last at or before ``end``, over the time between them."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    (t0, a), (t1, b) = inside[0], inside[-1]
    return sum(v - a.get(pid, 0.0) for pid, v in b.items()) / (t1 - t0)
