"""``infermeter hardware``: the shipped spec-sheet table, or one entry of it (or of a file)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ._app import app, handle_errors
from .options import DebugOpt


@app.command()
@handle_errors
def hardware(
    name: Annotated[
        Optional[str],
        typer.Argument(help="an entry's name or alias (case-insensitive), or a YAML/JSON file of one entry to check"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON (HardwareSpec fields)")] = False,
    debug: DebugOpt = False,
) -> None:
    """List the spec-sheet table: dense peaks per dtype, memory bandwidth and size, source.

    These are vendors' published figures (sparsity-doubled headlines halved), for
    --hardware in `infermeter implied` and `infermeter predict`. CPU peaks are
    derived from cores x clock x FLOP/cycle; each entry's notes say how.
    """
    from rich.console import Console

    from ..predict.hardware import get_spec, table
    from ..report.hardware_table import render_hardware_entry, render_hardware_table

    console = Console(highlight=False)
    if name is None:
        specs = table()
        if json_out:
            typer.echo(json.dumps([s.model_dump(mode="json") for s in specs], indent=2))
        else:
            render_hardware_table(specs, console)
        return
    spec = get_spec(name)
    if json_out:
        typer.echo(spec.model_dump_json(indent=2))
    else:
        render_hardware_entry(spec, console)
