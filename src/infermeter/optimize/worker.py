"""One optimize candidate in a fresh interpreter: ``python -m infermeter.optimize.worker``.

The same channel as the sweep's worker (``sweep.worker.start``: hello, one JSON
payload on stdin, JSON lines back, the model's prints on stderr). The worker
builds the candidate from the base model (``recipe.build``), evaluates it on the
eval rows, measures it with the bench engine, and answers::

    {"type": "result", "result": {"record": CandidateRecord, "bench": Result JSON | None, "facts": {...}}}

The baseline's worker does more first: it resolves the model's inputs and dims,
checks and writes the eval (and training) rows where every candidate reads
them, and writes the baseline's outputs, which candidates are compared with when
there are no labels. It reports those as ``facts``. A bad eval file, metric or
input there is an ``error`` message (the command exits 2); a transform, an
evaluation or a run that fails in a candidate is a failed record, not an error.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..sweep.worker import _jsonable, finish, start

__all__ = ["main"]


def _save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    tmp.replace(path)


def _outputs_npz(path: Path, outputs: Any) -> None:
    outs = outputs if isinstance(outputs, list) else [outputs]
    _save_arrays(path, {f"out{i}": np.asarray(o) for i, o in enumerate(outs)})


def _read_outputs(path: Path) -> Any:
    with np.load(path, allow_pickle=False) as z:
        outs = [z[f"out{i}"] for i in range(len(z.files))]
    return outs[0] if len(outs) == 1 else outs


def _eval_data(payload: Mapping[str, Any], specs: list[Any], send: Any) -> tuple[Any, Any, str, str]:
    """(eval data, train data or None, eval source, train source); the baseline writes the shared files."""
    from .evaluate import EvalData, load_eval

    work = Path(payload["workdir_root"])
    eval_path, train_path = work / "eval.npz", work / "train.npz"
    if not payload.get("baseline"):
        data = load_eval(eval_path, specs)
        train = load_eval(train_path, specs) if train_path.is_file() else None
        return data, train, payload.get("eval_source", ""), payload.get("train_source", "")
    base = str(payload["base"])
    zoo_digits = base.lower() in ("zoo:digits-mlp", "zoo:digits-cnn")
    if payload.get("eval"):
        data = load_eval(payload["eval"], specs)
        eval_source = f"{payload['eval']} ({data.n} rows{', labels' if data.labels is not None else ', no labels'})"
    elif zoo_digits:
        from ..models import zoo_digits as zd

        data = load_eval(zd.digits_eval_npz(work / "digits-eval.npz", base.split(":", 1)[1]), specs)
        eval_source = f"scikit-learn digits, held-out split ({data.n} rows, labels)"
    else:
        from ..inputs import make_batches

        rows = int(payload.get("eval_rows") or 64)
        batches, _ = make_batches(specs, rows, dict(payload.get("dims") or {}), seed=int(payload.get("seed", 0)) + 7919, pool=1)
        data = EvalData(dict(batches[0]), None, source="(generated)")
        eval_source = f"{rows} generated rows (seeded; no labels, so accuracy is fidelity to the original model)"
    _save_arrays(eval_path, {**data.inputs, **({"labels": data.labels} if data.labels is not None else {})})
    train = None
    train_source = ""
    if payload.get("train"):
        train = load_eval(payload["train"], specs)
        train_source = f"{payload['train']} ({train.n} rows)"
    elif zoo_digits:
        from ..models import zoo_digits as zd

        train = load_eval(zd.digits_train_npz(work / "digits-train.npz", base.split(":", 1)[1]), specs)
        train_source = f"scikit-learn digits, training split ({train.n} rows)"
    if train is not None:
        _save_arrays(train_path, {**train.inputs, **({"labels": train.labels} if train.labels is not None else {})})
    return data, train, eval_source, train_source


def _run(payload: Mapping[str, Any], send: Any) -> dict[str, Any]:
    from ..errors import InfermeterError
    from ..inputs import parse_input
    from ..measure import bench
    from ..models import LoadOptions, load_model, require_inputs
    from .evaluate import evaluate, headline_figure, model_outputs
    from .recipe import BuildContext, build
    from .schema import CandidatePlan, CandidateRecord

    def stage(name: str, **extra: Any) -> None:
        send({"type": "progress", "event": "stage", "payload": {"stage": name, **extra}, "t_ns": time.monotonic_ns()})

    plan = CandidatePlan.model_validate(payload["plan"])
    is_base = bool(payload.get("baseline"))
    record = CandidateRecord(session=payload["session"], name=plan.name, family=plan.family, kind=plan.kind, steps=plan.steps,
                             lineage=plan.lineage(), runtime=plan.runtime, objective=payload["objective"],
                             batch_size=int(plan.runtime.get("batch_size", 1)), max_drop=float(payload["max_drop"]))
    out: dict[str, Any] = {"record": None, "bench": None, "facts": {}}
    device = str(payload.get("device") or "cpu")
    stage("loading")
    user_specs = [parse_input(t) for t in payload.get("inputs") or []]
    base = load_model(payload["base"], LoadOptions(device=device, inputs=tuple(user_specs)))
    specs = require_inputs(base, user_specs)
    dims = {**getattr(base, "default_dims", {}), **dict(payload.get("dims") or {})}
    data, train, eval_source, train_source = _eval_data({**payload, "dims": dims}, specs, send)
    metric = payload.get("metric")
    if is_base:
        from .metrics import resolve_metric

        if metric:
            resolve_metric(metric)  # a metric that does not resolve fails here, before anything is measured
        from ..env import capture_env

        flags = capture_env().cpu_flags
        support: dict[str, tuple[bool, str]] = {}
        if base.backend == "torch":
            from .precision import dtype_support

            for dt in ("bfloat16", "float16"):
                support[dt] = dtype_support(dt, device, flags)
        import os

        out["facts"] = {
            "form": {"torch": "torch", "onnxruntime": "onnx"}.get(base.backend, "python"),
            "inputs": [s.text() for s in specs], "dims": dims, "dtype_support": support, "cpu_flags": flags,
            "cpu_count": os.cpu_count() or 1, "eval_source": eval_source, "train_source": train_source,
            "has_train": train is not None, "eval_rows": data.n, "labels": data.labels is not None,
        }

    root = Path(payload["workdir_root"])
    calibration = train.inputs if train is not None else data.inputs
    ctx = BuildContext(base=str(payload["base"]), specs=specs, dims=dims, workdir=root / "candidates" / plan.name,
                       cache=root / "cache", device=device, calibration=calibration,
                       calibration_source="training rows" if train is not None else "eval rows",
                       train=train.inputs if train is not None else None,
                       train_labels=train.labels if train is not None else None, train_source=train_source,
                       seed=int(payload.get("seed", 0)), batch_size=record.batch_size)
    stage("building")
    try:
        built = build(base, plan.steps, {k: v for k, v in plan.runtime.items() if k != "batch_size"}, ctx)
    except InfermeterError as exc:
        if is_base:
            raise
        record.status, record.reason = "failed", str(exc)
        out["record"] = record.model_dump(mode="json")
        return out
    record.steps = built.steps
    record.lineage = [s.text() for s in built.steps] + plan.lineage()[len(plan.steps):]
    record.build_s, record.size_bytes, record.notes = built.build_s, built.size_bytes, list(built.notes)
    record.artifact = str(built.artifact) if built.artifact is not None else None
    record.artifact_format = built.artifact_format
    runner = built.runner

    stage("evaluating", rows=data.n)
    ref_path = root / "reference.npz"
    try:
        # compiled candidates are evaluated at the batch they were compiled for: another shape would recompile
        compiled = any(st.op == "compile" for st in built.steps)
        outputs = model_outputs(runner, data, batch_size=record.batch_size if compiled else 64)
        if is_base:
            _outputs_npz(ref_path, outputs)
        reference = outputs if is_base else _read_outputs(ref_path)
        ev = evaluate(runner, data, metric=metric, reference=reference, outputs=outputs)
    except InfermeterError as exc:
        if is_base:
            raise
        record.status, record.reason = "failed", f"evaluation failed: {exc}"
        out["record"] = record.model_dump(mode="json")
        return out
    record.evaluation = ev
    record.accuracy, record.accuracy_name, record.higher_is_better = headline_figure(ev)

    stage("measuring")
    finished: list[Any] = []

    def progress(event: str, info: Mapping[str, Any]) -> None:
        if event == "point-done":
            finished.append(info.get("result"))
            return
        send({"type": "progress", "event": event, "payload": {k: _jsonable(v) for k, v in info.items()}, "t_ns": time.monotonic_ns()})

    kwargs = dict(payload.get("bench") or {})
    try:
        result = bench(runner, batch_size=record.batch_size, dims=dims, device=device, store=False, progress=progress,
                       inputs=list(specs), tags={"optimize": record.session, "candidate": plan.name}, **kwargs)
    except InfermeterError as exc:
        kept = [r for r in finished if r is not None]
        record.status, record.reason = "failed", f"measurement failed: {exc}"
        if kept:
            out["bench"] = kept[-1].to_json_dict()
        out["record"] = record.model_dump(mode="json")
        return out
    if result.status != "ok":
        record.status, record.reason = "failed", f"measurement failed: {(result.error or '').splitlines()[0] if result.error else ''}"
    out["bench"] = result.to_json_dict()
    out["record"] = record.model_dump(mode="json")
    return out


def main() -> int:
    started = start()
    if started is None:
        return 3
    send, payload = started
    from . import evaluate, recipe  # noqa: F401  (their import time belongs to the hello→ready gap)

    send({"type": "ready", "t_ns": time.monotonic_ns()})
    from ..errors import InfermeterError

    try:
        answer = _run(payload, send)
    except InfermeterError as exc:
        send({"type": "error", "error": str(exc), "error_type": type(exc).__name__})
        return 0
    except Exception as exc:  # a bug or a library's own failure: the parent shows the line, stderr keeps the trace
        traceback.print_exc()
        send({"type": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "error_type": type(exc).__name__})
        return 0
    send({"type": "result", "result": answer})
    return 0


if __name__ == "__main__":
    finish(main())
