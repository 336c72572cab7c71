"""``infermeter serve MODEL``: a reference Open Inference Protocol server (dynamic
batching, a response cache, inference off the event loop, Prometheus metrics) to
measure serving strategies with ``infermeter load``; ``--engine ray`` serves the
same model and routes with Ray Serve, ``--replicas N`` copies of it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ._app import app, handle_errors
from .options import DebugOpt, DeviceOpt, DimOpt, InputOpt, ThreadsOpt


@app.command()
@handle_errors
def serve(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr | zoo:NAME")],
    host: Annotated[str, typer.Option("--host", help="address to bind (127.0.0.1: this machine only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port")] = 8000,
    name: Annotated[Optional[str], typer.Option("--name", help="model name in the URL (default: from the spec)")] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="rows batched into one model call at most")] = 1,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="how long the first request waits for others")] = 0.0,
    cache: Annotated[int, typer.Option("--cache", min=0, help="response cache entries (LRU keyed by the inputs' hash); 0: off")] = 0,
    cache_ttl: Annotated[Optional[float], typer.Option("--cache-ttl", min=0.0, help="seconds a cached answer stays valid")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="inference workers off the event loop")] = 1,
    workers_kind: Annotated[str, typer.Option("--workers-kind", help="thread | process")] = "thread",
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="waiting requests before 503")] = 1024,
    max_request_mb: Annotated[float, typer.Option("--max-request-mb", min=0.001, help="request body limit (413 above)")] = 64.0,
    engine: Annotated[str, typer.Option("--engine", help="starlette (one process) | ray (Ray Serve on a local Ray instance)")] = "starlette",
    replicas: Annotated[Optional[int], typer.Option("--replicas", help="--engine ray: copies of the model, one Ray actor each")] = None,
    input: InputOpt = None,
    dim: DimOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Serve MODEL over KServe v2 REST: /v2/health/{live,ready}, /v2/models/NAME (metadata),
    /v2/models/NAME/infer (JSON or binary tensors), /v2/models/NAME/stats, /metrics.
    --engine ray: the same routes on Ray Serve, --replicas N copies of the model (needs the ray extra)."""
    from ..errors import UsageError
    from ..inputs import parse_dims
    from ..serve.app import ServeConfig, run_server

    if workers_kind not in ("thread", "process"):
        raise UsageError(f"--workers-kind '{workers_kind}' is not thread or process")
    if engine not in ("starlette", "ray"):
        raise UsageError(f"--engine '{engine}' is not starlette or ray")
    if replicas is not None and engine != "ray":
        raise UsageError("--replicas needs --engine ray; the starlette engine runs one process: use --workers N "
                         "(threads, or --workers-kind process)")
    if replicas is not None and replicas < 1:
        raise UsageError(f"--replicas must be 1 or more, not {replicas}")
    cfg = ServeConfig(model=spec, name=name, device=device, threads=threads, max_batch=max_batch, max_wait_ms=max_wait_ms,
                      cache=cache, cache_ttl_s=cache_ttl, workers=workers, workers_kind=workers_kind, max_queue=max_queue,
                      max_request_bytes=int(max_request_mb * 2**20), inputs=list(input or []), dims=parse_dims(dim))
    if engine == "ray":
        from ..serve.ray_engine import run_ray_server

        run_ray_server(cfg, replicas=replicas or 1, host=host, port=port)
    else:
        run_server(cfg, host=host, port=port)
