"""``infermeter bench``: measure a model at one or more batch sizes."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from ._app import app, handle_errors, open_store
from .options import (
    BatchOpt, DataOpt, DebugOpt, DeviceOpt, DimOpt, DtypeOpt, HangTimeoutOpt, InputOpt, JsonOpt, KeepGcOpt, MaxItersOpt,
    MaxTimeOpt, MinItersOpt, MinTimeOpt, NoSaveOpt, PrecisionOpt, ProviderOpt, QuietOpt, SeedOpt, StoreOpt, TagOpt, ThreadsOpt,
    parse_fraction, parse_tags,
)

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
    tag: TagOpt = None,
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
    tags = parse_tags(tag)
    if json_path is not None:
        check_writable(json_path)
    st = None if no_save else open_store(store)
    console = Console(highlight=False)
    finished: list[Any] = []
    error: Exception | None = None
    with BenchProgress(enabled=not quiet and sys.stderr.isatty(), hang_timeout_s=hang_timeout) as progress:
        try:
            finished = run_bench(
                spec, inputs=specs, batch_sizes=sizes, dims=dims, data=data, device=device, dtype=dtype,
                threads=threads, providers=provider or (), precision=prec, max_time_s=max_time,
                min_time_s=min_time, min_iters=min_iters, max_iters=max_iters, keep_gc=keep_gc, seed=seed,
                tags=tags, store=st if st is not None else False, progress=progress.update,
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
