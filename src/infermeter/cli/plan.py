"""``infermeter plan``: capacity planning by simulation, from measured service times per batch size.

The runs (an invocation of ``bench --batch 1,8,32``, a sweep, or run ids) give the
service-time distribution at each batch size; a discrete-event simulation of a
server with dynamic batching, a cache hit ratio and R replicas predicts the
latency percentiles at the target rate and the replicas the SLO needs.

A served request also spends time outside the model's queue (HTTP, parsing,
the network): ``--overhead-ms`` adds it to every request, or ``--calibrate RUN``
measures it from a stored low-rate load run against the server being planned
(``infermeter load URL --rate R``, R well under capacity, the server batching
as ``--max-batch``/``--max-wait-ms`` say, its cache off or never hit).
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from ._app import app, handle_errors, open_store
from .options import DebugOpt, StoreOpt


@app.command()
@handle_errors
def plan(
    runs: Annotated[Optional[List[str]], typer.Argument(help="run ids (one per batch size), or use --invocation / --sweep")] = None,
    invocation: Annotated[Optional[str], typer.Option("--invocation", help="every run of a bench invocation (one per batch size)")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="every point of a sweep over batch sizes")] = None,
    rate: Annotated[float, typer.Option("--rate", "-r", min=0.0, help="target arrival rate, requests/s")] = 100.0,
    slo: Annotated[str, typer.Option("--slo", help="e.g. 'p99<50ms'")] = "p99<100ms",
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="rows per batch at most")] = 1,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="how long the first request waits for a batch")] = 0.0,
    cache_hit: Annotated[float, typer.Option("--cache-hit", min=0.0, max=1.0, help="share of requests answered by the cache")] = 0.0,
    max_replicas: Annotated[int, typer.Option("--max-replicas", min=1, help="replicas tried at most")] = 256,
    requests: Annotated[int, typer.Option("--requests", min=1000, help="simulated requests per point")] = 50_000,
    extrapolate: Annotated[bool, typer.Option("--extrapolate", help="allow batches above the largest measured size")] = False,
    seed: Annotated[int, typer.Option("--seed", help="seed of the simulated arrivals and service draws")] = 0,
    overhead_ms: Annotated[Optional[float], typer.Option("--overhead-ms", min=0.0, help="time each request spends outside the model's queue (HTTP, parsing, network)")] = None,
    calibrate: Annotated[Optional[str], typer.Option("--calibrate", help="a stored low-rate load run (infermeter load --rate) to measure --overhead-ms from")] = None,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Replicas needed for --rate under --slo, by simulating dynamic batching on measured service times."""
    from rich.console import Console
    from rich.table import Table

    from ..compare.select import get_run, get_sweep_points, resolve_runs
    from ..errors import UsageError
    from ..load.plan import overhead_from_result, service_from_results
    from ..load.plan import plan as run_plan
    from ..load.search import parse_slo

    if not runs and invocation is None and sweep is None:
        raise UsageError("no runs given; name run ids, --invocation ID (bench --batch 1,8,32) or --sweep ID")
    if overhead_ms is not None and calibrate is not None:
        raise UsageError("give --overhead-ms or --calibrate RUN, not both")
    st = open_store(store)
    results = []
    if invocation is not None:
        results += st.invocation(invocation)
    if sweep is not None:
        results += get_sweep_points(st, sweep)
    if runs:
        results += resolve_runs(st, runs)
    service = service_from_results(results)
    target = parse_slo(slo)
    overhead_s, calibration = (overhead_ms or 0.0) / 1e3, None
    if calibrate is not None:
        calibration = overhead_from_result(service, get_run(st, calibrate), max_batch=max_batch,
                                           max_wait_s=max_wait_ms / 1e3, extrapolate=extrapolate, seed=seed)
        overhead_s = calibration.overhead_s
    out = run_plan(service, rate, target, max_batch=max_batch, max_wait_s=max_wait_ms / 1e3, cache_hit_ratio=cache_hit,
                   max_replicas=max_replicas, n_requests=requests, seed=seed, extrapolate=extrapolate,
                   overhead_s=overhead_s)
    console = Console(highlight=False)
    t = Table(title=f"plan: {rate:,.0f} req/s, SLO {slo}, max batch {max_batch}, max wait {max_wait_ms:g} ms, "
                    f"cache hits {cache_hit:.0%}" + (f", overhead {overhead_s * 1e3:.3g} ms" if overhead_s else "")
                    + f" — simulated, {requests:,} requests per row",
              caption=f"service times from {service.source or 'the given runs'}; measured batch sizes "
                      f"{', '.join(str(b) for b in sorted(service.samples))}", caption_justify="left")
    for col in ("replicas", "p50", "p99", "utilisation", "stable", "meets SLO"):
        t.add_column(col, justify="right")
    for row in out.rows:
        t.add_row(str(row["replicas"]), f"{row['p50'] * 1e3:.3g} ms", f"{row['p99'] * 1e3:.3g} ms",
                  f"{row['utilisation']:.0%}", "yes" if row["stable"] else "NO", "yes" if row["meets"] else "no")
    console.print(t)
    if calibration is not None:
        console.print(f"calibrated: {calibration.describe()}")
        for n in calibration.notes:
            console.print(f"note: {n}")
    for n in out.notes:
        console.print(f"note: {n}")
    if out.replicas_needed is None:
        console.print(f"no replica count up to {max_replicas} meets {slo} at {rate:,.0f} req/s")
    else:
        console.print(f"replicas needed: {out.replicas_needed}")
