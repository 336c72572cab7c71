"""``infermeter serve MODEL --engine ray``: the same model and protocol on Ray Serve.

For users who outgrow one process: ``--replicas N`` copies of the model, each a
Ray actor, behind Ray Serve's HTTP proxy on ``--host``/``--port``. Each replica
runs infermeter's own starlette app (:func:`~infermeter.serve.app.build_app`)
as a Ray Serve ASGI ingress, around a :class:`RayService`: the
:class:`~infermeter.serve.service.Service` the starlette engine uses (same
loader, workers, probe, validation, cache, metrics), except that batches form
in Ray Serve's ``@serve.batch`` queue instead of infermeter's
:class:`~infermeter.serve.batcher.Batcher`. So the routes, the JSON and binary
tensors, the 400/404/413/500 answers and ``/stats`` are the starlette engine's,
and ``infermeter load`` works against either unchanged.

Ray runs as a local instance started here (``ray.init``: CPUs bounded to what
the replicas reserve, no dashboard, usage stats off, the node on 127.0.0.1),
or the one already initialised in this process, which is then left running.
Ray's own services (GCS, raylet, workers) still open gRPC ports on every
interface, as Ray does; only the proxy's ``--host`` is ours to choose. Ray is
imported only when this engine is used. Replicas run on this machine and see
this process's working directory and ``sys.path``, so a model file or
``module:attr`` resolves there as it does here. :func:`run_ray_server` loads
the model once in this process first, so that a bad spec fails with its own
line before Ray starts (the copy is released before the replicas load theirs).

Ray Serve costs a proxy hop and more processes: on a shared 2-core VM, zoo:mlp
at 100 requests/s open loop answered in p50 13.9 ms / p99 69.7 ms with two
replicas against 12.4 / 33.7 ms for the starlette engine (``--max-batch 8
--max-wait-ms 2``, other work running); it pays where replicas get cores of
their own.

How each option maps (``ServeConfig`` field → Ray Serve):

=====================  ============================================================
``max_batch``          ``@serve.batch(max_batch_size=max_batch)`` counting rows
                       (``batch_size_fn``), as the starlette engine does; a request
                       of more rows, or a model whose inputs do not batch on axis 0,
                       runs alone. One call per input shape in a batch (two ``seq``
                       lengths run apart); a failing batch is run again request by
                       request, so one bad request fails only itself.
``max_wait_ms``        ``batch_wait_timeout_s = max_wait_ms / 1000``
``workers`` (thread)   per replica: that many runner threads and
                       ``max_concurrent_batches = workers``
``workers_kind``       ``thread`` only; ``process`` is refused (replicas are
                       processes already: use ``--replicas``)
``max_queue``          ``max_queued_requests`` (requests waiting at the proxy for a
                       replica; past it the proxy answers 503 with ``Retry-After:
                       1``). Each replica also takes ``max_ongoing_requests =
                       max(5, 2 × max_batch × workers)``: a batch running and the
                       next one forming, so up to that many more wait inside each
                       replica.
``cache``/``cache_ttl``  a response cache in each replica (N replicas, N caches:
                       a repeated request hits only where it was answered before)
``max_request_bytes``  checked by the app in the replica (413); the body has
                       crossed the proxy by then
``threads``            intra-op threads per runner; each replica reserves
                       ``workers × threads`` Ray CPUs (1 × 1 by default; Ray sets
                       ``OMP_NUM_THREADS`` to that when it is unset)
``device``             ``cpu``; ``cuda`` reserves ``min(1, GPUs / replicas)`` GPU
                       per replica (Ray picks the GPU, so ``cuda:K`` is refused)
``inputs``/``dims``    as in the starlette engine
=====================  ============================================================

``/stats`` and ``/metrics`` describe the replica that answered them (its
``config.effective`` names the engine, the replica and its pid).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any, Callable

from ..errors import BackendUnavailable, ModelLoadError, UsageError
from .app import ServeConfig, bind, build_app
from .batcher import Arrays, BatchResult, Execute, OnBatch, ShuttingDown, Unsplittable, call_model
from .service import Service

__all__ = ["RayService", "RayServer", "check_ray_config", "deployment_options", "run_ray_server", "APP_NAME"]

APP_NAME = "infermeter"
INSTALL = "pip install 'infermeter[ray]'"


# --------------------------------------------------------------------------- the mapping


def check_ray_config(cfg: ServeConfig, replicas: int) -> None:
    """Refuse, with one line, what Ray Serve cannot do as asked (no Ray import)."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise UsageError(f"--replicas must be an integer >= 1, not {replicas!r}")
    if cfg.workers_kind != "thread":
        raise UsageError("--workers-kind process does not apply to --engine ray: each replica is a process already; "
                         "use --replicas N (and --workers N for threads in each)")
    if re.fullmatch(r"cuda:\d+", cfg.device.strip()):
        raise UsageError(f"--device {cfg.device}: with --engine ray, Ray picks each replica's GPU; use --device cuda")


