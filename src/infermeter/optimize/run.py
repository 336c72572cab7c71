"""``optimize()``: the baseline and every candidate, each built, evaluated and
measured in its own worker process, one after another (so no candidate's timing
is disturbed by another), each saved to the store as it finishes.

The baseline runs first: its worker checks the eval file, the metric and the
inputs (a mistake there ends the run with one line before anything else is
tried), writes the rows every candidate is evaluated on and the baseline's
outputs, and tells which candidates this machine can run. A candidate that
fails (a transform, an evaluation, a crash, a hang past its timeout) is a
failed row with its reason; the run goes on. ``budget_s`` bounds the whole run:
when it is spent the candidates still to go are listed as skipped and the
finished ones are kept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .. import errors as E
from ..errors import InfermeterError, ModelRunError, UsageError
from ..result import ModelInfo, Result, load_result
from ..store import Store, new_id
from ..sweep.process import WorkerOutcome, run_worker
from .candidates import parse_only, plan_candidates
from .schema import OBJECTIVES, CandidatePlan, CandidateRecord, OptimizeReport, Recipe
from .summary import BASELINE_REPEAT, build_report

__all__ = ["OptimizeOptions", "optimize", "optimize_model", "parse_drop", "parse_budget"]

Progress = Callable[[str, Mapping[str, Any]], None]
_MIN_LEFT_S = 5.0  # a candidate is not started with less budget left than this
_FRACTION_NAMES = ("accuracy", "top5", "f1", "fidelity")


@dataclass
class OptimizeOptions:
    model: str
    eval: Optional[str] = None
    metric: Optional[str] = None
    train: Optional[str] = None
    max_drop: str | float = "1%"
    objective: str = "latency-p50"
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    only: Optional[str | set[str]] = None
    budget_s: Optional[float] = None
    out: Optional[str] = None
    inputs: list[str] = field(default_factory=list)
    dims: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    max_time_s: float = 10.0  # per candidate's measurement
    precision: float = 0.02
    distill_seconds: float = 30.0
    eval_rows: int = 64
    recipe: Optional[str] = None
    seed: int = 0
    candidate_timeout_s: float = 900.0
    tags: dict[str, str] = field(default_factory=dict)


def parse_drop(text: str | float) -> tuple[float, bool]:
    """``'1%'`` → (0.01, True: a percentage); ``'0.5'`` → (0.5, False: in the figure's own units)."""
    if isinstance(text, (int, float)):
        value, pct = float(text), False
    else:
        t = str(text).strip()
        pct = t.endswith("%")
        try:
            value = float(t[:-1] if pct else t) / (100.0 if pct else 1.0)
        except ValueError:
            raise UsageError(f"--max-accuracy-drop '{text}' is not a number; write it as 1% (one point) or 0.01") from None
    if not value >= 0:
        raise UsageError(f"--max-accuracy-drop must be zero or more, not {text}")
    return value, pct


def parse_budget(text: str | float | None) -> float | None:
    """``'10m'``, ``'90s'``, ``'1h'`` or seconds → seconds."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip().lower()
        units = {"s": 1.0, "m": 60.0, "h": 3600.0}
        mult = units.get(t[-1:], None)
        try:
            value = float(t[:-1] if mult else t) * (mult or 1.0)
        except ValueError:
            raise UsageError(f"--budget '{text}' is not a duration; write 10m, 90s or 1h") from None
    if value <= 0:
        raise UsageError(f"--budget must be positive, not {text}")
    return value


def _resolve_drop(value: float, pct: bool, name: str, higher_is_better: bool, base_value: float | None) -> float:
    """The budget in the figure's units. A percentage is points for figures in [0, 1]
    (accuracy, F1, fidelity) and a relative increase for errors (MSE, MAE)."""
    if not pct:
        return value
    if higher_is_better or any(name.startswith(n) for n in _FRACTION_NAMES):
        return value
    return value * abs(base_value or 0.0)


def _raise_worker_error(out: WorkerOutcome, what: str) -> None:
    if out.error is not None:
        cls = getattr(E, out.error_type or "", None)
        if isinstance(cls, type) and issubclass(cls, InfermeterError) and cls is not ModelRunError:
            raise cls(out.error)
        raise ModelRunError(f"{what} failed: {out.error}")
    stderr = " | ".join(line.strip() for line in out.stderr_tail[-3:] if line.strip())
    raise ModelRunError(f"{what}: worker process {out.detail}" + (f"; stderr: {stderr}" if stderr else ""))


def _stub_result(opts: OptimizeOptions, record: CandidateRecord, error: str) -> Result:
    return Result(id=new_id(), invocation=record.session, status="failed", error=error,
                  model=ModelInfo(spec=opts.model, backend="", device=opts.device, inputs=list(opts.inputs)),
                  batch_size=record.batch_size, stop_reason=record.status, tags={"optimize": record.session, "candidate": record.name},
                  config={"optimize": True})


def _check_out(out: str | None) -> Path | None:
    if out is None:
        return None
    p = Path(out)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".infermeter-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise E.OutputError(f"--out '{p}' is not a writable folder ({exc.strerror or exc}); give a folder you can write to") from None
    return p


def optimize(opts: OptimizeOptions, *, store: Store | None = None, progress: Progress | None = None) -> OptimizeReport:
    """Run the baseline and the candidates; return the report (saved results in ``store``)."""
    if opts.objective not in OBJECTIVES:
        raise UsageError(f"--objective '{opts.objective}' is not one of {', '.join(OBJECTIVES)}")
    drop_value, drop_pct = parse_drop(opts.max_drop)
    only = parse_only(opts.only) if opts.only is not None else None
    out_dir = _check_out(opts.out)
    recipe: Recipe | None = None
    if opts.recipe:
        from .recipe import read_recipe

        recipe = read_recipe(opts.recipe)
    emit = progress or (lambda e, p: None)
    t0 = time.monotonic()
    session = new_id()
    root = Path(tempfile.mkdtemp(prefix="infermeter-optimize-", dir=str(out_dir) if out_dir else None))
    try:
        return _optimize(opts, session, root, out_dir, store, emit, t0, drop_value, drop_pct, only, recipe)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def optimize_model(model: str, *, store: Store | str | os.PathLike[str] | bool | None = True, progress: Progress | None = None,
                   **options: Any) -> OptimizeReport:
    """The Python form of ``infermeter optimize``: ``optimize_model("zoo:digits-cnn", max_drop="1%", out="best/")``.
    ``options`` are :class:`OptimizeOptions` fields; ``store=True`` saves to the default store."""
    from ..store import default_store_path

    unknown = sorted(set(options) - set(OptimizeOptions.__dataclass_fields__))
    if unknown:
        raise UsageError(f"unknown optimize option(s) {', '.join(unknown)}; use {', '.join(OptimizeOptions.__dataclass_fields__)}")
    st: Store | None
    if store is True:
        st = Store(default_store_path())
    elif store in (False, None):
        st = None
    elif isinstance(store, Store):
        st = store
    else:
        st = Store(store)  # type: ignore[arg-type]
    return optimize(OptimizeOptions(model=model, **options), store=st, progress=progress)


def _payload(opts: OptimizeOptions, session: str, root: Path, plan: CandidatePlan, *, baseline: bool, max_drop: float,
             facts: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "session": session, "plan": plan.model_dump(mode="json"), "baseline": baseline, "base": opts.model,
        "inputs": list(facts.get("inputs") or opts.inputs), "dims": dict(facts.get("dims") or opts.dims),
        "device": opts.device, "workdir_root": str(root), "eval": opts.eval, "train": opts.train, "metric": opts.metric,
        "objective": opts.objective, "max_drop": max_drop, "eval_rows": opts.eval_rows, "seed": opts.seed,
        "eval_source": facts.get("eval_source", ""), "train_source": facts.get("train_source", ""),
        "bench": {"max_time_s": opts.max_time_s, "precision": opts.precision, "seed": opts.seed},
    }


def _optimize(opts: OptimizeOptions, session: str, root: Path, out_dir: Path | None, store: Store | None, emit: Progress,
              t0: float, drop_value: float, drop_pct: bool, only: set[str] | None, recipe: Recipe | None) -> OptimizeReport:
    budget = opts.budget_s

    def left() -> float | None:
        return None if budget is None else budget - (time.monotonic() - t0)

    def save(res: Result) -> None:
        if store is not None:
            store.save(res)

    pairs: list[tuple[CandidateRecord, Result | None]] = []

    def run_one(plan: CandidatePlan, index: int, total: int, *, baseline: bool, max_drop: float,
                facts: Mapping[str, Any]) -> tuple[CandidateRecord, Result | None, WorkerOutcome]:
        emit("candidate-start", {"name": plan.name, "index": index, "total": total, "lineage": plan.lineage()})
        remaining = left()
        timeout = opts.candidate_timeout_s if remaining is None else max(1.0, min(opts.candidate_timeout_s, remaining))
        outcome = run_worker(_payload(opts, session, root, plan, baseline=baseline, max_drop=max_drop, facts=facts),
                             timeout_s=timeout, module="infermeter.optimize.worker",
                             on_message=lambda m: emit("candidate-progress", {"name": plan.name, **(m.get("payload") or {}),
                                                                              "event": m.get("event")}))
        if baseline and (outcome.result is None or outcome.error is not None):
            _raise_worker_error(outcome, f"the baseline '{opts.model}'")
        record = CandidateRecord(session=session, name=plan.name, family=plan.family, kind=plan.kind, steps=plan.steps,
                                 lineage=plan.lineage(), runtime=plan.runtime, objective=opts.objective,
                                 batch_size=int(plan.runtime.get("batch_size", 1)), max_drop=max_drop)
        result: Result | None = None
        if outcome.result is not None:
            answer = outcome.result
            record = CandidateRecord.model_validate(answer["record"])
            if answer.get("bench"):
                result = load_result(answer["bench"])
        else:
            record.status = "failed"
            if outcome.error is not None:
                record.reason = f"{outcome.error_type}: {outcome.error}" if outcome.error_type not in (None, "TransformError") else outcome.error
            elif outcome.reason == "timeout" and budget is not None and (left() or 0) <= 1.0:
                record.reason = "time budget exhausted while it ran (killed; finished candidates kept)"
            else:
                stderr = " | ".join(line.strip() for line in outcome.stderr_tail[-2:] if line.strip())
                record.reason = f"worker process {outcome.detail}" + (f"; stderr: {stderr}" if stderr else "")
        return record, result, outcome

    # ---- the baseline: checks the inputs, writes the shared rows, says what this machine can do
    base_plan = plan_candidates("python", objective=opts.objective, batch_sizes=opts.batch_sizes, only=set())[0]
    record, result, outcome = run_one(base_plan, 0, 0, baseline=True, max_drop=drop_value, facts={})
    facts = dict((outcome.result or {}).get("facts") or {})
    if record.status != "ok" or result is None or result.status != "ok":
        why = record.reason or (result.error if result is not None else "") or "no measurement"
        if result is not None:
            _finish_result(result, record, session, opts, facts, notes=[])
            save(result)
        raise ModelRunError(f"the baseline '{opts.model}' could not be measured: {why}; nothing to compare candidates with")
    max_drop = _resolve_drop(drop_value, drop_pct, record.accuracy_name, record.higher_is_better, record.accuracy)
    record.max_drop = max_drop

    if recipe is not None:
        plans = [CandidatePlan(name=recipe.candidate or "recipe", family="recipe", kind=_kind_of(recipe), steps=recipe.steps,
                               runtime={"batch_size": opts.batch_sizes[0], **recipe.runtime})]
    else:
        plans = plan_candidates(facts.get("form", "python"), objective=opts.objective, batch_sizes=opts.batch_sizes,
                                device=opts.device, only=only,
                                dtype_support={k: tuple(v) for k, v in (facts.get("dtype_support") or {}).items()},
                                has_train=bool(facts.get("has_train")), cpu_count=facts.get("cpu_count"),
                                distill_seconds=opts.distill_seconds)[1:]
    notes = [f"accuracy measured on {facts.get('eval_source', 'the eval rows')}"]
    if facts.get("train_source"):
        notes.append(f"students trained and int8 scales calibrated on {facts['train_source']}")
    notes.append(f"budget: {record.accuracy_name} may fall by at most {max_drop:.4g}"
                 + (f" ({drop_value:.4g} × the baseline's {record.accuracy:.4g})" if max_drop != drop_value else ""))
    _finish_result(result, record, session, opts, facts, notes)
    save(result)
    pairs.append((record, result))
    emit("candidate-done", {"name": record.name, "status": record.status, "index": 0, "total": len(plans)})

    exhausted = False
    for i, plan in enumerate(plans, start=1):
        rec_skip = None
        if plan.skip:
            rec_skip = plan.skip
        elif budget is not None and (left() or 0) < _MIN_LEFT_S:
            rec_skip, exhausted = "time budget exhausted before it ran", True
        if rec_skip is not None:
            rec = CandidateRecord(session=session, name=plan.name, family=plan.family, kind=plan.kind, steps=plan.steps,
                                  lineage=plan.lineage(), runtime=plan.runtime, objective=opts.objective,
                                  batch_size=int(plan.runtime.get("batch_size", 1)), status="skipped", reason=rec_skip,
                                  max_drop=max_drop)
            stub = _stub_result(opts, rec, f"skipped: {rec_skip}")
            _finish_result(stub, rec, session, opts, facts, None)
            save(stub)
            pairs.append((rec, stub))
            emit("candidate-done", {"name": plan.name, "status": "skipped", "index": i, "total": len(plans), "reason": rec_skip})
            continue
        rec, res, outcome = run_one(plan, i, len(plans), baseline=False, max_drop=max_drop, facts=facts)
        if "budget" in rec.reason:
            exhausted = True
        if res is None:
            res = _stub_result(opts, rec, rec.reason or "failed")
        _finish_result(res, rec, session, opts, facts, None)
        save(res)
        pairs.append((rec, res))
        emit("candidate-done", {"name": plan.name, "status": rec.status, "index": i, "total": len(plans), "reason": rec.reason})

    # the baseline again, last: a slow moment at the start must not inflate every speed-up (summary uses the faster)
    if not exhausted and (budget is None or (left() or 0) >= _MIN_LEFT_S):
        again = CandidatePlan(name="baseline-repeat", family=BASELINE_REPEAT, kind="baseline",
                              runtime={"batch_size": opts.batch_sizes[0]}, base_batch=opts.batch_sizes[0])
        rec, res, _ = run_one(again, len(plans) + 1, len(plans) + 1, baseline=False, max_drop=max_drop, facts=facts)
        if res is None:
            res = _stub_result(opts, rec, rec.reason or "failed")
        _finish_result(res, rec, session, opts, facts, None)
        save(res)
        pairs.append((rec, res))
        emit("candidate-done", {"name": again.name, "status": rec.status, "index": len(plans) + 1, "total": len(plans) + 1})

    if exhausted:
        notes.append(f"the time budget of {budget:g} s ran out: candidates not run are listed as skipped")
    report = build_report(pairs, notes=notes, cpu_flags=facts.get("cpu_flags"))
    report.budget_s, report.elapsed_s, report.budget_exhausted = budget, time.monotonic() - t0, exhausted
    if out_dir is not None:
        _write_out(report, pairs, opts, out_dir)
    return report


def _kind_of(recipe: Recipe) -> str:
    ops = [s.op for s in recipe.steps]
    for op, kind in (("prune-unstructured", "prune-unstructured"), ("quantize-dynamic", "quantize-dynamic"),
                     ("quantize-static", "quantize-static"), ("compile", "compile")):
        if op in ops:
            return kind
    return ops[-1] if ops else "runtime"


def _finish_result(result: Result, record: CandidateRecord, session: str, opts: OptimizeOptions, facts: Mapping[str, Any],
                   notes: list[str] | None) -> None:
    result.id = new_id()
    result.invocation = session
    result.tags = {**opts.tags, **result.tags, "optimize": session, "candidate": record.name}
    details = {**result.scenario_details, "optimize": record.model_dump(mode="json")}
    if notes is not None:
        details["optimize_notes"] = list(notes)
    result.scenario_details = details


def _write_out(report: OptimizeReport, pairs: list[tuple[CandidateRecord, Result | None]], opts: OptimizeOptions,
               out_dir: Path) -> None:
    """The chosen model and its recipe, and the report as JSON, in ``out_dir``."""
    import json

    from .. import __version__
    from .recipe import write_recipe

    chosen = next((r for r in report.rows if r.chosen), None)
    if chosen is not None:
        rec = chosen.record
        if rec.artifact and Path(rec.artifact).is_file():
            src = Path(rec.artifact)
            suffix = ".onnx" if rec.artifact_format == "onnx" else src.suffix
            dst = out_dir / f"model{suffix}"
            shutil.copyfile(src, dst)
            report.model_path = str(dst)
        runtime = {k: v for k, v in rec.runtime.items()}
        compiled = any(s.op == "compile" for s in rec.steps)
        figures = f"{chosen.speedup:.3g}x {report.objective} speed-up" if chosen.speedup else ""
        recipe = Recipe(base=opts.model, candidate=rec.name, steps=rec.steps, runtime=runtime, infermeter=__version__,
                        note=f"chosen by infermeter optimize session {report.session}: {figures}, "
                        f"{report.accuracy_name} {rec.accuracy} (baseline {pairs[0][0].accuracy}); "
                        + ("the saved model is the module before torch.compile: compile it at load"
                           if compiled else "the saved model is the candidate as measured")
                        + ("; torchao's int8 layers are saved as int8 weights with dequantize + matmul, so rebuild with "
                           "--recipe to run torchao's kernels" if any(s.op == "torchao" for s in rec.steps) else ""))
        report.recipe_path = str(write_recipe(recipe, out_dir / "recipe.yaml"))
    report.out_dir = str(out_dir)
    (out_dir / "report.json").write_text(json.dumps(report.model_dump(mode="json"), indent=2), encoding="utf-8")
