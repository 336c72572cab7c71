"""Explain and predict: count the work of a model per operator, profile where the
time goes, calibrate this machine, and predict (or check published) inference time.

Modules, one idea each:
  schema      the data: OpCount/WorkCount, OpProfile, HardwareProfile/Spec, Prediction
  count       FLOPs and bytes per op (ONNX graphs, torch dispatch)
  profile     per-op time from the backend's own profiler
  calibrate   microbenchmarks of this machine → HardwareProfile
  hardware    the shipped spec-sheet table (hardware.yaml) and hardware files
  roofline    per-op time = overhead + max(compute, memory) → Prediction
  implied     what published throughput/FLOPs/params imply about latency

Nothing here imports torch or onnxruntime at import time.
"""

from __future__ import annotations

from .schema import (
    FLOPS_CONVENTION,
    GemmShape,
    HardwareProfile,
    HardwareSpec,
    OpCount,
    OpPrediction,
    OpProfile,
    OpTime,
    Prediction,
    WorkCount,
)

__all__ = [
    "FLOPS_CONVENTION",
    "GemmShape",
    "HardwareProfile",
    "HardwareSpec",
    "OpCount",
    "OpPrediction",
    "OpProfile",
    "OpTime",
    "Prediction",
    "WorkCount",
]
