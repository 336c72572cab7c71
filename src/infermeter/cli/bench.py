"""``infermeter bench``: measure a model at one or more batch sizes, in a scenario."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from ._app import app, handle_errors, open_store
from .options import (
    BatchOpt, DataOpt, DebugOpt, DeviceOpt, DimOpt, DtypeOpt, FindPeakOpt, HangTimeoutOpt, InputOpt, JsonOpt, KeepGcOpt,
    LatencyBoundOpt, MaxBatchOpt, MaxItersOpt, MaxTimeOpt, MaxWaitOpt, MinDurationOpt, MinItersOpt, MinQueriesOpt,
    MinTimeOpt, NoSaveOpt, OfflineSamplesOpt, PeakStepsOpt, PeakTimeOpt, PrecisionOpt, ProviderOpt, QpsOpt, QuietOpt,
    SamplesPerQueryOpt, ScenarioOpt, SeedOpt, StoreOpt, TagOpt, TargetPercentileOpt, ThreadsOpt, parse_fraction,
    parse_tags,
)

@app.command()
@handle_errors
def bench(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr | zoo:NAME")],
    batch: BatchOpt = "1",
    scenario: ScenarioOpt = "single-stream",
    samples_per_query: SamplesPerQueryOpt = None,
    offline_samples: OfflineSamplesOpt = None,
    qps: QpsOpt = None,
    max_batch: MaxBatchOpt = None,
    max_wait_ms: MaxWaitOpt = None,
    latency_bound_ms: LatencyBoundOpt = None,
    target_percentile: TargetPercentileOpt = None,
    min_duration: MinDurationOpt = None,
    min_queries: MinQueriesOpt = None,
    find_peak: FindPeakOpt = False,
    peak_steps: PeakStepsOpt = None,
    peak_time: PeakTimeOpt = None,
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
    """Measure a model: load time, cold and warm latency with CIs, throughput, memory;
    in a scenario (single-stream, multi-stream, offline, server) judged VALID or INVALID."""
    from rich.console import Console

    from ..measure import BenchInterrupted, bench as run_bench
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
    scenario_kw: dict[str, Any] = dict(
        scenario=scenario, samples_per_query=samples_per_query, offline_samples=offline_samples, qps=qps,
        max_batch=max_batch, max_wait_ms=max_wait_ms, latency_bound_ms=latency_bound_ms,
        target_percentile=target_percentile, min_duration_s=min_duration, min_queries=min_queries,
        find_peak=find_peak, peak_steps=peak_steps, peak_time_s=peak_time,
    )
    from ..scenarios.settings import scenario_settings

    scenario_settings(batch_sizes=sizes, max_time_s=max_time, **scenario_kw)  # a mistake fails before the model loads
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
                tags=tags, store=st if st is not None else False, progress=progress.update, **scenario_kw,
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
