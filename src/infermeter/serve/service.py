"""The served model: workers, batcher, cache and metrics behind one ``infer`` call.

The HTTP layer (:mod:`.app`) reads bodies and writes answers; everything
between, from a decoded request to its outputs, happens here, so it can be
driven without HTTP. Loading is split in two: :meth:`Service.load` (blocking,
raises the model's one-line error before a port is bound) and
:meth:`Service.start` (on the event loop: probe, batcher).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InfermeterError, InputError
from ..inputs import BATCH, INPUT_SYNTAX, InputSpec, merge_specs, parse_input
from ..models import LoadOptions, short_error
from .batcher import Batcher, QueueFull, ShuttingDown
from .cache import ResponseCache, inputs_key
from .metrics import ServeMetrics
from .oip import Decoded, OipError, decode_request, oip_datatype, spec_metadata, validate
from .workers import WorkerInfo, make_workers

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServeConfig

__all__ = ["Service", "Parsed"]

#: Bodies (and answers) above this are decoded (encoded) in a worker thread, off the event loop.
OFFLOAD_BYTES = 1 << 20

_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "torch": "pytorch_torch", "python": "python"}


class Parsed:
    __slots__ = ("decoded", "rows", "key")

    def __init__(self, decoded: Decoded, rows: int, key: str | None) -> None:
        self.decoded = decoded
        self.rows = rows
        self.key = key


class Service:
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.name: str = cfg.name or ""
        self.user_specs = [parse_input(t) for t in cfg.inputs]
        options = LoadOptions(device=cfg.device, threads=cfg.threads, inputs=tuple(self.user_specs))
        self.workers = make_workers(cfg.workers_kind, cfg.model, options, cfg.workers)
        self.cache = ResponseCache(cfg.cache, cfg.cache_ttl_s)
        self.metrics = ServeMetrics(self.name)
        self.batcher: Batcher | None = None
        self.info: WorkerInfo | None = None
        self.specs: list[InputSpec] = []
        self.pinned: dict[str, int] = dict(cfg.dims)
        self.batchable = False
        self.output_meta: list[dict[str, Any]] = []
        self.output_names: list[str] = []
        self.probe_error: str | None = None
        self.ready = False

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Load the model in every worker; raise its error as one line. Idempotent."""
        if self.info is not None:
            return
        info = self.workers.load()
        specs = merge_specs(info.inputs, self.user_specs)
        if not specs:
            self.workers.close()
            raise InputError(f"cannot tell the inputs of '{self.cfg.model}'; describe them with {INPUT_SYNTAX}")
        unknown = [d for d in self.pinned if not any(d in s.shape for s in specs)]
        if unknown:
            self.workers.close()
            raise InputError(f"dims {', '.join(unknown)} name no symbolic dim of the inputs "
                             f"({', '.join(s.text() for s in specs)})")
        self.specs = specs
        # Batching joins requests on axis 0: every input must have B there, and only there.
        self.batchable = all(s.shape[:1] == (BATCH,) and BATCH not in s.shape[1:] for s in specs)
        self.info = info

    async def start(self) -> None:
        if self.info is None:
            await asyncio.to_thread(self.load)
        await self._probe()
        cfg = self.cfg
        self.batcher = Batcher(
            self.workers.execute, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms, max_queue=cfg.max_queue,
            concurrency=cfg.workers, on_batch=self.metrics.batch,
        )
        self.batcher.start()
        batcher = self.batcher
        self.metrics.bind_depth(lambda: batcher.depth)
        self.ready = True

    async def stop(self) -> None:
        """Finish what is queued and in flight, then release the workers."""
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop(drain=True)
        await asyncio.to_thread(self.workers.close)

    async def _probe(self) -> None:
        """One row through the model: warms it up and tells the outputs' datatypes and shapes."""
        dims = {**(self.info.default_dims if self.info else {}), **self.pinned}
        try:
            rng = np.random.default_rng(0)
            batch = {s.name: s.random(s.resolve(1, dims), rng) for s in self.specs}
            outputs, _ = await self.workers.execute([batch])
        except Exception as exc:
            self.probe_error = f"{type(exc).__name__}: {short_error(exc)}"
            return
        self.output_names = [f"output_{k}" for k in range(len(outputs))]
        for name, out in zip(self.output_names, outputs):
            shape = list(out.shape)
            if self.batchable and shape[:1] == [1]:
                shape[0] = -1
            self.output_meta.append({"name": name, "datatype": oip_datatype(out.dtype), "shape": shape})

    # ------------------------------------------------------------------ requests

    def parse(self, body: bytes, header_length: str | None) -> Parsed:
        """Decode, validate and (with a cache) hash a request; :class:`OipError` 400 if it does not fit."""
        decoded = decode_request(body, header_length)
        rows = validate(decoded.inputs, self.specs, self.pinned)
        key = inputs_key(decoded.inputs) if self.cache.enabled else None
        return Parsed(decoded, rows, key)

    async def parse_async(self, body: bytes, header_length: str | None) -> Parsed:
        if len(body) > OFFLOAD_BYTES:
            return await asyncio.to_thread(self.parse, body, header_length)
        return self.parse(body, header_length)

    async def predict(self, parsed: Parsed) -> list[np.ndarray]:
        """The outputs for one request: from the cache, or through the batcher."""
        if not self.ready or self.batcher is None:
            raise OipError(503, f"model '{self.name}' is not ready")
        if parsed.key is not None:
            hit = self.cache.get(parsed.key)
            self.metrics.cache_lookup(hit is not None)
            if hit is not None:
                return hit
        try:
            result = await self.batcher.submit(parsed.decoded.inputs, parsed.rows, batchable=self.batchable)
        except (QueueFull, ShuttingDown) as exc:
            raise OipError(503, str(exc)) from None
        except InfermeterError as exc:
            raise OipError(500, f"model '{self.name}' failed: {exc}") from None
        except Exception as exc:
            raise OipError(500, f"model '{self.name}' failed: {type(exc).__name__}: {short_error(exc)}") from None
        self.metrics.queued(result.queue_ns / 1e9, result.compute_ns / 1e9)
        outputs = result.outputs
        if parsed.key is not None:
            outputs = [np.array(o) for o in outputs]  # own copies: a view would keep the whole batch alive
            self.cache.put(parsed.key, outputs)
        return outputs

    def names_for(self, outputs: list[np.ndarray]) -> list[str]:
        if len(self.output_names) == len(outputs):
            return self.output_names
        return [f"output_{k}" for k in range(len(outputs))]

    # ------------------------------------------------------------------ descriptions

    def metadata(self) -> dict[str, Any]:
        info = self.info or WorkerInfo([])
        backend = str(info.describe.get("backend", ""))
        doc: dict[str, Any] = {
            "name": self.name,
            "versions": ["1"],
            "platform": _PLATFORMS.get(backend, backend or "unknown"),
            "inputs": [spec_metadata(s, self.pinned) for s in self.specs],
            "outputs": list(self.output_meta),
            "parameters": {"spec": self.cfg.model, "device": info.describe.get("device", self.cfg.device),
                           "max_batch": self.cfg.max_batch if self.batchable else 1},
        }
        if self.probe_error:
            doc["parameters"]["outputs_unknown"] = f"the probe batch failed: {self.probe_error}"
        return doc

    def stats(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"model_name": self.name, **self.metrics.json()}
        doc["requests"]["queued"] = self.batcher.depth if self.batcher else 0
        doc["cache"] = self.cache.snapshot()
        cfg = self.cfg
        doc["config"] = {
            "requested": {"model": cfg.model, "device": cfg.device, "threads": cfg.threads, "max_batch": cfg.max_batch,
                          "max_wait_ms": cfg.max_wait_ms, "cache": cfg.cache, "cache_ttl_s": cfg.cache_ttl_s,
                          "workers": cfg.workers, "workers_kind": cfg.workers_kind, "max_queue": cfg.max_queue,
                          "max_request_bytes": cfg.max_request_bytes, "inputs": list(cfg.inputs), "dims": dict(cfg.dims)},
            "effective": {
                "batching": "on" if self.batchable and cfg.max_batch > 1 and not (self.batcher and self.batcher.solo)
                else "off",
                "model": (self.info.describe if self.info else {}),
                "worker_restarts": getattr(self.workers, "restarts", 0),
            },
        }
        return doc
