"""The ``infermeter`` command: thin typer commands that parse, call the API, render.

Only typer is imported at start-up; every command imports what it needs, so
``infermeter --help`` stays fast. Errors: an :class:`InfermeterError` prints one
line and exits with its code (2 usage, 1 failed run); ``--debug`` shows the
traceback; Ctrl-C exits 130 after saying what was kept.

Each command group lives in its own module and registers itself on ``app``.
"""

from __future__ import annotations

from . import bench, calibrate, check, count, hardware, implied, load, misc, optimize, plan, predict, profile, report, runs, serve, sweep  # noqa: F401  (register the commands)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    app()
