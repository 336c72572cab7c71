"""From a base model and a list of steps to a runnable candidate: the one place
where the transforms (export, quantize, prune, distil, cast, compile) are
applied in order, so a candidate measured by ``optimize`` and a model rebuilt
from its saved recipe are made by the same code.

A model passes between steps as a PyTorch module or as an ONNX file. Exported
ONNX files are cached by the steps that made them (the base spec and the step
list), so the candidates of one run that all start with "export to ONNX" export
once. At the end the candidate is saved (ONNX file, or the module as a
``torch.export`` program, TorchScript when export cannot trace it) and loaded as
a :class:`~infermeter.models.Runner` with its runtime settings (threads, ONNX
Runtime graph optimisation level, ``torch.compile``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import TransformError, UsageError
from ..inputs import InputSpec, make_batches
from ..models import LoadOptions, Runner, load_model
from .schema import Recipe, Step

__all__ = ["BuildContext", "Built", "build", "STEP_OPS", "read_recipe", "write_recipe", "example_tensors"]

#: step op → the model form it takes ("torch", "onnx" or "any").
STEP_OPS: dict[str, str] = {
    "export-onnx": "torch",
    "ort-optimize": "onnx",
    "quantize-dynamic": "onnx",
    "quantize-static": "onnx",
    "torchao": "torch",
    "pt2e-int8": "torch",
    "cast": "torch",
    "prune-unstructured": "any",
    "prune-structured": "torch",
    "distill": "torch",
    "compile": "torch",
}
RUNTIME_KEYS = ("threads", "batch_size", "ort_level")


@dataclass
class BuildContext:
    """What the steps may need besides the model."""

    base: str
    specs: list[InputSpec]
    dims: dict[str, int]
    workdir: Path  # this candidate's folder
    cache: Path | None = None  # shared by the candidates of one run
    device: str = "cpu"
    calibration: Mapping[str, np.ndarray] | None = None  # input rows for static quantization
    calibration_source: str = ""
    train: Mapping[str, np.ndarray] | None = None  # input rows to distil on
    train_labels: np.ndarray | None = None
    train_source: str = ""
    seed: int = 0
    batch_size: int = 1  # the batch the candidate is measured at: compile for that shape


@dataclass
class Built:
    runner: Runner
    steps: list[Step]  # as run, with what each step found (rows, sparsity …)
    artifact: Path | None = None
    artifact_format: str | None = None
    size_bytes: int | None = None
    build_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def example_tensors(specs: Sequence[InputSpec], dims: Mapping[str, int], batch: int = 2) -> tuple[Any, ...]:
    """Seeded example inputs in the model's call order, as torch tensors."""
    import torch

    batches, _ = make_batches(list(specs), batch, dict(dims), seed=0, pool=1)
    return tuple(torch.from_numpy(np.ascontiguousarray(batches[0][s.name])) for s in specs)


def _need(state: dict[str, Any], form: str, step: Step) -> None:
    if state["form"] != form:
        have = "an ONNX file" if state["form"] == "onnx" else "a PyTorch module"
        raise TransformError(f"step {step.text()} needs a {'PyTorch module' if form == 'torch' else 'ONNX model'} but has {have}; "
                             "put export-onnx before ONNX steps and PyTorch steps before it")


def _cache_path(ctx: BuildContext, done: list[Step], suffix: str) -> Path:
    key = json.dumps({"base": ctx.base, "dims": ctx.dims, "steps": [s.model_dump() for s in done]}, sort_keys=True, default=str)
    folder = ctx.cache or ctx.workdir
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}{suffix}"


def _rows(data: Mapping[str, np.ndarray], limit: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[:limit] for k, v in data.items()}


