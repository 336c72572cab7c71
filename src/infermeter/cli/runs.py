"""``infermeter runs …`` and ``infermeter compare``: what the store holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from ._app import app, handle_errors, open_store, runs_app
from .options import DebugOpt, StoreOpt, TagOpt, parse_fraction, parse_tags

@runs_app.command("list")
@handle_errors
def runs_list(
    limit: Annotated[int, typer.Option("--limit", "-n", help="how many runs")] = 50,
    spec: Annotated[Optional[str], typer.Option("--spec", help="only runs of this model spec")] = None,
    tag: TagOpt = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="only runs of this sweep")] = None,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List stored runs, newest first."""
    from rich.console import Console

    from ..report.console import render_runs

    with open_store(store) as st:
        render_runs(st.list(limit=limit, spec=spec, sweep=sweep, tags=parse_tags(tag)), Console(highlight=False))


@runs_app.command("show")
@handle_errors
def runs_show(
    run_id: Annotated[str, typer.Argument(help="run id (a unique prefix is enough)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the full result JSON")] = False,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show one run: its table, and the command that reproduces it."""
    from rich.console import Console

    from ..report.console import render_results
    from ..report.export import to_json

    with open_store(store) as st:
        r = st.get(run_id)
    if json_out:
        typer.echo(to_json([r]))
        return
    console = Console(highlight=False)
    render_results([r], console)
    console.print(f"reproduce: {reproduce_command(r)}", markup=False)


@runs_app.command("export")
@handle_errors
def runs_export(
    run_ids: Annotated[List[str], typer.Argument(help="run ids (unique prefixes)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or csv")] = "json",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="file to write (default: stdout)")] = None,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Export runs as JSON (full schema, raw samples) or CSV (one row per run)."""
    from ..errors import UsageError
    from ..report.export import to_csv, to_json, write_text

    if fmt not in ("json", "csv"):
        raise UsageError(f"unknown --format '{fmt}'; use json or csv")
    with open_store(store) as st:
        results = [st.get(i) for i in run_ids]
    text = to_json(results) if fmt == "json" else to_csv(results)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)


@runs_app.command("tag")
@handle_errors
def runs_tag(
    run_id: Annotated[str, typer.Argument(help="run id (a unique prefix is enough)")],
    tags: Annotated[List[str], typer.Argument(help="NAME=VALUE labels")],
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Add or replace tags on a stored run."""
    parsed = parse_tags(tags)
    with open_store(store) as st:
        typer.echo(f"tagged {st.set_tags(run_id, parsed)}: " + ", ".join(f"{k}={v}" for k, v in parsed.items()))


@runs_app.command("rm")
@handle_errors
def runs_rm(
    run_ids: Annotated[List[str], typer.Argument(help="run ids (unique prefixes)")],
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Delete runs from the store."""
    with open_store(store) as st:
        for i in run_ids:
            typer.echo(f"deleted {st.delete(i)}")


@app.command()
@handle_errors
def compare(
    baseline: Annotated[str, typer.Argument(help="baseline run id")],
    candidate: Annotated[str, typer.Argument(help="candidate run id")],
    min_effect: Annotated[str, typer.Option("--min-effect", help="smallest ratio change called a difference")] = "2%",
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Compare two runs: ratio of medians and of p99 with 95% CIs, and significance."""
    import json

    from rich.console import Console

    from ..errors import UsageError
    from ..report.console import render_comparison
    from ..stats import compare_samples

    effect = parse_fraction(min_effect, "--min-effect")
    with open_store(store) as st:
        a, b = st.get(baseline), st.get(candidate)
    for r in (a, b):
        if r.latency is None or len(r.latency.samples) < 2:
            raise UsageError(f"run {r.id} has no latency samples to compare; compare runs that finished")
    cmp = compare_samples(a.latency.samples, b.latency.samples, min_effect=effect)  # type: ignore[union-attr]
    if json_out:
        data = cmp.model_dump() if hasattr(cmp, "model_dump") else dict(vars(cmp))
        typer.echo(json.dumps({"baseline": a.id, "candidate": b.id, **data}, indent=2, default=str))
        return
    render_comparison(a, b, cmp, Console(highlight=False))


def reproduce_command(r: Any) -> str:
    """The ``infermeter bench`` command line that repeats a stored run."""
    import shlex

    c = r.config
    parts = ["infermeter", "bench", r.model.spec, "--batch", str(r.batch_size)]
    for s in c.get("inputs") or []:
        parts += ["--input", s]
    for k, v in (c.get("dims") or {}).items():
        parts += ["--dim", f"{k}={v}"]
    for key, flag in (("data", "--data"), ("dtype", "--dtype"), ("threads", "--threads"), ("max_iters", "--max-iters")):
        if c.get(key) is not None:
            parts += [flag, str(c[key])]
    for p in c.get("providers") or []:
        parts += ["--provider", p]
    if c.get("device", "cpu") != "cpu":
        parts += ["--device", c["device"]]
    parts += ["--precision", str(c.get("precision", 0.01)), "--max-time", str(c.get("max_time_s", 30.0))]
    if c.get("min_time_s"):
        parts += ["--min-time", str(c["min_time_s"])]
    if c.get("keep_gc"):
        parts.append("--keep-gc")
    parts += ["--seed", str(c.get("seed", 0))]
    return " ".join(shlex.quote(p) for p in parts)
