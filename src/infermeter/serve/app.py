"""``infermeter serve``: any model infermeter loads, behind the Open Inference Protocol.

A reference server for measuring serving strategies with ``infermeter load``:
dynamic batching (``max_batch`` rows, ``max_wait_ms``), a response cache,
inference off the event loop in worker threads or processes, a bounded queue
(503 past ``max_queue``), Prometheus metrics and per-model stats that keep queue
time apart from compute time. An ASGI app (starlette) served by uvicorn.

Routes (KServe v2 REST)::

    GET  /v2                         server metadata
    GET  /v2/health/live | ready
    GET  /v2/models/{m}[/versions/{v}]          model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready
    POST /v2/models/{m}[/versions/{v}]/infer    JSON or binary tensors
    GET  /v2/models/{m}/stats        JSON counters (seconds)
    GET  /metrics                    Prometheus text

Errors answer ``{"error": "..."}``: 400 a request that does not fit the model,
404 an unknown model, 413 a body over ``max_request_bytes``, 503 a full queue
(with ``Retry-After``) or a server not ready, 500 a model that raised; the
server goes on serving.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..errors import UsageError
from ..inputs import parse_input

if TYPE_CHECKING:  # pragma: no cover
    from .service import Service

__all__ = ["ServeConfig", "build_app", "run_server"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:(?P<attr>[A-Za-z_][\w.]*)$")
VERSION = "1"


@dataclass
class ServeConfig:
    """What to serve and how. Validated at construction (no I/O: the model loads at startup)."""

    model: str
    name: str | None = None  # the model's name in URLs; default: from the spec ('zoo:mlp' → 'mlp')
    device: str = "cpu"
    threads: int | None = None  # intra-op threads per runner; None: the backend's default
    max_batch: int = 1  # rows per model call at most
    max_wait_ms: float = 0.0  # how long a batch's first request waits for more
    cache: int = 0  # response cache entries; 0: off
    cache_ttl_s: float | None = None
    workers: int = 1
    workers_kind: str = "thread"  # "thread" | "process"
    max_queue: int = 1024  # waiting requests before 503
    max_request_bytes: int = 64 * 2**20  # request body limit (413 above)
    inputs: list[str] = field(default_factory=list)  # --input specs NAME:DTYPE[DIMS]
    dims: dict[str, int] = field(default_factory=dict)  # symbolic dims pinned for every request

    def __post_init__(self) -> None:
        if not str(self.model or "").strip():
            raise UsageError("no model to serve; give a spec such as zoo:mlp, model.onnx or module:attr")
        for label, value, low in (("max_batch", self.max_batch, 1), ("workers", self.workers, 1),
                                  ("max_queue", self.max_queue, 1), ("max_request_bytes", self.max_request_bytes, 1),
                                  ("cache", self.cache, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UsageError(f"{label} must be an integer >= {low}, not {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise UsageError(f"threads must be a positive integer or unset, not {self.threads!r}")
        if not self.max_wait_ms >= 0:
            raise UsageError(f"max_wait_ms must be >= 0, not {self.max_wait_ms!r}")
        if self.cache_ttl_s is not None and not self.cache_ttl_s > 0:
            raise UsageError(f"cache_ttl_s must be positive seconds or unset, not {self.cache_ttl_s!r}")
        if self.workers_kind not in ("thread", "process"):
            raise UsageError(f"workers_kind must be 'thread' or 'process', not {self.workers_kind!r}")
        for spec in self.inputs:
            parse_input(spec)  # raises InputError with the reason
        for dim, value in self.dims.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"dim {dim}={value!r} must be a positive integer")
        if self.name is None:
            self.name = derive_name(self.model)
        if not _NAME.match(self.name):
            raise UsageError(f"model name '{self.name}' must be letters, digits, '_', '.' or '-' (it goes in URLs)")


def derive_name(spec: str) -> str:
    """'zoo:mlp' → 'mlp', 'models/resnet.onnx' → 'resnet', 'pkg.mod:make_net' → 'make_net'."""
    text = spec.strip()
    if text.lower().startswith("zoo:"):
        base = text[4:]
    elif (m := _IMPORT_PATH.match(text)) and not Path(text).exists():
        base = m.group("attr").split(".")[-1]
    else:
        base = Path(text).stem
    base = re.sub(r"[^A-Za-z0-9_.\-]", "_", base.strip()).lstrip(".-")
    return base or "model"


# --------------------------------------------------------------------------- the ASGI app


def build_app(cfg: ServeConfig, service: Service | None = None) -> Any:
    """The starlette app. The model loads at startup (lifespan); a bad model fails it with one line.

    ``app.state.service`` is the :class:`~infermeter.serve.service.Service`:
    call its ``load()`` first to load before a server binds a port. ``service``
    replaces the default ``Service(cfg)`` (the Ray engine passes one whose
    batches form in Ray Serve), so every engine answers with the same routes.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .oip import HEADER_LENGTH, OipError, encode_response
    from .service import OFFLOAD_BYTES, Service

    if service is None:
        service = Service(cfg)

    def reply(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        return Response(body, status, headers=headers, media_type="application/json")

    def error(status: int, message: str) -> Response:
        return reply(status, {"error": message}, {"Retry-After": "1"} if status == 503 else None)

    def model_or_404(request: Request) -> Response | None:
        asked = request.path_params["model"]
        if asked != service.name:
            return error(404, f"unknown model '{asked}'; this server serves '{service.name}'")
        return None

    async def server_metadata(request: Request) -> Response:
        from .. import __version__ as version

        return reply(200, {"name": "infermeter", "version": version, "extensions": ["binary_tensor_data", "statistics"]})

    async def live(request: Request) -> Response:
        return reply(200, {"live": True})

    async def ready(request: Request) -> Response:
        return reply(200 if service.ready else 503, {"ready": service.ready})

    async def model_ready(request: Request) -> Response:
        return model_or_404(request) or reply(200 if service.ready else 503, {"name": service.name, "ready": service.ready})

    async def metadata(request: Request) -> Response:
        return model_or_404(request) or reply(200, service.metadata())

    async def stats(request: Request) -> Response:
        return model_or_404(request) or reply(200, service.stats())

    async def metrics(request: Request) -> Response:
        body, content_type = service.metrics.prometheus()
        return Response(body, 200, media_type=content_type)

    async def infer(request: Request) -> Response:
        started = time.perf_counter()
        service.metrics.in_flight += 1
        try:
            response = model_or_404(request) or await _infer(request)
        except OipError as exc:
            response = error(exc.status, str(exc))
        except Exception as exc:  # a bug of ours: answer it, keep serving
            response = error(500, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            service.metrics.in_flight -= 1
        service.metrics.answered(response.status_code, time.perf_counter() - started)
        return response

    async def _infer(request: Request) -> Response:
        limit = cfg.max_request_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise OipError(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise OipError(413, f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
        parsed = await service.parse_async(b"".join(chunks), request.headers.get(HEADER_LENGTH))
        outputs = await service.predict(parsed)
        names = service.names_for(outputs)
        if sum(o.nbytes for o in outputs) > OFFLOAD_BYTES:
            import asyncio

            body, headers = await asyncio.to_thread(encode_response, service.name, names, outputs, parsed.decoded)
        else:
            body, headers = encode_response(service.name, names, outputs, parsed.decoded)
        return Response(body, 200, headers={k: v for k, v in headers.items() if k != "content-type"},
                        media_type=headers["content-type"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    model_routes: list[Route] = []
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        model_routes += [
            Route(prefix, metadata, methods=["GET"]),
            Route(prefix + "/ready", model_ready, methods=["GET"]),
            Route(prefix + "/infer", infer, methods=["POST"]),
            Route(prefix + "/stats", stats, methods=["GET"]),
        ]
    app = Starlette(
        routes=[
            Route("/v2", server_metadata, methods=["GET"]),
            Route("/v2/health/live", live, methods=["GET"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            *model_routes,
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    return app


# --------------------------------------------------------------------------- running it


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: any free one); one-line error if taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve host '{host}': {exc.strerror}; use an address such as 127.0.0.1") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port or stop what holds it") from None
    return sock


def make_server(cfg: ServeConfig, log_level: str = "warning") -> Any:
    """A uvicorn server for ``cfg`` (not started), its app's model loaded."""
    import uvicorn

    app = build_app(cfg)
    app.state.service.load()
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", access_log=False)
    return uvicorn.Server(config)


def run_server(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Bind ``host:port``, load the model and serve until interrupted (Ctrl-C drains in-flight requests)."""
    sock = bind(host, port)  # first: a taken port fails before minutes of loading
    try:
        server = make_server(cfg, log_level)
        service = server.config.app.state.service
        where = f"[{host}]" if ":" in host else host
        print(f"infermeter serve: model '{service.name}' ({cfg.model}) at "
              f"http://{where}:{sock.getsockname()[1]}/v2/models/{service.name} "
              f"(max_batch {cfg.max_batch}, max_wait_ms {cfg.max_wait_ms:g}, {cfg.workers} {cfg.workers_kind} "
              f"worker(s), cache {cfg.cache or 'off'})", file=sys.stderr, flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:
            # uvicorn re-raises the Ctrl-C it handled, after draining: a server told to stop has not failed.
            if not server.started:
                raise
        answered = sum(service.metrics.by_status.values())
        print(f"infermeter serve: stopped after {answered} infer request(s)", file=sys.stderr, flush=True)
    finally:
        sock.close()
