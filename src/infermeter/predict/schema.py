"""The data of explain-and-predict: counted work, measured per-operator time,
machine profiles (calibrated or from a spec sheet) and predictions.

Every module of ``predict/`` reads and writes these; ``Result`` carries
``op_profile`` and ``prediction`` so the store, JSON and the HTML report see them.

Conventions, stated once:
  * FLOPs are 2 × multiply-accumulates (a multiply and an add each count);
    tools that report MACs give half this number.
  * bytes are what an op must read and write if nothing stays in cache between
    ops: weights read, activations read, activations written.
  * time in seconds, rates per second (FLOP/s, B/s).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FLOPS_CONVENTION",
    "OP_CLASSES",
    "OpClass",
    "GemmShape",
    "OpCount",
    "WorkCount",
    "OpTime",
    "OpProfile",
    "RatePoint",
    "BandwidthPoint",
    "OverheadPoint",
    "SequencePoint",
    "HardwareProfile",
    "HardwareSpec",
    "OpPrediction",
    "Prediction",
]

FLOPS_CONVENTION = "FLOPs = 2 x multiply-accumulates (MACs = FLOPs / 2)"

OpClass = Literal[
    "matmul",  # GEMM, batched matmul, linear
    "conv",
    "depthwise_conv",  # groups == channels: little reuse, usually memory-bound
    "attention",  # scaled-dot-product attention as one op (QK^T, softmax, PV)
    "recurrent",  # LSTM/GRU layers counted as their gate GEMMs + pointwise work
    "elementwise",
    "normalization",
    "reduction",  # pooling, softmax, sum/mean
    "data_movement",  # reshape/transpose/copy/concat/gather/embedding lookups
    "unknown",  # the counter does not know the op: listed, never silently zero
]
OP_CLASSES: tuple[str, ...] = OpClass.__args__  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GemmShape(_Model):
    """The matrix product an op amounts to: ``batch`` products of (m×k)·(k×n).

    Convolutions map to their implicit GEMM: m = N·Ho·Wo, n = Cout/groups,
    k = Cin/groups·kh·kw, batch = groups. The predictor looks attainable FLOP/s
    up by this shape.
    """

    m: int
    n: int
    k: int
    batch: int = 1


class OpCount(_Model):
    """Work of one operator (graph node or dispatched op) at one batch size."""

    name: str = Field(description="node name or module path, for the per-layer view")
    op: str = Field(description="op type as the backend names it: MatMul, aten.addmm …")
    op_class: OpClass
    dtype: str = "float32"
    flops: float = Field(0.0, description="2 x MACs (plus 1 per elementwise result)")
    weight_bytes: int = Field(0, description="parameter/initializer bytes read")
    read_bytes: int = Field(0, description="activation bytes read")
    write_bytes: int = Field(0, description="activation bytes written")
    gemm: GemmShape | None = None
    shapes: str = Field("", description="input and output shapes, short text")
    known: bool = True
    note: str = ""

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.read_bytes + self.write_bytes

    @property
    def intensity(self) -> float | None:
        """Arithmetic intensity, FLOP per byte moved (None when nothing moves)."""
        b = self.bytes
        return self.flops / b if b else None


class WorkCount(_Model):
    """All ops of one model at one batch size, with totals."""

    spec: str
    backend: str = Field(description="'onnx' (graph after shape inference) or 'torch' (dispatched aten ops)")
    method: str = Field("", description="how the ops were found: onnx shape inference, torch dispatch …")
    batch_size: int
    dims: dict[str, int] = Field(default_factory=dict)
    flops_convention: str = FLOPS_CONVENTION
    params: int = 0
    param_bytes: int = 0
    ops: list[OpCount] = Field(default_factory=list)
    unknown_ops: list[str] = Field(default_factory=list, description="op types the counter does not know")

    @property
    def flops(self) -> float:
        return float(sum(o.flops for o in self.ops))

    @property
    def bytes(self) -> int:
        return int(sum(o.bytes for o in self.ops))

    @property
    def flops_per_sample(self) -> float:
        return self.flops / max(1, self.batch_size)

    def by_class(self) -> dict[str, dict[str, float]]:
        """op class → {'ops', 'flops', 'bytes'} totals."""
        out: dict[str, dict[str, float]] = {}
        for o in self.ops:
            d = out.setdefault(o.op_class, {"ops": 0, "flops": 0.0, "bytes": 0.0})
            d["ops"] += 1
            d["flops"] += o.flops
            d["bytes"] += o.bytes
        return out


# ---------------------------------------------------------------------------- measured per-op time


class OpTime(_Model):
    """Profiler time aggregated under one key (an op type, or a node/layer)."""

    key: str
    op_class: OpClass | None = None
    calls: int = Field(description="calls over all profiled iterations")
    total_s: float = Field(description="self time summed over all profiled iterations")
    per_iter_s: float = Field(description="total_s / iterations")
    share: float = Field(description="fraction of the summed op time, 0..1")


class OpProfile(_Model):
    """Where the time goes, from the backend's own profiler."""

    profiler: str = Field(description="torch.profiler | onnxruntime session profiling")
    iterations: int
    warmup: int = 0
    device: str = "cpu"
    phases: dict[str, float] = Field(
        default_factory=dict,
        description="seconds per phase: load, input_prep, h2d_copy, forward, output_copy (those that apply)",
    )
    op_total_per_iter_s: float = Field(0.0, description="sum of op self times per iteration")
    by_type: list[OpTime] = Field(default_factory=list)
    by_node: list[OpTime] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------- machines


