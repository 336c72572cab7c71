"""Export and graph-optimisation transforms: a PyTorch model to ONNX (to run on
ONNX Runtime), and an ONNX model through ONNX Runtime's graph optimiser at a
chosen level, saved so the optimised graph is what gets measured and shipped;
and a PyTorch model (a transformed candidate: cast, quantized, pruned) saved as
a file that ``load_model`` reads back, to be measured in its own process.

The export uses ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``:
it needs no extra packages and handles the zoo's models) with the batch dim and
every other symbolic dim of the inputs marked dynamic, so one file serves every
batch size the optimiser measures. Failures are :class:`TransformError` naming
the transform and the exporter's reason.

:func:`save_torch` writes a ``torch.export`` program (``.pt2``) with the batch
dim dynamic (it must stay dynamic: ``Dim.DYNAMIC`` makes export fail rather than
fix it) and the other symbolic dims dynamic where the model allows
(``Dim.AUTO``: a dim the model pins, such as a fixed sequence length, is saved
at its example value). Where ``torch.export`` cannot capture the model
(data-dependent control flow, unsupported Python) it falls back to a
TorchScript trace (``.pt``), which bakes in the branches the example took.
Inputs are passed by name where ``forward`` takes them by those names, else by
position in the order given; the saved file names its inputs after ``forward``'s
parameters (an ``nn.Sequential`` calls its one input ``input``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error
from ..inputs import BATCH, InputSpec, make_batches
from .quantize import Transformed

__all__ = ["export_onnx", "optimize_onnx", "save_torch", "export_dims"]



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
    from ..models.onnx import graph_level

    chosen = graph_level(level)
    so = ort.SessionOptions()
    so.graph_optimization_level = chosen
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise TransformError(f"ONNX Runtime graph optimisation ({level}) of '{src.name}' failed: {short_error(exc)}") from None
    if not dst.is_file():
        raise TransformError(f"ONNX Runtime wrote no optimised graph for '{src.name}' at level {level}")
    return Transformed(dst, f"ort-graph-optimization({level})", src.stat().st_size, dst.stat().st_size)


def export_dims(specs: Sequence[InputSpec]) -> list[dict[int, Any] | None]:
    """``torch.export`` dynamic shapes for ``specs``, one per input in order: the batch dim
    ``Dim.DYNAMIC`` (export fails rather than fixing it), other symbolic dims ``Dim.AUTO``."""
    import torch

    return [{i: torch.export.Dim.DYNAMIC if d == BATCH else torch.export.Dim.AUTO
             for i, d in enumerate(s.shape) if isinstance(d, str)} or None for s in specs]


def save_torch(module: Any, specs: Sequence[InputSpec], dst: str | os.PathLike[str], *,
               dims: Mapping[str, int] | None = None, example_batch: int = 2) -> tuple[Path, str]:
    """Save ``module`` (taking the inputs of ``specs``) where ``load_model`` can load it back.

    Returns (the file written: ``dst`` with suffix ``.pt2``, or ``.pt`` for the
    TorchScript fallback; its format, ``"pt2"`` or ``"torchscript"``).
    ``dims`` sets the example value of each symbolic dim other than the batch.
    """
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"saving a PyTorch model needs torch ({exc}); pip install 'infermeter[torch]'") from None
    if not specs:
        raise UsageError("saving a PyTorch model needs its inputs; give them with --input NAME:DTYPE[DIMS]")
    if example_batch < 2:
        raise UsageError(f"example batch {example_batch} is too small: torch.export fixes dims of size 0 or 1; use 2 or more")
    dst = Path(dst)
    batches, _ = make_batches(list(specs), example_batch, dict(dims or {}), seed=0, pool=1)
    float_dtype = next((t.dtype for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()), None)
    tensors = {}
    for s in specs:
        t = torch.from_numpy(batches[0][s.name])
        if t.is_floating_point() and float_dtype is not None:
            t = t.to(float_dtype)  # as the runner feeds it: float inputs in the model's dtype
        tensors[s.name] = t
    shapes = dict(zip((s.name for s in specs), export_dims(specs)))
    by_name = _takes_by_name(module, [s.name for s in specs])
    args = () if by_name else tuple(tensors[s.name] for s in specs)
    kwargs = tensors if by_name else {}
    module.eval()

    pt2 = dst.with_suffix(".pt2")
    try:
        # A failed export prints its partial graph to stderr; its reason is in our one-line error.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            program = torch.export.export(module, args, kwargs,
                                          dynamic_shapes=shapes if by_name else tuple(shapes.values()))
            torch.export.save(program, str(pt2))
        return pt2, "pt2"
    except Exception as exc:
        export_reason = short_error(exc)
        pt2.unlink(missing_ok=True)

    pt = dst.with_suffix(".pt")
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings: the branches the example took are what is saved
            if by_name:
                traced = torch.jit.trace(module, example_kwarg_inputs=kwargs, check_trace=False)
            else:
                traced = torch.jit.trace(module, args, check_trace=False)
            torch.jit.save(traced, str(pt))
    except Exception as exc:
        pt.unlink(missing_ok=True)
        raise TransformError(
            f"saving the PyTorch model failed: torch.export: {export_reason}; TorchScript trace: {short_error(exc)}"
        ) from None
    return pt, "torchscript"


def _takes_by_name(module: Any, names: Sequence[str]) -> bool:
    """Whether ``forward`` takes every input by its name (else: by position, in ``specs`` order)."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return False
    keyword = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return all(n in keyword for n in names)
