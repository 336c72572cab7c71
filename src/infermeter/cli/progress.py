"""The progress bar ``bench`` shows on stderr while it works (rich.progress)."""

from __future__ import annotations

from typing import Any, Mapping


class BenchProgress:
    """Receives ``bench``'s progress events; one bar per batch size."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.finished: list[Any] = []
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "BenchProgress":
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
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, event: str, payload: Mapping[str, Any]) -> None:
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