def _cpus_per_replica(cfg: ServeConfig) -> int:
    return cfg.workers * (cfg.threads or 1)


def deployment_options(cfg: ServeConfig, replicas: int, gpus: float = 0.0) -> dict[str, Any]:
    """The ``serve.deployment`` options for ``cfg`` (see the module docstring); ``gpus``: the cluster's."""
    actor: dict[str, Any] = {"num_cpus": _cpus_per_replica(cfg)}
    if cfg.device.strip().startswith("cuda"):
        if gpus <= 0:
            raise UsageError(f"--device {cfg.device} but Ray sees no GPU here; serve on --device cpu")
        actor["num_gpus"] = min(1.0, gpus / replicas)
    return {
        "name": APP_NAME,
        "num_replicas": replicas,
        "max_ongoing_requests": max(5, 2 * cfg.max_batch * cfg.workers),
        "max_queued_requests": cfg.max_queue,
        "backpressure_config": {"status_code": 503, "retry_after_s": 1},
        "ray_actor_options": actor,
        "max_constructor_retry_count": 1,  # a model that does not load fails the deploy at once, not after 20 tries
        "graceful_shutdown_timeout_s": 10,
    }


# --------------------------------------------------------------------------- batching by @serve.batch


class _Item:
    __slots__ = ("inputs", "rows", "key", "arrived_ns")

    def __init__(self, inputs: Arrays, rows: int, key: object, arrived_ns: int) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.arrived_ns = arrived_ns


def _rows(items: list[_Item]) -> int:
    return sum(item.rows for item in items)


class RayBatcher:
    """What :class:`~infermeter.serve.service.Service` asks of its batcher (``submit``, ``stop``,
    ``depth``, ``solo``), with the batches formed by Ray Serve's ``@serve.batch``.

    Built inside a replica (it imports Ray Serve), on the replica's event loop.
    """

    def __init__(self, execute: Execute, *, max_batch: int, max_wait_ms: float, concurrency: int,
                 on_batch: OnBatch | None = None, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        from ray import serve

        self.max_batch = max_batch
        self.solo = False  # set when outputs cannot be split by rows: batching off
        self._execute = execute
        self._on_batch = on_batch
        self._clock = clock
        self._waiting = 0
        self._active = 0
        self._closing = False
        self._batched = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=max_wait_ms / 1000,
                                    max_concurrent_batches=concurrency, batch_size_fn=_rows)(self._run_batch)

    @property
    def depth(self) -> int:
        """Requests in Ray's batch queue, not yet in a batch."""
        return max(0, self._waiting)

    async def submit(self, inputs: Arrays, rows: int, *, batchable: bool = True) -> BatchResult:
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items()))
        item = _Item(inputs, rows, key, self._clock())
        self._active += 1
        try:
            if batchable and not self.solo and rows <= self.max_batch:
                self._waiting += 1
                result = await self._batched(item)
                if isinstance(result, BaseException):
                    raise result
                return result
            return (await self._call([item]))[0]
        finally:
            self._active -= 1

    async def stop(self, drain: bool = True) -> None:
        """Take no more requests; wait for those taken (Ray drains the replica before this)."""
        self._closing = True
        while drain and self._active:
            await asyncio.sleep(0.005)

    async def _run_batch(self, items: list[_Item]) -> list[BatchResult | Exception]:
        """Ray's batch: one model call per input shape; a failed call retried request by request."""
        self._waiting -= len(items)
        results: list[BatchResult | Exception] = [ShuttingDown("not run")] * len(items)
        groups: dict[object, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.key, []).append(i)
        for indices in groups.values():
            group = [items[i] for i in indices]
            try:
                answers: list[BatchResult | Exception] = list(await self._call(group))
            except Exception as exc:
                if len(group) == 1:
                    answers = [exc]
                else:
                    answers = []
                    for item in group:  # one bad request fails only itself
                        try:
                            answers += await self._call([item])
                        except Exception as one:
                            answers.append(one)
            for i, answer in zip(indices, answers):
                results[i] = answer
        return results

    async def _call(self, items: list[_Item]) -> list[BatchResult]:
        try:
            return await call_model(self._execute, items, self._clock, self._on_batch)
        except Unsplittable:
            self.solo = True
            raise


