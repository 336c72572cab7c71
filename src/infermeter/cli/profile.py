"""``infermeter profile``: where the time of one forward pass goes — phases, and the
top operators from the backend's own profiler, by op type or by layer."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app, handle_errors, open_store
from .options import (
    BatchOpt, DebugOpt, DeviceOpt, DimOpt, DtypeOpt, InputOpt, JsonOpt, NoSaveOpt, SeedOpt, StoreOpt, ThreadsOpt,
)

IterationsOpt = Annotated[int, typer.Option("--iterations", "-n", min=1, help="profiled calls (after the warm-up)")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="calls before timing and before profiling")]
TopOpt = Annotated[int, typer.Option("--top", min=1, help="rows of the operator table")]
ByOpt = Annotated[str, typer.Option("--by", help="type: by op type (aten::addmm, MatMul); node: by layer (module path or ONNX node)")]


@app.command()
@handle_errors
def profile(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr (nn.Module) | zoo:NAME")],
    batch: BatchOpt = "1",
    input: InputOpt = None,
    dim: DimOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    threads: ThreadsOpt = None,
    iterations: IterationsOpt = 20,
    warmup: WarmupOpt = 5,
    top: TopOpt = 15,
    by: ByOpt = "type",
    seed: SeedOpt = 0,
    json_path: JsonOpt = None,
    store: StoreOpt = None,
    no_save: NoSaveOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Profile a model: load, input preparation, copies and forward pass timed, then per-operator
    self time from torch.profiler or ONNX Runtime, aggregated by op type or layer, with shares."""
    from rich.console import Console

    from ..errors import UsageError
    from ..inputs import parse_batch_sizes, parse_dims, parse_input
    from ..models.base import LoadOptions
    from ..report.profile_table import BY

    sizes = parse_batch_sizes(batch)
    if len(sizes) != 1:
        raise UsageError(f"profile takes one batch size, not {batch}; run it once per batch size")
    if by not in BY:
        raise UsageError(f"--by '{by}' is not a view of the profile; use one of {', '.join(BY)}")
    specs = [parse_input(t) for t in (input or [])]
    dims = parse_dims(dim)
    if json_path is not None:
        from ..report.export import check_writable

        check_writable(json_path)
    from ..predict.profile import profile_model
    from ..report.profile_table import render_profile

    st = None if no_save else open_store(store)
    try:
        result = profile_model(
            spec, batch_size=sizes[0], dims=dims, inputs=specs,
            options=LoadOptions(device=device, dtype=dtype, threads=threads),
            iterations=iterations, warmup=warmup, seed=seed, store=st if st is not None else False,
        )
    finally:
        if st is not None:
            st.close()
    console = Console(highlight=False)
    render_profile(result, console, top=top, by=by)
    if json_path is not None:
        from ..report.export import to_json, write_text

        write_text(json_path, to_json([result]))
        console.print(f"wrote 1 result to {json_path}")
    if st is not None:
        console.print(f"[dim]saved run {result.id}[/dim]")
