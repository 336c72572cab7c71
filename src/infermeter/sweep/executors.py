"""Where a sweep's worker processes run: here (``local``) or as Ray tasks (``ray``).

An executor takes tasks (a point, and which repeat of it) and yields ``(task,
WorkerOutcome)`` as each finishes, in completion order, so the sweep saves every
point the moment it is done. Either way a point runs in a fresh
``infermeter.sweep.worker`` process with the point timeout applied; Ray adds
placement (each task reserves the CPUs and GPUs it names) and runs its task
functions with ``max_calls=1``, so the Ray worker hosting a point is fresh too.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from ..errors import BackendUnavailable
from .config import Point, RayConfig
from .process import WorkerOutcome, run_worker

__all__ = ["Task", "LocalExecutor", "RayExecutor", "make_executor"]

# on_event(task, message): {"type": "start"} when a local task's process starts, {"type": "submitted"}
# when a Ray task is submitted, then (local only) the worker's progress messages ({"type": "progress", ...}).
OnEvent = Callable[["Task", Mapping[str, Any]], None]


@dataclass(frozen=True)
class Task:
    point: Point
    repeat: Optional[int]  # None when each point runs in one process

    @property
    def payload(self) -> dict[str, Any]:
        return {"kwargs": self.point.kwargs}

    @property
    def label(self) -> str:
        return self.point.label + (f" [process {self.repeat + 1}]" if self.repeat is not None else "")


class LocalExecutor:
    """Workers on this machine, ``parallel`` at a time (1: no two points disturb each other's timing)."""

    name = "local"

    def __init__(self, parallel: int = 1, timeout_s: Optional[float] = None, env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None) -> None:
        self.parallel = max(1, int(parallel))
        self.timeout_s = timeout_s
        self.env = dict(env) if env is not None else None
        self.cwd = cwd

    def run(self, tasks: Sequence[Task], on_event: OnEvent) -> Iterator[tuple[Task, WorkerOutcome]]:
        events: queue.Queue[tuple[str, Task, Any]] = queue.Queue()
        cancel = threading.Event()
        pending = deque(tasks)
        running: dict[int, threading.Thread] = {}

        def work(task: Task) -> None:
            try:
                outcome = run_worker(
                    task.payload, timeout_s=self.timeout_s, env=self.env, cwd=self.cwd, cancel=cancel,
                    on_message=lambda m: events.put(("msg", task, m)),
                )
            except BaseException as exc:  # a bug of ours: still report the task, never hang the sweep
                outcome = WorkerOutcome(reason="launch-failed", detail=f"{type(exc).__name__}: {exc}")
            events.put(("done", task, outcome))

        try:
            while pending or running:
                while pending and len(running) < self.parallel:
                    task = pending.popleft()
                    on_event(task, {"type": "start"})
                    thread = threading.Thread(target=work, args=(task,), name=f"infermeter-sweep-{task.point.index}", daemon=True)
                    running[id(task)] = thread
                    thread.start()
                try:
                    kind, task, item = events.get(timeout=0.25)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if kind == "msg":
                    on_event(task, item)
                    continue
                running.pop(id(task)).join()
                yield task, item
        finally:
            cancel.set()  # Ctrl-C or the consumer stopped: end every worker still running
            for thread in running.values():
                thread.join(timeout=30)


def _ray_task(payload: dict[str, Any], timeout_s: Optional[float], env_extra: dict[str, str], cwd: Optional[str]) -> dict[str, Any]:
    """Runs inside a Ray worker: the same fresh worker process a local sweep starts."""
    env = dict(os.environ)
    for key, value in env_extra.items():
        env[key] = value + (os.pathsep + env[key] if key == "PYTHONPATH" and env.get(key) else "")
    if cwd is not None and not os.path.isdir(cwd):
        cwd = None
    return run_worker(payload, timeout_s=timeout_s, env=env, cwd=cwd).to_dict()


class RayExecutor:
    """Each point a Ray task reserving ``num_cpus``/``num_gpus``/``memory``/``resources``; results come
    back as each task finishes. Joins ``config.address``, or starts a local instance (stopped at the end)
    when Ray is not already initialised in this process. Progress is per point (no in-point bar)."""

    name = "ray"

    def __init__(self, config: RayConfig, timeout_s: Optional[float] = None, env: Optional[Mapping[str, str]] = None,
                 cwd: Optional[str] = None) -> None:
        self.config = config
        self.parallel = 1
        self.timeout_s = timeout_s
        self.cwd = cwd
        source = env if env is not None else os.environ
        self.env_extra = {k: source[k] for k in ("PYTHONPATH",) if source.get(k)}

    def _resources(self, point: Point) -> dict[str, Any]:
        cfg = self.config
        kw = point.kwargs
        gpus = cfg.num_gpus
        if gpus is None:
            gpus = 1.0 if str(kw.get("device", "cpu")).startswith("cuda") else 0.0
        opts: dict[str, Any] = {"num_cpus": cfg.num_cpus, "num_gpus": gpus, "max_retries": 0}
        if cfg.memory:
            opts["memory"] = cfg.memory
        if cfg.resources:
            opts["resources"] = dict(cfg.resources)
        return opts

    def run(self, tasks: Sequence[Task], on_event: OnEvent) -> Iterator[tuple[Task, WorkerOutcome]]:
        try:
            import ray
        except ImportError:
            raise BackendUnavailable("the ray executor needs Ray; pip install 'infermeter[ray]' or use --executor local") from None
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.config.address:
                kwargs["address"] = self.config.address
            try:
                ray.init(**kwargs)
            except Exception as exc:
                where = self.config.address or "a local instance"
                raise BackendUnavailable(f"cannot start Ray ({where}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
            started = True
        remote = ray.remote(max_calls=1)(_ray_task)
        local = not self.config.address
        refs: dict[Any, Task] = {}
        try:
            for task in tasks:
                ref = remote.options(**self._resources(task.point)).remote(
                    task.payload, self.timeout_s, self.env_extra if local else {}, self.cwd if local else None
                )
                refs[ref] = task
                on_event(task, {"type": "submitted"})  # Ray decides when it starts
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=0.25)
                for ref in done:
                    task = refs.pop(ref)
                    try:
                        outcome = WorkerOutcome.from_dict(ray.get(ref))
                    except Exception as exc:  # the Ray worker itself died, or the task could not be placed
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        outcome = WorkerOutcome(reason="crashed", detail=f"Ray task failed: {type(exc).__name__}: {first[:300]}")
                    yield task, outcome
        finally:
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass
            if started:
                ray.shutdown()


def make_executor(name: str, *, parallel: int = 1, timeout_s: Optional[float] = None, ray: Optional[RayConfig] = None,
                  env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None) -> Any:
    if name == "local":
        return LocalExecutor(parallel=parallel, timeout_s=timeout_s, env=env, cwd=cwd)
    if name == "ray":
        return RayExecutor(ray or RayConfig(), timeout_s=timeout_s, env=env, cwd=cwd)
    from ..errors import UsageError

    raise UsageError(f"unknown executor '{name}'; use local or ray")