class RayService(Service):
    """The starlette engine's :class:`Service`, batching through :class:`RayBatcher`."""

    def __init__(self, cfg: ServeConfig, replica: str = "") -> None:
        super().__init__(cfg)
        self.replica = replica

    async def start(self) -> None:
        if self.info is None:
            await asyncio.to_thread(self.load)
        await self._probe()
        cfg = self.cfg
        batcher = RayBatcher(self.workers.execute, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                             concurrency=cfg.workers, on_batch=self.metrics.batch)
        self.batcher = batcher  # type: ignore[assignment]  # duck-types Batcher
        self.metrics.bind_depth(lambda: batcher.depth)
        self.ready = True

    def stats(self) -> dict[str, Any]:
        doc = super().stats()
        doc["config"]["effective"].update({"engine": "ray", "replica": self.replica, "pid": os.getpid(),
                                           "batching_by": "ray.serve.batch"})
        return doc


class _Replica:
    """One Ray Serve replica: the model loaded in the constructor (so a bad model fails the
    deploy with its own message), then infermeter's starlette app around it."""

    def __init__(self, cfg: ServeConfig, cwd: str, path: list[str]) -> None:
        # Replicas run on this machine: model files and import paths resolve as in the process that deployed them.
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)
        sys.path[:0] = [p for p in path if p not in sys.path]
        replica = ""
        try:
            from ray import serve

            replica = str(serve.get_replica_context().replica_id.unique_id)
        except Exception:
            pass
        self._service = RayService(cfg, replica)
        self._service.load()

    def __serve_build_asgi_app__(self) -> Any:
        return build_app(self._service.cfg, service=self._service)


# --------------------------------------------------------------------------- running it


def _import_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise BackendUnavailable(f"--engine ray needs Ray Serve; {INSTALL}") from None
    return serve


def _one_line(exc: BaseException) -> str:
    """The model's own error from a failed deploy (Ray wraps it in a replica traceback)."""
    text = str(exc)
    found = re.findall(r"infermeter\.errors\.\w+: (.+)", text)
    if found:
        return found[-1].strip()
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*\w+(\.\w+)*(Error|Exception): ", ln)]
    return (lines[-1] if lines else (text.strip().splitlines() or [type(exc).__name__])[0])[:300]


def _deploy_error(serve: Any, exc: BaseException, app_name: str) -> str:
    """Why a deploy failed: Ray's exception says only that it did; the replica's traceback is in the status."""
    text = str(exc)
    try:
        app = serve.status().applications.get(app_name)
        text = "\n".join([text, *(d.message for d in app.deployments.values())]) if app is not None else text
    except Exception:
        pass
    return _one_line(RuntimeError(text))


