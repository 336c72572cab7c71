"""Quantization transforms. ONNX models go through ONNX Runtime's own quantizer
(``onnxruntime.quantization``) rather than by hand: it knows which operators
have int8 kernels, folds the scales, and is what users would run themselves.

* dynamic: weights to int8 ahead of time, activations quantized per call
  (``quantize_dynamic``); no data needed;
* static: weights and activations to int8 with scales calibrated on sample
  inputs, as QDQ (QuantizeLinear/DequantizeLinear pairs) that ONNX Runtime
  fuses into int8 kernels (``quantize_static``); needs calibration data.

Each returns a :class:`Transformed`: the new file, its lineage step and the
sizes before and after.

PyTorch models are quantized in PyTorch by torchao (:func:`quantize_torch`), on
their ``nn.Linear`` layers, and stay PyTorch modules (measured by the torch
runner, possibly compiled afterwards):

* int8-dynamic: int8 weights, activations quantized per call
  (``Int8DynamicActivationInt8WeightConfig``): int8 GEMMs, which pay where the
  CPU has VNNI/AMX-INT8 kernels;
* int8-weight-only: int8 weights dequantized on use (``Int8WeightOnlyConfig``):
  a quarter of the weight bytes with float arithmetic, which pays where moving
  the weights, not the arithmetic, is the cost (small batches, large layers).

Any failure of a quantizer (an operator it cannot handle, a graph it cannot
read, no layer it can convert) is a :class:`TransformError` that names the
transform and the reason, so ``optimize`` keeps it as a failed candidate.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error

__all__ = ["Transformed", "quantize_dynamic", "quantize_static", "CALIBRATION_METHODS", "quantize_torch", "TORCH_QUANT_KINDS"]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Transformed:
    path: Path
    step: str = ""  # the lineage entry: what was done, with its settings
    size_before: int = 0
    size_after: int = 0


def _ort_quant():  # imported on use: onnxruntime is an extra
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise BackendUnavailable(f"quantization needs onnxruntime ({exc}); pip install 'infermeter[onnx]'") from None
    return quantization



def _check_src(src: Path) -> None:
    if not src.is_file():
        raise UsageError(f"cannot quantize '{src}': no such file; give an ONNX model path")


def quantize_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, per_channel: bool = False,
                     weight_type: str = "int8") -> Transformed:
    """int8 weights, activations quantized per call: no calibration data needed."""
    q = _ort_quant()
    src, dst = Path(src), Path(dst)
    _check_src(src)
    types = {"int8": q.QuantType.QInt8, "uint8": q.QuantType.QUInt8}
    if weight_type not in types:
        raise UsageError(f"weight type '{weight_type}' is not one of {', '.join(types)}")
    try:
        q.quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=types[weight_type])
    except Exception as exc:  # the quantizer's own errors are many and undocumented
        raise TransformError(f"dynamic int8 quantization of '{src.name}' failed: {short_error(exc)}") from None
    return Transformed(dst, f"quantize-dynamic(weights={weight_type}, per_channel={per_channel})",
                       src.stat().st_size, dst.stat().st_size)


class _Reader:
    """Feeds calibration rows to ONNX Runtime's calibrator, a batch at a time."""

    def __init__(self, data: Mapping[str, np.ndarray], batch_size: int) -> None:
        self._data = {k: np.asarray(v) for k, v in data.items()}
        n = {v.shape[0] for v in self._data.values()}
        if len(n) != 1:
            raise UsageError(f"calibration arrays have different row counts {sorted(n)}; give the same rows for every input")
        self._n = n.pop()
        self._bs = max(1, batch_size)
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, self._n, self._bs):
            yield {k: v[i:i + self._bs] for k, v in self._data.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_static(src: str | os.PathLike[str], dst: str | os.PathLike[str], calibration: Mapping[str, np.ndarray], *,
                    method: str = "minmax", per_channel: bool = False, batch_size: int = 16) -> Transformed:
    """int8 weights and activations as QDQ, scales from ``calibration`` rows (input name → array)."""
    q = _ort_quant()
    src, dst = Path(src), Path(dst)
    _check_src(src)
    methods = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
               "percentile": q.CalibrationMethod.Percentile}
    if method not in methods:
        raise UsageError(f"calibration method '{method}' is not one of {', '.join(CALIBRATION_METHODS)}")
    if not calibration:
        raise UsageError("static quantization needs calibration data (--eval or --calibration rows)")
    reader = _Reader(calibration, batch_size)
    base = type("CalibrationReader", (q.CalibrationDataReader,), {
        "get_next": lambda self: reader.get_next(),
        "rewind": lambda self: reader.rewind(),
    })()
    try:
        q.quantize_static(str(src), str(dst), base, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=methods[method])
    except Exception as exc:
        raise TransformError(f"static int8 quantization of '{src.name}' ({method} calibration) failed: {short_error(exc)}") from None
    return Transformed(dst, f"quantize-static(qdq, {method}, per_channel={per_channel}, rows={reader._n})",
                       src.stat().st_size, dst.stat().st_size)