def build(base: Runner, steps: Sequence[Step], runtime: Mapping[str, Any], ctx: BuildContext, *, save: bool = True) -> Built:
    """Apply ``steps`` to the model ``base`` holds and load the result with ``runtime`` settings."""
    t0 = time.perf_counter()
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    unknown = [k for k in runtime if k not in RUNTIME_KEYS]
    if unknown:
        raise UsageError(f"unknown runtime setting(s) {', '.join(unknown)}; use {', '.join(RUNTIME_KEYS)}")
    state: dict[str, Any] = {}
    if base.backend == "onnxruntime":
        path = _path_of(base)
        if path is None:
            raise TransformError(f"the ONNX model '{ctx.base}' was not loaded from a file; save it to a .onnx file first")
        state = {"form": "onnx", "path": path}
    elif base.backend == "torch":
        state = {"form": "torch", "module": base.model}
    else:
        if steps:
            raise TransformError(f"'{ctx.base}' is a {base.backend} model; optimize transforms need a PyTorch module or an ONNX file")
        state = {"form": "python"}
    done: list[Step] = []
    notes: list[str] = []
    compiled: Any = None
    for step in steps:
        if step.op not in STEP_OPS:
            raise UsageError(f"unknown step '{step.op}'; steps are {', '.join(STEP_OPS)}")
        if compiled is not None:
            raise TransformError("compile must be the last step: nothing can transform a compiled module")
        form = STEP_OPS[step.op]
        if form != "any":
            _need(state, form, step)
        ran = _apply(step, state, ctx, done, notes)
        done.append(ran)
        if step.op == "compile":
            compiled = state.pop("compiled")

    built = Built(runner=base, steps=done, notes=notes)
    if state["form"] == "onnx":
        path: Path = state["path"]
        built.artifact, built.artifact_format, built.size_bytes = path, "onnx", path.stat().st_size
        level = runtime.get("ort_level")
        options = LoadOptions(device=ctx.device, threads=runtime.get("threads"), inputs=tuple(ctx.specs),
                              extra={"graph_optimization_level": level} if level else {})
        if not done and runtime.get("threads") is None and not level:
            built.runner = base
        else:
            built.runner = load_model(path, options)
    elif state["form"] == "torch":
        module = state["module"]
        if save:
            built.artifact, built.artifact_format = _save(module, base, ctx, done, notes)
            if built.artifact is not None:
                built.size_bytes = built.artifact.stat().st_size
        if built.size_bytes is None:
            built.size_bytes = _module_bytes(module)
            notes.append("size: bytes of parameters and buffers in memory (the module was not saved)")
        if not done and runtime.get("threads") is None:
            built.runner = base
        else:
            from ..models.torch import TorchRunner

            options = LoadOptions(device=ctx.device, threads=runtime.get("threads"), inputs=tuple(ctx.specs))
            built.runner = TorchRunner(compiled if compiled is not None else module, f"{ctx.base} [{' → '.join(s.op for s in done)}]",
                                       options, declared=ctx.specs, default_dims=ctx.dims,
                                       extra={"optimize_steps": [s.text() for s in done]})
    else:
        if runtime.get("threads") is not None:
            notes.append("threads: a Python callable sets its own threads; the setting was not applied")
    built.build_s = time.perf_counter() - t0
    return built


def _path_of(runner: Runner) -> Path | None:
    p = getattr(runner, "_path", None)
    return Path(p) if p is not None else None


def _module_bytes(module: Any) -> int:
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        total += int(t.numel()) * t.element_size()
    return total


def _save(module: Any, base: Runner, ctx: BuildContext, done: list[Step], notes: list[str]) -> tuple[Path | None, str | None]:
    if not done:
        src = _path_of(base)
        if src is not None and src.is_file():  # the user's own file is the baseline's artifact
            return src, "pt2" if src.suffix == ".pt2" else "torchscript"
    from .export import save_torch

    try:
        path, fmt = save_torch(module, ctx.specs, ctx.workdir / "model.pt2", dims=ctx.dims)
    except TransformError as exc:
        notes.append(f"not saved: {exc}")
        return None, None
    return path, fmt


