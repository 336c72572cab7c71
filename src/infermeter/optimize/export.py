"""Export and graph-optimisation transforms: a PyTorch model to ONNX (to run on
ONNX Runtime), and an ONNX model through ONNX Runtime's graph optimiser at a
chosen level, saved so the optimised graph is what gets measured and shipped.

The export uses ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``:
it needs no extra packages and handles the zoo's models) with the batch dim and
every other symbolic dim of the inputs marked dynamic, so one file serves every
batch size the optimiser measures. Failures are :class:`TransformError` naming
the transform and the exporter's reason.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error
from ..inputs import InputSpec, make_batches
from .quantize import Transformed

__all__ = ["export_onnx", "optimize_onnx", "ORT_LEVELS"]

ORT_LEVELS = ("disabled", "basic", "extended", "all")



def export_onnx(module: Any, specs: Sequence[InputSpec], dst: str | os.PathLike[str], *, dims: Mapping[str, int] | None = None,
                opset: int = 17, example_batch: int = 2) -> Transformed:
    """``module`` (an nn.Module taking the inputs by name, in ``specs`` order) → an ONNX file."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"export needs torch ({exc}); pip install 'infermeter[torch]'") from None
    dst = Path(dst)
    if not specs:
        raise UsageError("export needs the model's inputs; give them with --input NAME:DTYPE[DIMS]")
    batches, _ = make_batches(list(specs), example_batch, dict(dims or {}), seed=0, pool=1)
    example = tuple(torch.from_numpy(batches[0][s.name]) for s in specs)
    dynamic = {s.name: {i: str(d) for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
    module = module.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings are not the user's business
            torch.onnx.export(module, example, str(dst), input_names=[s.name for s in specs],
                              dynamic_axes={k: v for k, v in dynamic.items() if v}, opset_version=opset, dynamo=False)
    except Exception as exc:
        raise TransformError(f"export to ONNX failed: {short_error(exc)}") from None
    size_before = sum(int(p.numel()) * p.element_size() for p in module.parameters())
    return Transformed(dst, f"export-onnx(opset={opset})", size_before, dst.stat().st_size)


def optimize_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, level: str = "extended") -> Transformed:
    """Run ONNX Runtime's graph optimiser at ``level`` and save the optimised graph.
    ('all' adds layout changes for this machine's CPU: measure it here, ship with care.)"""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"graph optimisation needs onnxruntime ({exc}); pip install 'infermeter[onnx]'") from None
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise UsageError(f"cannot optimise '{src}': no such file; give an ONNX model path")
    levels = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if level not in levels:
        raise UsageError(f"graph optimisation level '{level}' is not one of {', '.join(ORT_LEVELS)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[level]
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TransformError(f"ONNX Runtime graph optimisation ({level}) of '{src.name}' failed: {short_error(exc)}") from None
    if not dst.is_file():
        raise TransformError(f"ONNX Runtime wrote no optimised graph for '{src.name}' at level {level}")
    return Transformed(dst, f"ort-graph-optimization({level})", src.stat().st_size, dst.stat().st_size)
