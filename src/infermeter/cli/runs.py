"""``infermeter runs …`` and ``infermeter compare``: what the store holds, and runs side by side."""

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
    if r.op_profile is not None:
        from ..report.profile_table import render_profile

        render_profile(r, console)
    else:
        render_results([r], console)
    if r.prediction is not None:
        from ..report.predict_table import render_predictions

        render_predictions([r.prediction], console)
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
    run_ids: Annotated[
        Optional[List[str]], typer.Argument(help="run ids (unique prefixes) or NAME=VALUE tags; the first is the baseline")
    ] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="compare the points of this sweep (rows = points)")] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="baseline run id (default: the first run or point)")] = None,
    columns: Annotated[
        Optional[str],
        typer.Option("--columns", help="comma-separated: p50,p90,p95,p99,p999,mean,throughput (value + ratio), "
                     "spec,backend,device,batch,scenario,status,count,created,tags,headline,p"),
    ] = None,
    min_effect: Annotated[str, typer.Option("--min-effect", help="smallest ratio change called a difference")] = "2%",
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Compare runs (or a sweep's points) with a baseline: values and ratios with 95% CIs, and significance.

    Significance: the bootstrap CI of the ratio excludes 1 and the change is at least --min-effect
    (for p50 a Mann-Whitney U test must reject too), so identical code is not called different.
    Runs without samples (failed) are shown but not tested.
    """
    from rich.console import Console

    from ..compare import METRICS, compare_runs, get_run, get_sweep_points, resolve_runs
    from ..errors import UsageError
    from ..report.compare import COLUMNS, render_comparison_table

    effect = parse_fraction(min_effect, "--min-effect")
    default = "count,p50,p99,throughput" if sweep and not run_ids else "spec,batch,count,p50,p99,throughput"
    cols = [c.strip() for c in (columns or default).split(",") if c.strip()]
    bad = [c for c in cols if c not in COLUMNS]
    if bad or not cols:
        raise UsageError(f"unknown --columns {', '.join(bad) or '(none)'}; choose from {', '.join(COLUMNS)}")
    if not run_ids and not sweep:
        raise UsageError("give run ids to compare (the first is the baseline) or --sweep SWEEP_ID")
    with open_store(store) as st:
        results = resolve_runs(st, run_ids or [])
        if sweep:
            results += get_sweep_points(st, sweep)
        unique = list({r.id: r for r in results}.values())
        base: int | str = 0
        if baseline is not None:
            extra = get_run(st, baseline)
            base = extra.id
            if extra.id not in {r.id for r in unique}:
                unique.insert(0, extra)
    metrics = [c for c in cols if c in METRICS]
    if len(unique) == 2:  # the two-run summary always reports p50 and p99
        metrics = list(dict.fromkeys([*metrics, "p50", "p99"]))
    table = compare_runs(unique, base, metrics or ["p50"], min_effect=effect)
    if json_out:
        import json

        doc = table.model_dump(mode="json")
        doc.update(table.pair_summary() or {})
        typer.echo(json.dumps(doc, indent=2))
        return
    render_comparison_table(table, cols, Console(highlight=False))


def reproduce_command(r: Any) -> str:
    """The ``infermeter bench`` command line that repeats a stored run."""
    import shlex

    c = r.config
    scenario = c.get("scenario", r.scenario) or "single-stream"
    if scenario == "profile":
        return _reproduce_profile(r)
    parts = ["infermeter", "bench", r.model.spec]
    if scenario != "multi-stream":  # there the batch is the samples per query
        parts += ["--batch", str(r.batch_size)]
    if scenario != "single-stream":
        parts += ["--scenario", scenario]
    flags = {
        "samples_per_query": "--samples-per-query", "offline_samples": "--offline-samples", "qps": "--qps",
        "max_batch": "--max-batch", "max_wait_ms": "--max-wait-ms", "latency_bound_ms": "--latency-bound-ms",
        "target_percentile": "--target-percentile", "min_duration_s": "--min-duration", "min_queries": "--min-queries",
        "peak_steps": "--peak-steps", "peak_time_s": "--peak-time",
    }
    requested = c.get("requested") or {}
    for key, flag in flags.items():
        if requested.get(key) is not None:
            parts += [flag, str(requested[key])]
    if requested.get("find_peak"):
        parts.append("--find-peak")
    for k, v in (r.tags or {}).items():
        parts += ["--tag", f"{k}={v}"]
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


def _reproduce_profile(r: Any) -> str:
    """The ``infermeter profile`` command line of a stored profile run."""
    import shlex

    c = r.config
    parts = ["infermeter", "profile", r.model.spec, "--batch", str(r.batch_size)]
    for s in c.get("inputs") or []:
        parts += ["--input", s]
    for k, v in (c.get("dims") or {}).items():
        parts += ["--dim", f"{k}={v}"]
    for key, flag in (("dtype", "--dtype"), ("threads", "--threads"), ("iterations", "--iterations"), ("warmup", "--warmup")):
        if c.get(key) is not None:
            parts += [flag, str(c[key])]
    if c.get("device", "cpu") != "cpu":
        parts += ["--device", c["device"]]
    return " ".join(shlex.quote(p) for p in parts)
