"""``infermeter report``: one self-contained HTML file (and PNGs) of stored runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ._app import app, handle_errors, open_store
from .options import DebugOpt, StoreOpt


@app.command()
@handle_errors
def report(
    run_ids: Annotated[Optional[List[str]], typer.Argument(help="run ids (unique prefixes)")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="every result of this sweep")] = None,
    invocation: Annotated[Optional[str], typer.Option("--invocation", help="every run of this invocation (one per batch size)")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="HTML file to write (self-contained: no network when viewed)")] = None,
    png: Annotated[Optional[Path], typer.Option("--png", help="also write every chart as DIR/<chart>.png (created if missing)")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="page title (default: the models' specs)")] = None,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Write an HTML report of stored runs: distributions, timelines, batch and sweep curves, comparisons, tables."""
    from ..errors import UsageError
    from ..report.export import check_writable, write_text

    if not run_ids and sweep is None and invocation is None:
        raise UsageError("no runs given; name run ids, or --invocation ID, or --sweep ID (see infermeter runs list)")
    if html is None and png is None:
        raise UsageError("nothing to write; give --html FILE (and/or --png DIR)")
    # Destinations first: a bad path fails before the store is read or anything is drawn.
    if html is not None:
        check_writable(html)
    from ..report.plots import check_png_dir, render_pngs, require_matplotlib

    if png is not None:
        check_png_dir(png)
    require_matplotlib()
    with open_store(store) as st:
        results = [st.get(i) for i in run_ids or []]
        if invocation is not None:
            results += st.invocation(invocation)
        if sweep is not None:
            results += st.sweep(sweep)
    results = list({r.id: r for r in results}.values())  # each run once, in the order first named
    if not results:
        raise UsageError("the runs named hold no results to report")
    from ..report.html import render_html

    text = render_html(results, title) if html is not None else None  # drawn before anything is written
    pngs = render_pngs(results, png) if png is not None else []
    if html is not None and text is not None:
        path = write_text(html, text)
        typer.echo(f"wrote {path} ({len(results)} run{'s' if len(results) != 1 else ''})")
    if png is not None:
        typer.echo(f"wrote {len(pngs)} PNG chart{'s' if len(pngs) != 1 else ''} to {png}")
