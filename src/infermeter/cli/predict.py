"""``infermeter predict``: the latency a model would have on this machine or on one
you do not have, from counted work and a calibrated roofline; ``--measure``
checks it here."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._app import app, handle_errors, open_store
from .options import (
    BatchOpt, DebugOpt, DeviceOpt, DimOpt, DtypeOpt, InputOpt, JsonOpt, NoSaveOpt, ProviderOpt, StoreOpt, ThreadsOpt,
)


@app.command()
@handle_errors
def predict(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr | zoo:NAME")],
    hardware: Annotated[
        str, typer.Option("--hardware", "-H", help="this (calibrated here) | a name from `infermeter hardware` | a profile or spec YAML")
    ] = "this",
    batch: BatchOpt = "1",
    input: InputOpt = None,
    dim: DimOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    threads: ThreadsOpt = None,
    provider: ProviderOpt = None,
    measure: Annotated[bool, typer.Option("--measure", help="also measure here and show predicted vs measured")] = False,
    measure_time: Annotated[float, typer.Option("--measure-time", min=0.5, help="--measure: seconds per batch size at most")] = 10.0,
    top: Annotated[int, typer.Option("--top", min=1, help="op types shown per batch")] = 12,
    json_path: JsonOpt = None,
    store: StoreOpt = None,
    no_save: NoSaveOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Predict latency and throughput per batch size from the model's counted work:
    per op, dispatch + max(compute at the calibrated rate for its shape, memory at
    the bandwidth for its working set). Run `infermeter calibrate` first for 'this'."""
    from rich.console import Console

    from ..errors import OutputError
    from ..inputs import parse_batch_sizes, parse_dims, parse_input
    from ..models.base import LoadOptions
    from ..predict.run import predict as run_predict
    from ..report.predict_table import render_predictions
    from ..result import Result, results_to_json

    specs = [parse_input(t) for t in (input or [])]
    options = LoadOptions(device=device, dtype=dtype, threads=threads, providers=tuple(provider or ()), inputs=tuple(specs))
    st = open_store(store)
    out = run_predict(
        spec,
        hardware=hardware,
        batch_sizes=parse_batch_sizes(batch),
        dims=parse_dims(dim),
        inputs=specs,
        options=options,
        store=st,
        measure=measure,
        measure_time_s=measure_time,
    )
    preds = [r.prediction if isinstance(r, Result) else r for r in out]
    console = Console(highlight=False)
    render_predictions(preds, console, top=top)
    results = [r for r in out if isinstance(r, Result)]
    if results and not no_save:
        ids = [st.save(r) for r in results]
        console.print("saved runs (batch→id): " + ", ".join(f"{r.batch_size}→{i}" for r, i in zip(results, ids)))
    if json_path is not None:
        try:
            if results:
                json_path.write_text(results_to_json(results))
            else:
                json_path.write_text(json.dumps({"predictions": [p.model_dump(mode="json") for p in preds]}, indent=2))
        except OSError as exc:
            raise OutputError(f"cannot write {json_path}: {exc.strerror or exc}; choose a writable path") from None
