"""Predicted latency from counted work and a machine: a roofline per operator.

For each op (``OpCount``):

* matrix kernels (matmul, conv, attention, recurrent): the calibrated time of a
  product of that shape, ``flops / rate(shape)``, where the rate was measured
  by timing the framework's own call (so it already holds one dispatch);
  ``time = max(that, overhead + bytes / bandwidth)``;
* everything else: ``time = max(overhead, bytes / bandwidth(kind, working set))``,
  the bandwidth measured for that kind of op at that size (it too includes the
  dispatch, so the staircase starts at the overhead for tiny sizes);
* views (no bytes): one dispatch;
* recurrent ops with ``gemm.batch = T`` run T products one after another.

Ops are summed: eager frameworks run one op at a time on the host's queue.
Fusions: ONNX Runtime fuses bias adds and activations into the preceding
matrix kernel and decomposed normalisations into one kernel, so on that
backend elementwise ops pay their bandwidth time but not a dispatch each.
"""

from __future__ import annotations

from ..errors import UsageError
from .machine import Machine
from .schema import GemmShape, OpCount, OpPrediction, Prediction, WorkCount

__all__ = ["predict_work", "predict_op", "METHOD"]

METHOD = (
    "per op: matrix kernels take flops / rate(shape) from the calibrated GEMM/conv grid "
    "(log-space interpolation), other ops max(dispatch, bytes / bandwidth(kind, working set)); "
    "each op at least one dispatch plus its memory time; ops summed in order"
)

_MATRIX = {"matmul", "conv", "attention", "recurrent"}
_BW_KIND = {
    "elementwise": "elementwise",
    "normalization": "normalization",
    "reduction": "reduction",
    "data_movement": "copy",
    "depthwise_conv": "elementwise",
    "unknown": "copy",
}
_ORT_FUSED = {"elementwise"}
# ops whose arithmetic (transcendental math, windows), not their bytes, sets their pace:
# timed by the calibrated GELU and max-pooling staircases
_ACTIVATION = {"gelu", "tanh", "sigmoid", "silu", "erf", "exp", "log", "softplus", "mish", "elu", "hardswish",
               "Gelu", "FastGelu", "BiasGelu", "Tanh", "Sigmoid", "Erf", "Exp", "Softplus", "Mish", "Elu", "HardSwish"}
_POOLING = {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d",
            "MaxPool", "AveragePool"}


def _bw_kind(op: OpCount) -> str:
    from .opclass import torch_base_name

    base = torch_base_name(op.op)
    if base in _ACTIVATION or base.rstrip("_") in _ACTIVATION:
        return "activation"
    if base in _POOLING:
        return "pooling"
    return _BW_KIND.get(op.op_class, "copy")


def _memory_s(op: OpCount, machine: Machine, weight_ws: float, kind: str = "copy") -> float:
    """Seconds to move the op's bytes. Activations come from the level their own
    size fits in (the previous op just wrote them); weights from the level the
    whole model's weights fit in, since every other op's weights pass through
    the caches before this op's weights are read again."""
    act = op.read_bytes + op.write_bytes
    t = act / machine.bandwidth(kind, act, op.dtype) if act else 0.0
    if op.weight_bytes:
        t += op.weight_bytes / machine.bandwidth("copy", max(weight_ws, op.bytes))
    return t