# ---------------------------------------------------------------------------- torchao (PyTorch models)

TORCH_QUANT_KINDS = ("int8-dynamic", "int8-weight-only")


def quantize_torch(module: Any, kind: str) -> Any:
    """A copy of ``module`` with its ``nn.Linear`` layers quantized by torchao (``kind``
    in :data:`TORCH_QUANT_KINDS`); the original is untouched. Whether the copy still
    gives good outputs is for the caller's evaluation to say."""
    if kind not in TORCH_QUANT_KINDS:
        raise UsageError(f"torch quantization kind '{kind}' is not one of {', '.join(TORCH_QUANT_KINDS)}")
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"torchao quantization needs torch ({exc}); pip install 'infermeter[torch]'") from None
    try:  # imported on use: torchao is an extra, and slow to import
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    except Exception as exc:  # missing, too old for these configs, or built for another torch
        raise BackendUnavailable(
            f"torchao {kind} quantization needs torchao>=0.18 built for torch {torch.__version__} "
            f"({short_error(exc)}); pip install 'infermeter[optimize]'"
        ) from None
    what = f"torchao {kind} quantization"
    try:
        out = copy.deepcopy(module)
    except Exception as exc:
        raise TransformError(f"{what} failed: cannot copy the model ({short_error(exc)})") from None
    linears = [m for m in out.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise TransformError(f"{what} failed: no nn.Linear layers for torchao to quantize")
    config = Int8DynamicActivationInt8WeightConfig() if kind == "int8-dynamic" else Int8WeightOnlyConfig()
    try:
        out.eval()
        quantize_(out, config)
    except Exception as exc:  # torchao's errors are many and undocumented
        raise TransformError(f"{what} failed: {short_error(exc)}") from None
    plain = (torch.Tensor, torch.nn.Parameter)
    if not any(type(m.weight) not in plain for m in linears):
        raise TransformError(f"{what} failed: torchao converted none of the {len(linears)} nn.Linear layers "
                             "(their shapes or dtypes are not ones it quantizes)")
    return out


# ---------------------------------------------------------------------------- PT2E (PyTorch 2 export quantization)

PT2E_KINDS = ("static", "dynamic")


def quantize_pt2e(module: Any, specs: Sequence[Any], dims: Mapping[str, int], calibration: Mapping[str, np.ndarray], *,
                  kind: str = "static", batch_size: int = 8, max_rows: int = 128) -> Any:
    """int8 through PyTorch's export quantization for x86 CPUs (torchao's ``prepare_pt2e`` /
    ``convert_pt2e`` with ``X86InductorQuantizer``): the graph is captured by ``torch.export``
    (batch dim dynamic), observed on ``calibration`` rows (static: activation scales from
    them; dynamic: weights only), and converted to quantize/dequantize pairs that inductor
    fuses into oneDNN int8 kernels. Only fast once compiled: follow it with the compile step.
    """
    if kind not in PT2E_KINDS:
        raise UsageError(f"PT2E quantization kind '{kind}' is not one of {', '.join(PT2E_KINDS)}")
    try:
        import torch
        from torchao.quantization.pt2e import allow_exported_model_train_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except Exception as exc:
        raise BackendUnavailable(f"PT2E int8 quantization needs torch and torchao>=0.18 ({short_error(exc)}); "
                                 "pip install 'infermeter[optimize]'") from None
    from .export import export_dims

    what = f"PT2E {kind} int8 quantization (X86InductorQuantizer)"
    names = [s.name for s in specs]
    missing = [n for n in names if n not in calibration]
    if missing:
        raise TransformError(f"{what} needs calibration rows for input(s) {', '.join(missing)}")
    rows = {n: np.asarray(calibration[n])[:max_rows] for n in names}
    n = min(len(v) for v in rows.values())
    if n < 2:
        raise TransformError(f"{what} needs at least 2 calibration rows, got {n}")

    def tensors(start: int, stop: int) -> tuple[Any, ...]:
        return tuple(torch.from_numpy(np.ascontiguousarray(rows[k][start:stop])) for k in names)

    shapes = tuple(export_dims(specs))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            model = copy.deepcopy(module).eval()
            captured = torch.export.export(model, tensors(0, min(n, max(2, batch_size))), dynamic_shapes=shapes).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(is_dynamic=kind == "dynamic"))
            prepared = prepare_pt2e(captured, quantizer)
            for start in range(0, n, max(1, batch_size)):
                prepared(*tensors(start, min(n, start + batch_size)))
            out = convert_pt2e(prepared)
            allow_exported_model_train_eval(out)  # the runner and compile call .eval() on it
    except Exception as exc:
        raise TransformError(f"{what} failed: {short_error(exc)}") from None
    return out
