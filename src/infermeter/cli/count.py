"""``infermeter count``: the work of a model per operator (FLOPs, bytes, op class)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app, handle_errors
from .options import BatchOpt, DebugOpt, DeviceOpt, DimOpt, DtypeOpt, InputOpt

ByOpt = Annotated[str, typer.Option("--by", help="table per op (default), per op class, or per layer (module path/node)")]
TopOpt = Annotated[int, typer.Option("--top", min=1, help="rows shown, largest FLOPs first")]
CountSeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random inputs of the one forward pass (PyTorch)")]
CountJsonOpt = Annotated[Optional[Path], typer.Option("--json", help="write the counts as JSON (schema infermeter.count/1)")]


@app.command()
@handle_errors
def count(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr | zoo:NAME")],
    batch: BatchOpt = "1",
    input: InputOpt = None,
    dim: DimOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    by: ByOpt = "op",
    top: TopOpt = 20,
    seed: CountSeedOpt = 0,
    json_path: CountJsonOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Count the work per operator: FLOPs (2 x MACs), weight and activation bytes, intensity,
    op class; totals per batch and per sample. ONNX: the graph after shape inference;
    PyTorch: the ops one forward pass dispatches."""
    from rich.console import Console

    from ..errors import UsageError
    from ..inputs import parse_batch_sizes, parse_dims, parse_input
    from ..models import load_model
    from ..models.base import LoadOptions
    from ..predict.count import count_runner
    from ..report.count_table import BY_CHOICES, counts_json, render_count, render_counts
    from ..report.export import check_writable, write_text

    mode = by.strip().lower()
    if mode not in BY_CHOICES:
        raise UsageError(f"--by '{by}' is not one of {', '.join(BY_CHOICES)}; e.g. --by class")
    sizes = parse_batch_sizes(batch)
    specs = [parse_input(t) for t in (input or [])]
    dims = parse_dims(dim)
    if json_path is not None:
        check_writable(json_path)
    console = Console(highlight=False)
    runner = load_model(spec, LoadOptions(device=device, dtype=dtype, inputs=tuple(specs)))
    counts = []
    try:
        for bs in sizes:
            counts.append(count_runner(runner, batch_size=bs, dims=dims, inputs=specs, seed=seed))
            if len(sizes) == 1:
                render_count(counts[-1], console, by=mode, top=top)
    finally:
        runner.close()
    if len(sizes) > 1:
        render_counts(counts, console, by=mode, top=top)
    if json_path is not None:
        write_text(json_path, counts_json(counts))
        console.print(f"wrote {len(counts)} count(s) to {json_path}")