def predict_op(
    op: OpCount, machine: Machine, *, backend: str = "torch", threads: int | None = None, weight_ws: float = 0.0,
    layer_shape: GemmShape | None = None,
) -> OpPrediction:
    """Time of one op on ``machine``, with the parts it is made of and its bound.
    ``weight_ws``: bytes of all the model's weights (the reuse distance of a weight);
    ``layer_shape``: for a recurrent op, its layer's recurrence shape (m=B, n=G·H, k=H, batch=T)."""
    overhead = machine.overhead(backend, threads)
    if backend == "onnxruntime" and op.op_class in _ORT_FUSED:
        overhead = 0.0
    nbytes = op.bytes
    if op.op_class == "recurrent" and layer_shape is not None and machine.has("recurrent", op.dtype) and op.flops > 0:
        # a whole recurrent layer was calibrated: its rate holds the fused kernel's pace
        rate, _ = machine.rate("recurrent", op.dtype, layer_shape)
        compute = op.flops / rate if rate > 0 else 0.0
        memory = _memory_s(op, machine, 0.0)
        disp = 0.0
        time = max(compute, memory)
        parts = {"compute": compute, "memory": memory}
    elif op.op_class in _MATRIX and op.gemm is not None and op.flops > 0:
        g = op.gemm
        kind = "conv" if op.op_class == "conv" else "attention" if op.op_class == "attention" else "gemm"
        steps = g.batch if op.op_class == "recurrent" else 1
        shape = g.model_copy(update={"batch": 1}) if op.op_class == "recurrent" else g
        rate, _ = machine.rate(kind, op.dtype, shape)
        kernel = op.flops / rate if rate > 0 else 0.0
        # the calibrated time of one product holds one dispatch: separate it for the breakdown
        per_step_dispatch = min(overhead, kernel / steps) if steps else 0.0
        compute = max(0.0, kernel - per_step_dispatch * steps)
        memory = _memory_s(op, machine, weight_ws if steps == 1 else 0.0)
        disp = per_step_dispatch * steps if steps > 1 else overhead
        # The kernel was calibrated with its operands resident where its own bytes fit;
        # in the model, weights come from where all the model's weights fit. The slower
        # fetch costs what it adds to the share of the kernel that memory bounds.
        hot = _memory_s(op, machine, 0.0)
        cold_extra = max(0.0, memory - hot) * min(1.0, hot / kernel) if kernel > 0 else 0.0
        compute += cold_extra
        time = max(compute + disp, disp + memory)
        parts = {"compute": compute, "memory": memory, "overhead": disp}
    elif nbytes == 0 or op.op_class == "data_movement" and op.note.startswith("view"):
        compute, memory, disp = 0.0, 0.0, overhead
        time = overhead
        parts = {"overhead": overhead}
    else:
        bw_kind = _bw_kind(op)
        t_bw = _memory_s(op, machine, weight_ws, bw_kind)
        # the measured staircase holds the dispatch; what is above it is memory time
        memory = max(0.0, t_bw - overhead) if backend != "onnxruntime" or op.op_class not in _ORT_FUSED else t_bw
        compute, disp = 0.0, overhead
        time = max(overhead, t_bw) if overhead else t_bw
        parts = {"memory": memory, "overhead": disp}
    bound = "unknown" if not op.known else max(parts, key=lambda k: parts[k])
    time *= machine.in_sequence(op.dtype, time)
    return OpPrediction(
        name=op.name,
        op=op.op,
        op_class=op.op_class,
        flops=op.flops,
        bytes=nbytes,
        compute_s=compute,
        memory_s=memory,
        overhead_s=disp,
        time_s=time,
        bound=bound,  # type: ignore[arg-type]
    )


def _recurrent_layers(ops: list[OpCount]) -> dict[int, GemmShape]:
    """Index of each recurrent op → its layer's recurrence shape. The counter emits a
    layer as its input projection (gemm.batch 1) then its recurrence (gemm.batch T)."""
    out: dict[int, GemmShape] = {}
    pending: list[int] = []
    for i, o in enumerate(ops):
        if o.op_class != "recurrent" or o.gemm is None:
            continue
        if o.gemm.batch > 1:
            for j in [*pending, i]:
                out[j] = o.gemm
            pending = []
        else:
            pending.append(i)
    return out


def predict_work(
    work: WorkCount,
    machine: Machine,
    *,
    backend: str | None = None,
    threads: int | None = None,
    dtype: str | None = None,
) -> Prediction:
    """Predict one model at one batch size on ``machine``."""
    if not work.ops:
        raise UsageError(f"nothing to predict: no ops were counted for '{work.spec}'")
    be = backend or ("onnxruntime" if work.backend == "onnx" else "torch")
    weight_ws = float(sum(o.weight_bytes for o in work.ops))
    layers = _recurrent_layers(work.ops)
    ops = [predict_op(o, machine, backend=be, threads=threads, weight_ws=weight_ws, layer_shape=layers.get(i))
           for i, o in enumerate(work.ops)]
    total = sum(o.time_s for o in ops)
    by_class: dict[str, float] = {}
    for o in ops:
        o.share = o.time_s / total if total > 0 else 0.0
        by_class[o.op_class] = by_class.get(o.op_class, 0.0) + o.time_s
    notes = list(machine.notes)
    if machine.sequence:
        notes.append("op times include the in-sequence factor calibrated on synthetic chains of ops "
                     "(measured / isolated, by op length): kernels run slower among others than repeated alone")
    if work.unknown_ops:
        notes.append(
            f"{len(work.unknown_ops)} op type(s) the counter does not know ({', '.join(sorted(set(work.unknown_ops))[:8])}): "
            "timed by their bytes only"
        )
    dtypes = sorted({o.dtype for o in work.ops if o.op_class in _MATRIX})
    for d in dtypes:
        if d not in machine.dtypes():
            notes.append(f"{machine.name} has no {d} calibration: {d} matrix ops use another dtype's rates")
    return Prediction(
        spec=work.spec,
        batch_size=work.batch_size,
        hardware=machine.name,
        hardware_source=machine.source,
        method=METHOD,
        dtype=dtype or (dtypes[0] if len(dtypes) == 1 else ",".join(dtypes) or "float32"),
        latency_s=total,
        throughput_samples_per_s=work.batch_size / total if total > 0 else 0.0,
        flops=work.flops,
        bytes=work.bytes,
        ops=ops,
        by_class=by_class,
        roof_flops_per_s=machine.best_rates,
        roof_bytes_per_s=machine.dram_bandwidth() if machine.stairs else None,
        notes=notes,
    )