class RayServer:
    """``cfg`` served by Ray Serve on ``host:port`` until :meth:`stop`.

    :meth:`start` initialises Ray when this process has not (and :meth:`stop`
    shuts it down again), starts Serve's proxy on ``host:port`` when Serve is
    not running, deploys the model and waits for it to answer ready. Port 0
    picks a free port (read :attr:`port` after start). ``route_prefix`` puts
    the routes under a path (``/a/v2/models/...``), so that several
    applications (``app_name``) can share one Serve proxy.
    """

    def __init__(self, cfg: ServeConfig, replicas: int = 1, host: str = "127.0.0.1", port: int = 8000,
                 ready_timeout_s: float = 300.0, app_name: str = APP_NAME, route_prefix: str = "/") -> None:
        check_ray_config(cfg, replicas)
        if not route_prefix.startswith("/"):
            raise UsageError(f"route_prefix must start with '/', not {route_prefix!r}")
        self.app_name = app_name
        self.route_prefix = route_prefix
        self.cfg = cfg
        self.replicas = replicas
        self.host = host
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self._started_ray = False
        self._started_serve = False
        self._deployed = False

    @property
    def url(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{where}:{self.port}{self.route_prefix.rstrip('/')}"

    def start(self) -> str:
        serve = _import_serve()
        import ray

        try:
            self.init_ray()
            gpus = float(ray.cluster_resources().get("GPU", 0.0))
            options = deployment_options(self.cfg, self.replicas, gpus)
            running = self._serve_http()
            if running is None:
                sock = bind(self.host, self.port)  # a taken port fails with one line; port 0 picks one
                self.port = sock.getsockname()[1]
                sock.close()
                serve.start(http_options={"host": self.host, "port": self.port},
                            logging_config={"log_level": "WARNING", "enable_access_log": False})
                self._started_serve = True
            elif self.port in (0, int(running.get("port", -1))):
                self.port = int(running["port"])  # deploy into the Serve this Ray instance runs
            else:
                raise UsageError(f"Ray Serve already runs in this Ray instance, its proxy on "
                                 f"{running.get('host')}:{running.get('port')}; give that --port or shut it down first")
            deployment = serve.deployment(**options)(serve.ingress()(_Replica))
            try:
                serve.run(deployment.bind(self.cfg, os.getcwd(), list(sys.path)), name=self.app_name, route_prefix=self.route_prefix,
                          logging_config={"log_level": "WARNING", "enable_access_log": False})
            except Exception as exc:
                raise ModelLoadError(f"Ray Serve could not deploy '{self.cfg.model}': {_deploy_error(serve, exc, self.app_name)}") from None
            self._deployed = True
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def init_ray(self) -> None:
        """Start a local Ray instance for the replicas, unless this process has one (then it is left running)."""
        import ray

        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves this machine
        try:
            ray.init(num_cpus=self.replicas * _cpus_per_replica(self.cfg), include_dashboard=False,
                     log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
        except BaseException as exc:  # a SIGTERM (Ray's handler: sys.exit) or Ctrl-C included
            try:
                ray.shutdown()  # what it started of the instance
            except Exception:
                pass
            if isinstance(exc, Exception):
                raise BackendUnavailable(f"cannot start a local Ray instance: {_one_line(exc)}") from None
            raise
        self._started_ray = True

    @staticmethod
    def _serve_http() -> dict[str, Any] | None:
        """The HTTP options of the Serve already running in this Ray instance; None if none runs."""
        from ray.serve.context import _get_global_client  # no public call tells without starting Serve

        client = _get_global_client(raise_if_no_controller_running=False)
        if client is None:
            return None
        return dict(client.get_serve_details().get("http_options") or {})

    def _wait_ready(self) -> None:
        end = time.monotonic() + self.ready_timeout_s
        last = ""
        while True:
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            if time.monotonic() > end:
                raise ModelLoadError(f"Ray Serve at {self.url} did not answer ready in {self.ready_timeout_s:g} s ({last})")
            time.sleep(0.1)

    def stop(self) -> None:
        """Remove the deployment; shut Serve and Ray down where :meth:`start` started them."""
        try:
            from ray import serve
        except ImportError:
            return
        if self._started_serve:
            serve.shutdown()
        elif self._deployed:
            serve.delete(self.app_name)
        self._deployed = self._started_serve = False
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False


def _check_model(cfg: ServeConfig) -> None:
    """Load the model once here: a bad spec, input or dim fails with its own line before Ray starts."""
    service = Service(replace(cfg, workers=1, workers_kind="thread", cache=0))
    service.load()
    service.workers.close()


def run_ray_server(cfg: ServeConfig, replicas: int = 1, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``cfg`` with Ray Serve until Ctrl-C or SIGTERM; then shut Serve and Ray down."""
    check_ray_config(cfg, replicas)
    _import_serve()
    bind(host, port).close()  # a taken port fails before minutes of loading
    _check_model(cfg)
    server = RayServer(cfg, replicas, host, port)
    for logger in ("ray", "ray.serve"):  # Ray's INFO lines would bury the one line this prints
        logging.getLogger(logger).setLevel(logging.WARNING)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous: Any = None
    try:
        server.init_ray()
        if main:  # after ray.init, which installs a SIGTERM handler of its own (sys.exit, and a C++ one that aborts)
            previous = signal.signal(signal.SIGTERM, terminate)
        server.start()  # interrupted, it removes what it started
        print(f"infermeter serve: model '{cfg.name}' ({cfg.model}) at {server.url}/v2/models/{cfg.name} on Ray Serve "
              f"({replicas} replica(s), max_batch {cfg.max_batch}, max_wait_ms {cfg.max_wait_ms:g}, "
              f"{cfg.workers} thread worker(s) each, cache {cfg.cache or 'off'})", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass  # told to stop (Ctrl-C, SIGTERM): not a failure
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # shutting down: a second SIGTERM ends it
        try:
            server.stop()
        except Exception as exc:
            print(f"infermeter serve: Ray Serve did not shut down cleanly: {_one_line(exc)}", file=sys.stderr, flush=True)
    print("infermeter serve: stopped; Ray Serve and Ray shut down", file=sys.stderr, flush=True)
