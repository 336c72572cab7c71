"""The ``infermeter`` command: thin typer commands that parse, call the API, render.

Only typer is imported at start-up; every command imports what it needs, so
``infermeter --help`` stays fast. Errors: an :class:`InfermeterError` prints one
line and exits with its code (2 usage, 1 failed run); ``--debug`` shows the
traceback; Ctrl-C exits 130 after saying what was kept.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer
from typing import Annotated

from .options import (
    BatchOpt, DataOpt, DebugOpt, HangTimeoutOpt, DeviceOpt, DimOpt, DtypeOpt, InputOpt, JsonOpt, KeepGcOpt, MaxItersOpt, MaxTimeOpt,
    MinItersOpt, MinTimeOpt, NoSaveOpt, PrecisionOpt, ProviderOpt, QuietOpt, SeedOpt, StoreOpt, ThreadsOpt,
    parse_fraction,
)

app = typer.Typer(
    name="infermeter",
    help="How long does this model take to answer, why, and how could it take less? Measured with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List, show, export and delete stored runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

F = TypeVar("F", bound=Callable[..., Any])


def _err(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


def handle_errors(fn: F) -> F:
    """Map infermeter errors to one line and an exit code; keep tracebacks for --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        from ..errors import InfermeterError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except InfermeterError as exc:
            if debug:
                raise
            _err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            if debug:
                raise
            kept = getattr(exc, "results", None)
            note = f"; {len(kept)} finished point(s) kept in the store" if kept is not None else ""
            _err(f"interrupted{note}")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug of ours: say so plainly
            if debug:
                raise
            _err(f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _store(path: Optional[Path]) -> Any:
    from ..store import Store, default_store_path

    return Store(path if path is not None else default_store_path())


@app.command()
@handle_errors
def bench(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr | zoo:NAME")],
    batch: BatchOpt = "1",
    input: InputOpt = None,
    dim: DimOpt = None,
    data: DataOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    threads: ThreadsOpt = None,
    provider: ProviderOpt = None,
    precision: PrecisionOpt = "1%",
    max_time: MaxTimeOpt = 30.0,
    min_time: MinTimeOpt = 0.0,
    min_iters: MinItersOpt = None,
    max_iters: MaxItersOpt = None,
    keep_gc: KeepGcOpt = False,
    seed: SeedOpt = 0,
    hang_timeout: HangTimeoutOpt = 600.0,
    json_path: JsonOpt = None,
    store: StoreOpt = None,
    no_save: NoSaveOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure a model: load time, cold and warm latency with CIs, throughput, memory."""
    from rich.console import Console

    from ..bench import BenchInterrupted, bench as run_bench
    from ..errors import InfermeterError
    from ..inputs import parse_batch_sizes, parse_dims, parse_input
    from ..report.console import render_results
    from ..report.export import check_writable, to_json, write_text
    from .progress import BenchProgress

    sizes = parse_batch_sizes(batch)
    specs = [parse_input(t) for t in (input or [])]
    dims = parse_dims(dim)
    prec = parse_fraction(precision, "--precision")
    if json_path is not None:
        check_writable(json_path)
    st = None if no_save else _store(store)
    console = Console(highlight=False)
    finished: list[Any] = []
    error: Exception | None = None
    with BenchProgress(enabled=not quiet and sys.stderr.isatty(), hang_timeout_s=hang_timeout) as progress:
        try:
            finished = run_bench(
                spec, inputs=specs, batch_sizes=sizes, dims=dims, data=data, device=device, dtype=dtype,
                threads=threads, providers=provider or (), precision=prec, max_time_s=max_time,
                min_time_s=min_time, min_iters=min_iters, max_iters=max_iters, keep_gc=keep_gc, seed=seed,
                store=st if st is not None else False, progress=progress.update,
            )
        except BenchInterrupted as exc:
            finished, error = exc.results, exc
        except InfermeterError as exc:
            finished, error = progress.finished, exc
        finally:
            if st is not None:
                st.close()
    if finished:
        render_results(finished, console)
        if json_path is not None:
            write_text(json_path, to_json(finished))
            console.print(f"wrote {len(finished)} result(s) to {json_path}")
    if error is not None:
        raise error


@app.command()
@handle_errors
def zoo(debug: DebugOpt = False) -> None:
    """List the built-in models (built in code, random weights, no downloads)."""
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


@runs_app.command("list")
@handle_errors
def runs_list(
    limit: Annotated[int, typer.Option("--limit", "-n", help="how many runs")] = 50,
    spec: Annotated[Optional[str], typer.Option("--spec", help="only runs of this model spec")] = None,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """List stored runs, newest first."""
    from rich.console import Console

    from ..report.console import render_runs

    with _store(store) as st:
        render_runs(st.list(limit=limit, spec=spec), Console(highlight=False))


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

    with _store(store) as st:
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
    with _store(store) as st:
        results = [st.get(i) for i in run_ids]
    text = to_json(results) if fmt == "json" else to_csv(results)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_text(out, text)


@runs_app.command("rm")
@handle_errors
def runs_rm(
    run_ids: Annotated[List[str], typer.Argument(help="run ids (unique prefixes)")],
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Delete runs from the store."""
    with _store(store) as st:
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
    with _store(store) as st:
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


def main() -> None:
    app()
