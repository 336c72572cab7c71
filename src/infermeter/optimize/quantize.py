"""Quantization transforms of ONNX models, done by ONNX Runtime's own quantizer
(``onnxruntime.quantization``) rather than by hand: it knows which operators
have int8 kernels, folds the scales, and is what users would run themselves.

* dynamic: weights to int8 ahead of time, activations quantized per call
  (``quantize_dynamic``); no data needed;
* static: weights and activations to int8 with scales calibrated on sample
  inputs, as QDQ (QuantizeLinear/DequantizeLinear pairs) that ONNX Runtime
  fuses into int8 kernels (``quantize_static``); needs calibration data.

Each returns a :class:`Transformed`: the new file, its lineage step and the
sizes before and after. Any failure of the quantizer (an operator it cannot
handle, a graph it cannot read) is a :class:`TransformError` that names the
transform and the reason, so ``optimize`` keeps it as a failed candidate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error

__all__ = ["Transformed", "quantize_dynamic", "quantize_static", "CALIBRATION_METHODS"]

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