class RatePoint(_Model):
    """Attainable FLOP/s for one kernel shape (GEMM or conv), median of repeats."""

    kind: Literal["gemm", "conv", "depthwise_conv", "attention", "recurrent"] = "gemm"
    dtype: str = "float32"
    gemm: GemmShape
    flops_per_s: float
    spread: float = Field(0.0, description="(p75 - p25) / median of the repeats")
    repeats: int = 0
    label: str = Field("", description="the kernel as called, e.g. conv 64->64 3x3 @56")


class BandwidthPoint(_Model):
    """Bytes per second an op kind moves at one working-set size."""

    kind: Literal["copy", "elementwise", "reduction", "normalization", "transpose", "activation", "pooling"] = "copy"
    dtype: str = "float32"
    bytes: int = Field(description="working set: bytes read + written per call")
    bytes_per_s: float
    spread: float = 0.0
    repeats: int = 0


class OverheadPoint(_Model):
    """Fixed cost of dispatching one op (a tiny op's time), per backend and threads."""

    backend: str
    threads: int
    seconds: float
    spread: float = 0.0
    repeats: int = 0


class SequencePoint(_Model):
    """A synthetic chain of different ops (not a user model), measured end to end and
    predicted from the isolated points: how much slower kernels run one after
    another than each repeated alone (caches and predictors warm for one kernel,
    threads waiting on the previous op)."""

    label: str
    dtype: str = "float32"
    ops: int
    predicted_s: float = Field(description="sum of the isolated calibrated op times")
    measured_s: float = Field(description="median time of the whole chain")
    mean_op_s: float = Field(description="predicted_s / ops: how long its ops are, on average")
    spread: float = 0.0

    @property
    def ratio(self) -> float:
        return self.measured_s / self.predicted_s if self.predicted_s > 0 else 1.0


class HardwareSpec(_Model):
    """A machine from a spec sheet (the shipped table or a user's file)."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    kind: Literal["cpu", "gpu", "tpu", "soc"]
    vendor: str = ""
    peak_flops: dict[str, float] = Field(description="dtype → dense peak FLOP/s (no sparsity)")
    memory_bandwidth: float = Field(description="B/s, main memory (DRAM/HBM)")
    memory_bytes: int | None = None
    caches: dict[str, int] = Field(default_factory=dict, description="level → bytes (whole chip)")
    cores: int | None = Field(None, description="CPU cores, GPU SMs, TPU cores")
    tdp_w: float | None = None
    source: str = Field(description="where the figures come from (document and URL)")
    notes: str = ""


class HardwareProfile(_Model):
    """A calibrated machine: what kernels actually attain here, with spread."""

    schema_: str = Field("infermeter.hardware/1", alias="schema")
    name: str
    kind: Literal["cpu", "gpu"] = "cpu"
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    source: str = Field("calibrated", description="'calibrated on HOST with BACKEND' or a spec sheet's source")
    backend: str = "torch"
    device: str = "cpu"
    device_name: str = ""
    threads: int | None = None
    dtypes: list[str] = Field(default_factory=list)
    caches: dict[str, int] = Field(default_factory=dict, description="level → bytes, as the OS reports")
    gemm: list[RatePoint] = Field(default_factory=list)
    conv: list[RatePoint] = Field(default_factory=list)
    bandwidth: list[BandwidthPoint] = Field(default_factory=list, description="staircase across cache levels to DRAM")
    overhead: list[OverheadPoint] = Field(default_factory=list)
    sequence: list[SequencePoint] = Field(default_factory=list, description="chains of ops: measured / isolated sum")
    duration_s: float = 0.0
    env: dict[str, Any] = Field(default_factory=dict, description="cpu model, cores, versions at calibration")
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------------------- predictions


class OpPrediction(_Model):
    name: str
    op: str
    op_class: OpClass
    calls: int = 1
    flops: float = 0.0
    bytes: int = 0
    compute_s: float = 0.0
    memory_s: float = 0.0
    overhead_s: float = 0.0
    time_s: float = 0.0
    bound: Literal["compute", "memory", "overhead", "unknown"] = "compute"
    share: float = 0.0


class Prediction(_Model):
    """Predicted figures for one model, batch size and machine."""

    spec: str
    batch_size: int
    hardware: str
    hardware_source: str = Field(description="'calibrated …' or 'spec sheet …'; spec-sheet predictions say so")
    method: str = Field("", description="how each op time was formed, in words")
    dtype: str = "float32"
    latency_s: float
    throughput_samples_per_s: float
    flops: float = 0.0
    bytes: int = 0
    ops: list[OpPrediction] = Field(default_factory=list)
    by_class: dict[str, float] = Field(default_factory=dict, description="op class → predicted seconds")
    roof_flops_per_s: dict[str, float] = Field(default_factory=dict, description="dtype → the machine's best GEMM rate (the roof)")
    roof_bytes_per_s: float | None = Field(None, description="the machine's DRAM bandwidth (the roofline's slope)")
    measured_latency_s: float | None = Field(None, description="p50 measured on this machine with --measure")
    measured_by_class: dict[str, float] = Field(default_factory=dict, description="op class → profiler seconds per iteration")
    notes: list[str] = Field(default_factory=list)

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured, when measured."""
        if self.measured_latency_s is None or self.measured_latency_s <= 0:
            return None
        return (self.latency_s - self.measured_latency_s) / self.measured_latency_s
