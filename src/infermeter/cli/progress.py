"""The progress bars commands show on stderr while they work (rich.progress): ``bench``'s, and
:class:`NoteBars`, the base of the bars over sweep points and optimize candidates."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Mapping


class BenchProgress:
    """Receives ``bench``'s progress events; one bar per batch size.

    It is also the watchdog for a model that hangs: when no event arrives for
    ``hang_timeout_s`` seconds (one call, or the load, never returns), it prints
    one line and ends the process with exit code 1. Every batch size finished
    before is already in the store. Only the CLI does this; the library never
    ends the process.
    """

    def __init__(self, enabled: bool = True, hang_timeout_s: float | None = None) -> None:
        self.enabled = enabled
        self.finished: list[Any] = []
        self._progress: Any = None
        self._task: Any = None
        self._hang_timeout_s = hang_timeout_s
        self._last = time.monotonic()
        self._where = "loading the model"
        self._done = threading.Event()

    def _watch(self) -> None:
        timeout = float(self._hang_timeout_s or 0.0)
        while not self._done.wait(min(1.0, timeout / 4)):
            idle = time.monotonic() - self._last
            if idle > timeout:
                if self._progress is not None:
                    self._progress.stop()
                kept = f"; {len(self.finished)} finished batch size(s) kept in the store" if self.finished else ""
                os.write(2, (
                    f"error: no progress for {idle:.0f} s while {self._where}: the model seems to hang{kept}; "
                    "fix the model or raise --hang-timeout if one call really takes this long\n"
                ).encode())
                os._exit(1)

    def __enter__(self) -> "BenchProgress":
        if self._hang_timeout_s is not None:
            threading.Thread(target=self._watch, name="infermeter-hang-watchdog", daemon=True).start()
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]} samples"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, event: str, payload: Mapping[str, Any]) -> None:
        self._last = time.monotonic()
        if "batch_size" in payload:
            self._where = f"running batch {payload['batch_size']} ({payload.get('phase', 'starting')})"
        if event == "point-done":
            self.finished.append(payload["result"])
        if self._progress is None:
            return
        if event == "point-start":
            desc = f"batch {payload['batch_size']} ({payload['index'] + 1}/{payload['total']})"
            self._task = self._progress.add_task(desc, total=1.0, n=0)
        elif event == "loop" and self._task is not None:
            desc = f"batch {payload['batch_size']} {payload['phase']}"
            self._progress.update(self._task, completed=payload["fraction"], n=payload["n"], description=desc)
        elif event == "point-done" and self._task is not None:
            self._progress.update(self._task, completed=1.0)


class NoteBars:
    """A transient rich progress display on stderr whose bars carry a ``note`` field (what is
    happening now); subclasses add and update bars from the events they receive."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None

    def __enter__(self) -> "NoteBars":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
