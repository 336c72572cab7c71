"""Run one point in a fresh worker process and say how it ended.

A spawned interpreter (``python -m infermeter.sweep.worker``, never a fork) so no
allocator state, JIT cache or imported module of one point reaches another. The
worker gets its own session (process group): Ctrl-C in the terminal reaches only
the sweep, which then ends the workers itself, and a timeout kills the worker
with everything it started.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Mapping, Optional

__all__ = ["WorkerOutcome", "run_worker", "STDERR_TAIL_LINES"]

STDERR_TAIL_LINES = 20
_STDERR_KEEP = 200
_LINE_MAX = 500
_POLL_S = 0.1


@dataclass
class WorkerOutcome:
    """How one worker process ended; plain data so it can travel back from a Ray task.

    ``reason``: ``ok`` (sent a result or an error and exited 0), ``crashed`` (non-zero
    exit or a signal), ``timeout`` (killed at the point timeout), ``interrupted``
    (killed because the sweep was stopped), ``no-result`` (exited 0 without answering),
    ``launch-failed``.
    """

    reason: str = "ok"
    detail: str = ""
    result: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    error_type: Optional[str] = None
    returncode: Optional[int] = None
    pid: Optional[int] = None
    stderr_tail: list[str] = field(default_factory=list)
    t_launch_ns: Optional[int] = None
    t_hello_ns: Optional[int] = None
    t_ready_ns: Optional[int] = None
    t_point_start_ns: Optional[int] = None
    t_end_ns: Optional[int] = None
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.reason == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WorkerOutcome":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def timings(self) -> dict[str, Optional[float]]:
        """Seconds from launch to each milestone the worker reported (monotonic clock)."""

        def since(t: Optional[int]) -> Optional[float]:
            return (t - self.t_launch_ns) / 1e9 if t is not None and self.t_launch_ns is not None else None

        return {
            "to_interpreter_s": since(self.t_hello_ns), "to_ready_s": since(self.t_ready_ns),
            "to_point_start_s": since(self.t_point_start_ns), "wall_s": since(self.t_end_ns),
        }

    def summary(self) -> dict[str, Any]:
        """What the sweep stores with the result (``scenario_details["sweep_process"]``)."""
        out: dict[str, Any] = {"pid": self.pid, "host": self.host, "exit": self.reason, "returncode": self.returncode, **self.timings()}
        if self.detail:
            out["detail"] = self.detail
        if self.reason != "ok" or (self.result or {}).get("status") == "failed":
            out["stderr_tail"] = list(self.stderr_tail)
        return out


def describe_exit(returncode: int) -> tuple[str, str]:
    """(reason, human detail) for a worker that ended without answering."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == getattr(signal, "SIGKILL", 9):
            return "crashed", f"killed by {name} (likely out of memory: the kernel's OOM killer sends SIGKILL)"
        return "crashed", f"killed by {name}"
    return "crashed", f"exited with code {returncode}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)  # the worker leads its own session: pgid == pid
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass


def run_worker(
    payload: Mapping[str, Any],
    *,
    timeout_s: Optional[float] = None,
    on_message: Optional[Callable[[dict[str, Any]], None]] = None,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[str] = None,
    cancel: Optional[threading.Event] = None,
    python: str = sys.executable,
    module: str = "infermeter.sweep.worker",
) -> WorkerOutcome:
    """Start a worker (``python -m module``, the sweep's by default), feed it ``payload``, wait
    for it (at most ``timeout_s``), return how it went.

    ``on_message`` is called from a reader thread with every progress message.
    Setting ``cancel`` kills the worker (reason ``interrupted``). Never raises for
    anything the worker does.
    """
    import socket

    out = WorkerOutcome(host=socket.gethostname())
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_KEEP)
    out.t_launch_ns = time.monotonic_ns()
    try:
        proc = subprocess.Popen(
            [python, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(env) if env is not None else None, cwd=cwd,
            start_new_session=hasattr(os, "killpg"),
        )
    except OSError as exc:
        out.reason, out.detail = "launch-failed", f"could not start {python}: {exc}"
        out.t_end_ns = time.monotonic_ns()
        return out
    out.pid = proc.pid
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

    def read_messages(stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                msg = json.loads(raw)
            except ValueError:
                tail.append("(unreadable message) " + raw.decode(errors="replace").rstrip()[:_LINE_MAX])
                continue
            kind = msg.get("type")
            if kind == "hello":
                out.t_hello_ns = msg.get("t_ns")
            elif kind == "ready":
                out.t_ready_ns = msg.get("t_ns")
            elif kind == "result":
                out.result = msg.get("result")
            elif kind == "error":
                out.error, out.error_type = msg.get("error"), msg.get("error_type")
            elif kind == "progress":
                if msg.get("event") == "point-start" and out.t_point_start_ns is None:
                    out.t_point_start_ns = msg.get("t_ns")
                if on_message is not None:
                    try:
                        on_message(msg)
                    except Exception:  # a display problem must not lose the measurement
                        pass

    def read_stderr(stream: IO[bytes]) -> None:
        for raw in stream:
            tail.append(raw.decode(errors="replace").rstrip("\n")[:_LINE_MAX])

    readers = [
        threading.Thread(target=read_messages, args=(proc.stdout,), daemon=True),
        threading.Thread(target=read_stderr, args=(proc.stderr,), daemon=True),
    ]
    for t in readers:
        t.start()
    try:
        proc.stdin.write(json.dumps(dict(payload), default=str).encode() + b"\n")
        proc.stdin.flush()
    except OSError:
        pass  # it died already: its exit status says why
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    killed_for: Optional[str] = None
    try:
        while proc.poll() is None:
            if cancel is not None and cancel.is_set():
                killed_for = "interrupted"
            elif deadline is not None and time.monotonic() >= deadline:
                killed_for = "timeout"
            if killed_for:
                _kill_group(proc)
                break
            try:
                proc.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                pass
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        proc.wait()
        out.t_end_ns = time.monotonic_ns()
        for t in readers:
            t.join(timeout=1.0)
        if any(t.is_alive() for t in readers) and hasattr(os, "killpg"):
            # Children it started still hold the pipes: the group is alive, so its id is still ours.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for t in readers:
                t.join(timeout=5.0)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
    out.returncode = proc.returncode
    out.stderr_tail = list(tail)[-STDERR_TAIL_LINES:]
    if killed_for == "timeout":
        out.reason, out.detail = "timeout", f"still running after the point timeout of {timeout_s:g} s; killed"
    elif killed_for == "interrupted":
        out.reason, out.detail = "interrupted", "stopped because the sweep was interrupted"
    elif proc.returncode != 0:
        out.reason, out.detail = describe_exit(proc.returncode)
    elif out.result is None and out.error is None:
        out.reason, out.detail = "no-result", "exited with code 0 without sending a result"
    return out
