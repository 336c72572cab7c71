"""``infermeter zoo`` and ``infermeter env``: what this installation and this machine offer."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app, handle_errors
from .options import DebugOpt

@app.command()
@handle_errors
def zoo(debug: DebugOpt = False) -> None:
    """List the built-in models (built in code, no downloads: random weights, or trained here in seconds on scikit-learn's digits)."""
    from rich.console import Console

    from ..models import list_zoo
    from ..report.console import render_zoo

    render_zoo(list_zoo(), Console(highlight=False))


@app.command()
@handle_errors
def env(
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    debug: DebugOpt = False,
) -> None:
    """Show this machine's hardware and software, and the noise warnings that apply now."""
    from rich.console import Console

    from ..env import capture_env
    from ..report.console import render_env

    e = capture_env(probe_gpu=True)
    if json_out:
        typer.echo(e.model_dump_json(indent=2))
    else:
        render_env(e, Console(highlight=False))