def _apply(step: Step, state: dict[str, Any], ctx: BuildContext, done: list[Step], notes: list[str]) -> Step:
    p = dict(step.params)
    op = step.op
    if op == "export-onnx":
        from .export import export_onnx

        dst = _cache_path(ctx, done + [step], ".onnx")
        if not dst.is_file():
            tmp = dst.with_suffix(".part.onnx")
            export_onnx(state["module"], ctx.specs, tmp, dims=ctx.dims, opset=int(p.get("opset", 17)))
            tmp.replace(dst)
        state.clear()
        state.update(form="onnx", path=dst)
        return step
    if op in ("quantize-dynamic", "quantize-static", "ort-optimize") or (op == "prune-unstructured" and state["form"] == "onnx"):
        dst = _cache_path(ctx, done + [step], ".onnx")
        src = state["path"]
        if op == "quantize-dynamic":
            from .quantize import quantize_dynamic

            if not dst.is_file():
                quantize_dynamic(src, dst, per_channel=bool(p.get("per_channel", False)), weight_type=str(p.get("weight_type", "int8")))
        elif op == "quantize-static":
            from .quantize import quantize_static

            if ctx.calibration is None:
                raise TransformError("static int8 quantization needs calibration rows; give --eval or --train data")
            rows = int(p.get("rows", 128))
            cal = _rows(ctx.calibration, rows)
            p["rows"] = int(next(iter(cal.values())).shape[0])
            if ctx.calibration_source:
                p["calibration"] = ctx.calibration_source
            dst = _cache_path(ctx, done + [Step(op=op, params=p)], ".onnx")
            if not dst.is_file():
                quantize_static(src, dst, cal, method=str(p.get("method", "minmax")), per_channel=bool(p.get("per_channel", False)))
        elif op == "ort-optimize":
            from .export import optimize_onnx

            if not dst.is_file():
                optimize_onnx(src, dst, level=str(p.get("level", "extended")))
        else:
            from .prune import prune_onnx_unstructured

            out = prune_onnx_unstructured(src, dst, float(p["sparsity"]))
            notes.append(out.step)
        state["path"] = dst
        return Step(op=op, params=p)
    module = state["module"]
    if op == "prune-unstructured":
        import copy

        from .prune import prune_unstructured

        module = copy.deepcopy(module)
        info = prune_unstructured(module, float(p["sparsity"]), scope=str(p.get("scope", "global")))
        notes.append(info.description)
        p["achieved"] = round(info.sparsity, 4)
    elif op == "prune-structured":
        from .prune import prune_structured

        module, info = prune_structured(module, float(p["ratio"]), example_tensors(ctx.specs, ctx.dims))
        notes.append(info.description)
        p["params_after"] = info.params_after
    elif op == "distill":
        module = _distill(module, p, ctx, notes)
    elif op == "torchao":
        from .quantize import quantize_torch

        module = quantize_torch(module, str(p.get("kind", "int8-dynamic")))
    elif op == "pt2e-int8":
        from .quantize import quantize_pt2e

        if ctx.calibration is None:
            raise TransformError("PT2E int8 quantization needs calibration rows; give --eval or --train data")
        rows = int(p.get("rows", 128))
        module = quantize_pt2e(module, ctx.specs, ctx.dims, ctx.calibration, kind=str(p.get("kind", "static")),
                               batch_size=max(1, ctx.batch_size), max_rows=rows)
        p["rows"] = min(rows, int(next(iter(ctx.calibration.values())).shape[0]))
        if ctx.calibration_source:
            p["calibration"] = ctx.calibration_source
    elif op == "cast":
        from .precision import cast_module

        module = cast_module(module, str(p["dtype"]))
    elif op == "compile":
        from .compile import compile_module

        # compiled for the measured batch: a second shape makes dynamo recompile with a dynamic batch dim (slower kernels)
        example = example_tensors(ctx.specs, ctx.dims, batch=max(1, ctx.batch_size))
        example = _match_dtype(module, example)
        pt2e = any(s.op == "pt2e-int8" for s in done)
        compiled, seconds = compile_module(module, example, mode=str(p.get("mode", "default")),
                                           freezing=bool(p.get("freezing", True)), grad_mode="no_grad" if pt2e else "inference")
        notes.append(f"torch.compile took {seconds:.1f} s for batch {max(1, ctx.batch_size)} (another batch size recompiles)")
        state["compiled"] = compiled
    state["module"] = module
    return Step(op=op, params=p)


def _match_dtype(module: Any, example: tuple[Any, ...]) -> tuple[Any, ...]:
    """Float inputs in the module's float dtype (a bf16 module takes bf16 inputs), as the runner feeds them."""
    floats = [t.dtype for t in module.parameters() if t.is_floating_point()]
    if not floats:
        return example
    return tuple(t.to(floats[0]) if t.is_floating_point() else t for t in example)


def _distill(teacher: Any, p: dict[str, Any], ctx: BuildContext, notes: list[str]) -> Any:
    from .distill import distill, shallow_student

    if ctx.train is None:
        raise TransformError("distillation needs rows to train on; give --train rows.npz (inputs, labels optional)")
    kind = str(p.get("student", "shallow"))
    if kind == "shallow":
        student, how = shallow_student(teacher)
    elif kind == "narrow":
        from .prune import prune_structured

        student, info = prune_structured(teacher, float(p.get("ratio", 0.5)), example_tensors(ctx.specs, ctx.dims))
        how = f"narrow student: {info.description}"
    else:
        raise UsageError(f"unknown student '{kind}'; use shallow or narrow")
    labels = ctx.train_labels
    info = distill(teacher, student, ctx.train, input_names=[s.name for s in ctx.specs], seconds=float(p.get("seconds", 30.0)),
                   labels=labels, label_weight=float(p.get("label_weight", 0.0)) if labels is not None else 0.0, seed=ctx.seed)
    notes.append(f"{how}; {info.description}")
    p.update(steps=info.steps, rows=info.rows, trained_s=round(info.seconds, 1))
    if ctx.train_source:
        p["data"] = ctx.train_source
    return student


# --------------------------------------------------------------------------- recipe files


def write_recipe(recipe: Recipe, path: str | Path) -> Path:
    import yaml

    path = Path(path)
    text = "# infermeter optimize recipe: `infermeter optimize BASE --recipe THIS_FILE` rebuilds and measures it\n"
    text += yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def read_recipe(path: str | Path) -> Recipe:
    import yaml
    from pydantic import ValidationError

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"recipe '{p}' does not exist; give the recipe.yaml that infermeter optimize --out wrote")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        recipe = Recipe.model_validate(data)
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        first = str(exc).splitlines()
        raise UsageError(f"recipe '{p}' is not a valid recipe: {' '.join(first[:3])}") from None
    for s in recipe.steps:
        if s.op not in STEP_OPS:
            raise UsageError(f"recipe '{p}' has unknown step '{s.op}'; steps are {', '.join(STEP_OPS)}")
    return recipe

