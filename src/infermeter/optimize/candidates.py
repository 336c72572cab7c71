"""Which candidates to try for a model on this machine: the plan of an optimize run.

Every family the issue names is planned for a PyTorch model; an ONNX model gets
the ONNX Runtime families (graph levels, int8, unstructured pruning) and the
runtime settings, and the rest are listed as skipped with the reason. A
candidate that cannot run here (bf16 on a CPU without bf16 instructions,
distillation without rows to train on) is planned as *skipped* with its reason,
so the table says what was not tried and why instead of staying silent.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from ..errors import UsageError
from ..models.base import ORT_GRAPH_LEVELS
from .schema import FAMILIES, OBJECTIVES, CandidatePlan, Step

__all__ = ["plan_candidates", "parse_only", "baseline_plan"]

UNSTRUCTURED = (0.5, 0.9)
STRUCTURED = (0.25, 0.5)


def parse_only(text: str | Iterable[str] | None) -> set[str] | None:
    """``--only quantize,prune`` → the families; None means all."""
    if text is None:
        return None
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t and t.strip()]
    bad = [t for t in items if t not in FAMILIES]
    if bad or not items:
        raise UsageError(f"--only: unknown famil{'ies' if len(bad) > 1 else 'y'} {', '.join(bad) or '(none given)'}; "
                         f"choose from {', '.join(FAMILIES)}")
    return set(items)


def baseline_plan(batch_size: int) -> CandidatePlan:
    return CandidatePlan(name="baseline", family="baseline", kind="baseline", runtime={"batch_size": batch_size})


def _p(name: str, family: str, kind: str, steps: list[Step], batch: int, skip: str = "", base_batch: int | None = None,
       **runtime: Any) -> CandidatePlan:
    return CandidatePlan(name=name, family=family, kind=kind, steps=steps, runtime={"batch_size": batch, **runtime}, skip=skip,
                         base_batch=base_batch if base_batch is not None else batch)


def plan_candidates(
    form: str,
    *,
    objective: str,
    batch_sizes: list[int],
    device: str = "cpu",
    only: set[str] | None = None,
    dtype_support: Mapping[str, tuple[bool, str]] | None = None,
    has_train: bool = False,
    has_calibration: bool = True,
    cpu_count: int | None = None,
    distill_seconds: float = 30.0,
) -> list[CandidatePlan]:
    """The candidates (baseline first) for a model of ``form`` ('torch', 'onnx' or 'python')."""
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective '{objective}' is not one of {', '.join(OBJECTIVES)}")
    if not batch_sizes or any(b <= 0 for b in batch_sizes):
        raise UsageError("--batch takes positive batch sizes, such as 1 or 1,8,32")
    b = batch_sizes[0]
    support = dict(dtype_support or {})
    cands: list[CandidatePlan] = []
    torch_only = "" if form == "torch" else f"needs a PyTorch model (this one is {'ONNX' if form == 'onnx' else 'a Python callable'})"
    onnx_ok = form in ("torch", "onnx")
    export = [Step(op="export-onnx", params={"opset": 17})] if form == "torch" else []

    # export: ONNX Runtime at each graph optimisation level
    for level in ORT_GRAPH_LEVELS:
        cands.append(_p(f"ort-{level}", "export", "export", list(export), b,
                        "" if onnx_ok else "needs a PyTorch module or an ONNX file", ort_level=level))

    # quantize
    cands.append(_p("ort-int8-dynamic", "quantize", "quantize-dynamic",
                    export + [Step(op="quantize-dynamic", params={"per_channel": False, "weight_type": "int8"})], b,
                    "" if onnx_ok else "needs a PyTorch module or an ONNX file"))
    cands.append(_p("ort-int8-static", "quantize", "quantize-static",
                    export + [Step(op="quantize-static", params={"method": "minmax", "per_channel": True, "rows": 128})], b,
                    ("" if has_calibration else "needs calibration rows (--eval or --train)") if onnx_ok
                    else "needs a PyTorch module or an ONNX file"))
    cands.append(_p("torch-int8-dynamic", "quantize", "quantize-dynamic", [Step(op="torchao", params={"kind": "int8-dynamic"})], b,
                    torch_only))
    cands.append(_p("torch-int8-weight-only", "quantize", "quantize-weight-only",
                    [Step(op="torchao", params={"kind": "int8-weight-only"})], b, torch_only))

    # precision
    for dtype in ("bfloat16", "float16"):
        ok, why = support.get(dtype, (True, ""))
        skip = torch_only or ("" if ok else why)
        cands.append(_p("bf16" if dtype == "bfloat16" else "fp16", "precision", dtype, [Step(op="cast", params={"dtype": dtype})], b,
                        skip))

    # prune
    for s in UNSTRUCTURED:
        cands.append(_p(f"prune-{s:.0%}", "prune", "prune-unstructured", [Step(op="prune-unstructured", params={"sparsity": s})], b,
                        "" if onnx_ok else "needs a PyTorch module or an ONNX file"))
    for r in STRUCTURED:
        cands.append(_p(f"prune-structured-{r:.0%}", "prune", "prune-structured",
                        [Step(op="prune-structured", params={"ratio": r})], b, torch_only))

    # distill
    no_rows = "" if has_train else "needs rows to train the student on: give --train rows.npz"
    cands.append(_p("distill-shallow", "distill", "distill",
                    [Step(op="distill", params={"student": "shallow", "seconds": distill_seconds})], b, torch_only or no_rows))
    cands.append(_p("distill-narrow-50%", "distill", "distill",
                    [Step(op="distill", params={"student": "narrow", "ratio": 0.5, "seconds": distill_seconds})], b,
                    torch_only or no_rows))

    # compile
    compile_step = Step(op="compile", params={"mode": "default", "freezing": True})
    cands.append(_p("compile", "compile", "compile", [compile_step], b, torch_only))
    bf16_ok, bf16_why = support.get("bfloat16", (True, ""))
    cands.append(_p("compile-bf16", "compile", "compile", [Step(op="cast", params={"dtype": "bfloat16"}), compile_step], b,
                    torch_only or ("" if bf16_ok else bf16_why)))
    cands.append(_p("compile-int8-dynamic", "compile", "compile",
                    [Step(op="torchao", params={"kind": "int8-dynamic"}), compile_step], b, torch_only))
    # PyTorch's own x86 int8 path: export, observe, convert (PT2E), then inductor fuses oneDNN int8 kernels
    cands.append(_p("compile-int8-static-pt2e", "compile", "quantize-static",
                    [Step(op="pt2e-int8", params={"kind": "static", "rows": 128}), compile_step], b,
                    torch_only or ("" if device == "cpu" else "X86InductorQuantizer targets x86 CPUs; this run is on " + device)
                    or ("" if has_calibration else "needs calibration rows (--eval or --train)")))

    # runtime settings
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if device == "cpu" and cores > 1:
        cands.append(_p("threads-1", "runtime", "runtime", [], b, threads=1))
    if objective == "throughput":
        for nb in batch_sizes[1:]:
            cands.append(_p(f"batch-{nb}", "runtime", "runtime", [], nb, base_batch=b))

    if only is not None:
        cands = [c for c in cands if c.family in only]
    return [baseline_plan(b)] + cands
