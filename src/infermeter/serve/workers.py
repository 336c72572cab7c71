"""Where the model runs: worker threads or worker processes, never the event loop.

``thread``: N threads, each with its own runner (N loads of the model). Torch
and ONNX Runtime release the GIL while they compute, so threads overlap model
calls with each other and with request parsing on the event loop; a runner of
one's own per thread avoids relying on a backend's thread safety (a plain
Python callable, a runner's cached calling plans) at the price of N copies of
the weights. Intra-op threads are process-wide for torch: with N workers set
``threads`` so that N × threads fits the cores. Measured (zoo:mlp, batch 1,
two threads calling ``run_parts`` for 2 s, a shared 2-core CPU, so noisy): one
shared runner ≈ 4.4k calls/s, a runner per thread ≈ 3.8–4.4k calls/s, one
thread alone 4.6–5.4k: sharing buys no speed here, only memory, and owning one
is safe for every backend.

``process``: N spawned processes (``ProcessPoolExecutor``), each loading the
model in its initializer; batches and outputs travel pickled through pipes.
No GIL is shared, at the cost of the copies. A load that fails in a worker is
raised again, as it was, by :meth:`Workers.load`; a worker that dies takes the
pool with it, and the pool is started again for the next batch.

Compute time is measured where the model runs: joining the request parts into a
batch, ``prepare``, the call, ``sync`` and the copy of the outputs to numpy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import multiprocessing
import queue
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import ModelRunError
from ..inputs import InputSpec
from ..models import LoadOptions, Runner, load_model
from ..optimize.evaluate import _to_numpy
from .batcher import Arrays, concat_parts

__all__ = ["Workers", "ThreadWorkers", "ProcessWorkers", "WorkerInfo", "run_parts", "make_workers"]


@dataclass
class WorkerInfo:
    """What the loaded model says about itself (from one of the workers)."""

    inputs: list[InputSpec]
    default_dims: dict[str, int] = field(default_factory=dict)
    describe: dict[str, Any] = field(default_factory=dict)


def run_parts(runner: Runner, parts: Sequence[Arrays]) -> tuple[list[np.ndarray], int]:
    """Run one batch made of ``parts``; the outputs as numpy and the compute time (ns)."""
    start = time.perf_counter_ns()
    prepared = runner.prepare(concat_parts(parts))
    raw = runner(prepared)
    runner.sync()
    outputs = _to_numpy(raw)
    return outputs, time.perf_counter_ns() - start


def _info(runner: Runner) -> WorkerInfo:
    try:
        described = runner.describe()
    except Exception:  # describe is for the record; serving does not need it
        described = {"backend": runner.backend, "device": runner.device}
    return WorkerInfo(list(runner.inputs()), dict(getattr(runner, "default_dims", {}) or {}), described)


class Workers:
    kind = ""

    def __init__(self, spec: str, options: LoadOptions, count: int) -> None:
        self.spec = spec
        self.options = options
        self.count = count

    def load(self) -> WorkerInfo:
        """Load the model in every worker (blocking); raise the load's error."""
        raise NotImplementedError

    async def execute(self, parts: Sequence[Arrays]) -> tuple[list[np.ndarray], int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ThreadWorkers(Workers):
    kind = "thread"

    def __init__(self, spec: str, options: LoadOptions, count: int) -> None:
        super().__init__(spec, options, count)
        self._runners: list[Runner] = []
        self._idle: queue.SimpleQueue[Runner] = queue.SimpleQueue()
        self._pool: cf.ThreadPoolExecutor | None = None

    def load(self) -> WorkerInfo:
        if not self._runners:
            for _ in range(self.count):
                runner = load_model(self.spec, self.options)
                self._runners.append(runner)
                self._idle.put(runner)
            self._pool = cf.ThreadPoolExecutor(self.count, thread_name_prefix="infermeter-serve")
        return _info(self._runners[0])

    async def execute(self, parts: Sequence[Arrays]) -> tuple[list[np.ndarray], int]:
        assert self._pool is not None, "load() first"
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, parts)

    def _run(self, parts: Sequence[Arrays]) -> tuple[list[np.ndarray], int]:
        runner = self._idle.get()  # never waits: one runner per thread of the pool
        try:
            return run_parts(runner, parts)
        finally:
            self._idle.put(runner)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for runner in self._runners:
            try:
                runner.close()
            except Exception:
                pass
        self._runners.clear()


# --------------------------------------------------------------------------- worker processes

_PROCESS: dict[str, Any] = {}  # in a worker process: its runner, or the exception its load raised


def _process_init(spec: str, options: LoadOptions) -> None:
    try:
        _PROCESS["runner"] = load_model(spec, options)
    except BaseException as exc:  # kept and raised by each task: an initializer's error breaks the pool silently
        _PROCESS["error"] = exc


def _process_runner() -> Runner:
    if "error" in _PROCESS:
        raise _PROCESS["error"]
    return _PROCESS["runner"]


def _process_info() -> WorkerInfo:
    return _info(_process_runner())


def _process_run(parts: Sequence[Arrays]) -> tuple[list[np.ndarray], int]:
    return run_parts(_process_runner(), parts)


class ProcessWorkers(Workers):
    kind = "process"

    def __init__(self, spec: str, options: LoadOptions, count: int) -> None:
        super().__init__(spec, options, count)
        self._pool: cf.ProcessPoolExecutor | None = None
        self.restarts = 0

    def _start(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            self.count, mp_context=multiprocessing.get_context("spawn"),
            initializer=_process_init, initargs=(self.spec, self.options),
        )

    def load(self) -> WorkerInfo:
        if self._pool is None:
            self._pool = self._start()
        # One task per worker starts them all, so every copy is loaded before the first request.
        futures = [self._pool.submit(_process_info) for _ in range(self.count)]
        try:
            infos = [f.result() for f in futures]
        except cf.process.BrokenProcessPool:
            self.close()
            raise ModelRunError(f"a worker process loading '{self.spec}' died; run it with workers_kind='thread' "
                                "to see the error") from None
        except BaseException:
            self.close()
            raise
        return infos[0]

    async def execute(self, parts: Sequence[Arrays]) -> tuple[list[np.ndarray], int]:
        if self._pool is None:
            self._pool = self._start()
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, _process_run, parts)
        except cf.process.BrokenProcessPool:
            if self._pool is pool:  # start a fresh pool for the next batch
                self.restarts += 1
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise ModelRunError("a worker process died while running the model (pool restarted)") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def make_workers(kind: str, spec: str, options: LoadOptions, count: int) -> Workers:
    if kind == "thread":
        return ThreadWorkers(spec, options, count)
    if kind == "process":
        return ProcessWorkers(spec, options, count)
    raise ValueError(f"unknown workers kind '{kind}'")


