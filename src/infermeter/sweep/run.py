"""``run_sweep``: every point of a grid, each in fresh processes, saved as it finishes.

Rules:

* **Resume key.** A point is done when the store holds an ``ok`` point result
  (``SweepPoint.repeat`` None) with the sweep's id and the point's key (canonical
  JSON of its axis values). Running a sweep again runs only the points that are not
  done: those never run, failed, or cut off by Ctrl-C.
* **Failures.** A point whose process crashes (non-zero exit, a signal; SIGKILL is
  reported as likely out of memory), passes the point timeout (its process group is
  killed) or whose model raises is saved as a ``failed`` result with the exit reason
  and the tail of its stderr; the sweep goes on.
* **Ctrl-C** ends the running workers and raises :class:`SweepInterrupted`, which
  carries every finished point; each was saved when it finished.
* **--processes N** saves each process's result (``repeat`` 0..N-1) and then the
  merged one (``repeat`` None): see ``merge.py``.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..errors import InfermeterError
from ..result import ModelInfo, Result, SweepPoint, load_result
from ..store import Store, default_store_path, new_id
from .config import Point, SweepConfig, config_from_dict, load_config
from .executors import Task, make_executor
from .merge import merge_repeats
from .process import WorkerOutcome

__all__ = ["run_sweep", "check_outcome", "point_result", "SweepOutcome", "SweepInterrupted", "SweepFailed", "SweepProgress"]

# progress(event, payload):
#   "sweep-start"   {sweep_id, points, todo, skipped, processes, executor}
#   "task-start"    {point, repeat, label}          (local: its worker process starts now)
#   "task-submitted" {point, repeat, label}         (ray: queued on the cluster)
#   "task-progress" {point, repeat, label, event, fraction, n, phase}   (the worker's bench progress)
#   "task-done"     {point, repeat, label, result}
#   "point-done"    {point, result, done, todo}
SweepProgress = Callable[[str, Mapping[str, Any]], None]


class SweepFailed(InfermeterError):
    """Some points failed (they are in the store, with their reasons). Exit 1."""


@dataclass
class SweepOutcome:
    sweep_id: str
    invocation: str
    config: SweepConfig
    points: list[Point]
    results: list[Result] = field(default_factory=list)  # one per point run now (merged when --processes > 1), point order
    repeats: list[Result] = field(default_factory=list)  # per-process results when --processes > 1
    skipped: list[Point] = field(default_factory=list)  # done by an earlier run
    previous: dict[str, Result] = field(default_factory=dict)  # point key → the earlier ok result of a skipped point
    launches: int = 0  # worker processes started
    wall_s: float = 0.0

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: ``results`` holds every point finished (and saved) before it."""

    def __init__(self, outcome: SweepOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome
        self.results = outcome.results


def run_sweep(
    config: SweepConfig | str | Path | Mapping[str, Any],
    *,
    store: Store | str | Path | bool | None = True,
    executor: Optional[str] = None,
    parallel: Optional[int] = None,
    processes: Optional[int] = None,
    point_timeout_s: Optional[float] = None,
    progress: Optional[SweepProgress] = None,
    env: Optional[Mapping[str, str]] = None,
) -> SweepOutcome:
    """Run a sweep (a :class:`SweepConfig`, a YAML path or a mapping); keyword arguments that are
    not None override the config. ``store``: True for the default store, a path, a :class:`Store`,
    or False (results in memory only: nothing to resume from). ``env``: the workers' environment
    (default: this process's)."""
    cfg = _resolve_config(config).replace(executor=executor, parallel=parallel, processes=processes, point_timeout_s=point_timeout_s)
    owned = not isinstance(store, Store) and store not in (None, False)
    st: Optional[Store] = store if isinstance(store, Store) else (
        Store(default_store_path() if store is True else Path(store)) if owned else None  # type: ignore[arg-type]
    )
    try:
        return _run(cfg, st, progress, env)
    finally:
        if owned and st is not None:
            st.close()


def _resolve_config(config: SweepConfig | str | Path | Mapping[str, Any]) -> SweepConfig:
    if isinstance(config, SweepConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    return config_from_dict(config)


def _done(st: Optional[Store], sweep_id: str) -> dict[str, Result]:
    """Point key → the ok point result (not a per-process repeat) already stored for this sweep."""
    if st is None or not st.done_points(sweep_id):
        return {}
    out: dict[str, Result] = {}
    for r in st.sweep(sweep_id):
        if r.status == "ok" and r.sweep is not None and r.sweep.repeat is None and r.sweep.sweep_id == sweep_id:
            out[r.sweep.point_key] = r
    return out


def _run(cfg: SweepConfig, st: Optional[Store], progress: Optional[SweepProgress], env: Optional[Mapping[str, str]]) -> SweepOutcome:
    t0 = time.monotonic()
    sid = cfg.sweep_id
    points = cfg.points()
    outcome = SweepOutcome(sweep_id=sid, invocation=new_id(), config=cfg, points=points)
    done = _done(st, sid)
    todo = [p for p in points if p.key not in done]
    outcome.skipped = [p for p in points if p.key in done]
    outcome.previous = {p.key: done[p.key] for p in outcome.skipped}
    n = cfg.processes
    parallel = cfg.parallel if cfg.executor == "local" else 1
    report = progress or (lambda event, payload: None)
    report("sweep-start", {"sweep_id": sid, "points": len(points), "todo": len(todo), "skipped": len(outcome.skipped),
                           "processes": n, "executor": cfg.executor})
    tasks = [Task(p, r) for p in todo for r in (range(n) if n > 1 else [None])]
    ex = make_executor(cfg.executor, parallel=parallel, timeout_s=cfg.point_timeout_s, ray=cfg.ray, env=env, cwd=os.getcwd())
    waiting: dict[str, list[Result]] = {}

    def sweep_point(point: Point, repeat: Optional[int]) -> SweepPoint:
        return SweepPoint(sweep_id=sid, point_key=point.key, axes=dict(point.axes), index=point.index, repeat=repeat,
                          processes=n, executor=cfg.executor, parallel=parallel)

    def on_event(task: Task, msg: Mapping[str, Any]) -> None:
        base = {"point": task.point, "repeat": task.repeat, "label": task.label}
        if msg.get("type") in ("start", "submitted"):
            outcome.launches += 1
            report("task-start" if msg["type"] == "start" else "task-submitted", base)
        elif msg.get("type") == "progress":
            payload = dict(msg.get("payload") or {})
            report("task-progress", {**base, **payload, "event": msg.get("event")})

    def finish(point: Point, result: Result) -> None:
        if st is not None:
            st.save(result)
        outcome.results.append(result)
        report("point-done", {"point": point, "result": result, "done": len(outcome.results), "todo": len(todo)})

    try:
        with closing(ex.run(tasks, on_event)) as stream:
            for task, worker in stream:
                result = point_result(task, worker, sweep_point(task.point, task.repeat), outcome.invocation, parallel)
                report("task-done", {"point": task.point, "repeat": task.repeat, "label": task.label, "result": result})
                if task.repeat is None:
                    finish(task.point, result)
                    continue
                if st is not None:
                    st.save(result)
                outcome.repeats.append(result)
                group = waiting.setdefault(task.point.key, [])
                group.append(result)
                if len(group) == n:
                    del waiting[task.point.key]
                    finish(task.point, merge_repeats(group, sweep_point(task.point, None), outcome.invocation))
    except KeyboardInterrupt:
        outcome.wall_s = time.monotonic() - t0
        outcome.results.sort(key=lambda r: r.sweep.index if r.sweep else 0)
        raise SweepInterrupted(outcome) from None
    outcome.wall_s = time.monotonic() - t0
    outcome.results.sort(key=lambda r: r.sweep.index if r.sweep else 0)
    return outcome


def _backend_of(spec: str) -> str:
    s = spec.lower()
    if s.endswith(".onnx"):
        return "onnxruntime"
    if s.startswith("zoo:") or s.endswith((".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript")):
        return "torch"
    return "unknown"


def point_result(task: Task, worker: WorkerOutcome, sweep: SweepPoint, invocation: str, parallel: int) -> Result:
    """The stored result of one worker: its own measurement, or a failed result saying how it ended."""
    kw = task.point.kwargs
    details = {"sweep_process": worker.summary()}
    result: Optional[Result] = None
    if worker.result is not None:
        try:
            result = load_result(worker.result)
        except ValueError as exc:
            worker.reason, worker.detail = "no-result", f"sent a result this infermeter cannot read: {str(exc).splitlines()[0]}"
    if result is not None:
        result.id = new_id()  # ids are minted where they are stored
        result.invocation = invocation
        result.sweep = sweep
        result.scenario_details = {**result.scenario_details, **details}
        if not worker.ok:  # it answered, then died or hung on the way out
            result.warnings.append(f"the worker process {worker.detail} after sending its result")
    else:
        if worker.error is not None:
            error, stop = f"{worker.error_type or 'error'}: {worker.error}", "error"
        else:
            stderr = " | ".join(line.strip() for line in worker.stderr_tail[-3:] if line.strip())
            error = f"worker process {worker.detail}" + (f"; stderr: {stderr}" if stderr else "; no stderr output")
            stop = worker.reason
        result = Result(
            id=new_id(), invocation=invocation, status="failed", error=error,
            model=ModelInfo(spec=str(kw.get("model")), backend=_backend_of(str(kw.get("model"))),
                            device=str(kw.get("device") or "cpu"), dtype=kw.get("dtype"), inputs=list(kw.get("inputs") or [])),
            batch_size=int(kw.get("batch_size") or 1), scenario=str(kw.get("scenario") or "single-stream"),
            config={k: v for k, v in kw.items() if k != "model"}, stop_reason=stop, tags=dict(kw.get("tags") or {}),
            scenario_details=details, sweep=sweep,
        )
    if parallel > 1:
        result.warnings.append(
            f"measured with {parallel} points running at once (--parallel {parallel}): points competed for the "
            "machine, so latencies are not those of an idle one"
        )
    return result


def check_outcome(outcome: SweepOutcome) -> None:
    """Raise :class:`SweepFailed` (exit 1) when any point failed; the one line names how many and why."""
    failed = outcome.failed
    if not failed:
        return
    reasons: dict[str, int] = {}
    for r in failed:
        key = r.stop_reason or "failed"
        reasons[key] = reasons.get(key, 0) + 1
    why = ", ".join(f"{v} {k}" for k, v in reasons.items())
    raise SweepFailed(
        f"{len(failed)} of {len(outcome.results)} point(s) run failed ({why}); they are saved with their reasons in "
        f"sweep {outcome.sweep_id}; fix the cause and run the same sweep again to retry only the unfinished points"
    )

