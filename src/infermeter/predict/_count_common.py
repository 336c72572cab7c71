"""Formulas both counters share (ONNX graphs and torch dispatch), so that the two
agree on a GEMM, a convolution, an attention or a recurrent layer by construction.

Conventions, stated once (the numbers land in ``OpCount.note`` where they apply):
  * a matrix product (m×k)·(k×n) is 2·m·n·k FLOPs; a bias add is 1 per output element;
  * an elementwise op is 1 FLOP per output element, transcendental ones (exp, tanh,
    erf, gelu, sigmoid …) included: the real instruction count varies by library,
    and for the roofline these ops are memory-bound anyway;
  * softmax is :data:`SOFTMAX_FLOPS` per element, normalisations per the constants below;
  * attention is QKᵀ plus PV plus softmax, scale and mask per score; a causal mask is
    counted as the full Lq×Lk square (kernels that skip masked blocks do about half);
  * recurrent layers are an input-projection GEMM over all steps plus T *sequential*
    hidden-state GEMMs and the cell's pointwise work.
Nothing here imports torch or onnx.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .schema import GemmShape

__all__ = [
    "SOFTMAX_FLOPS", "NORM_FLOPS", "BATCHNORM_EVAL_FLOPS", "RMSNORM_FLOPS", "CELL_FLOPS", "GATES",
    "TRANSCENDENTAL", "numel", "gemm_flops", "matmul_gemm", "conv_gemm", "attention_work", "RnnPart",
    "rnn_parts", "shape_text", "elementwise_note",
]

#: softmax per element: max, subtract, exp, sum, divide.
SOFTMAX_FLOPS = 5
#: layer/group/instance norm per element without affine: mean (1), subtract (1), square (1),
#: sum for the variance (1), scale by 1/std (1); plus 1 per affine term (weight, bias).
NORM_FLOPS = 5
#: batch norm in inference: running statistics folded to x·scale + shift.
BATCHNORM_EVAL_FLOPS = 2
#: RMS norm per element without weight: square, sum, scale; plus 1 for the weight.
RMSNORM_FLOPS = 3
#: gates per recurrent cell kind (rows of W_ih are GATES·hidden).
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
#: pointwise FLOPs per hidden unit per step, transcendental ops at 1 each.
#: LSTM: gate sums ih+hh (4), 3 sigmoid + 2 tanh (5), c = f·c + i·g (3), h = o·tanh(c) (1) = 13.
#: GRU: gate sums r, z (2), 2 sigmoid (2), n = tanh(ih_n + r·hh_n) (3), h = (1-z)·n + z·h (4) = 11.
#: RNN: sum (1) and tanh/relu (1) = 2.
CELL_FLOPS = {"lstm": 13, "gru": 11, "rnn": 2}
#: ops whose 1 FLOP per element stands for a transcendental function (stated in the note).
TRANSCENDENTAL = frozenset(
    "exp log sqrt rsqrt tanh sigmoid gelu silu erf sin cos pow softplus mish elu celu selu hardswish "
    "fastgelu biasgelu quickgelu reciprocal log_sigmoid".split()
)


def numel(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape)) if len(shape) else 1


def gemm_flops(g: GemmShape) -> float:
    """2·m·n·k per product, ``batch`` products."""
    return 2.0 * g.m * g.n * g.k * g.batch


def matmul_gemm(a: Sequence[int], b: Sequence[int]) -> GemmShape:
    """The GEMM of ``a @ b`` with numpy/torch broadcasting (1-D operands included)."""
    a, b = list(a), list(b)
    if len(a) == 1:
        a = [1, a[0]]
    if len(b) == 1:
        b = [b[0], 1]
    m, k, n = a[-2], a[-1], b[-1]
    batch_a, batch_b = a[:-2], b[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = [1] * (width - len(batch_a)) + batch_a
    batch_b = [1] * (width - len(batch_b)) + batch_b
    batch = numel([max(x, y) for x, y in zip(batch_a, batch_b)])
    if numel(batch_b) == 1 and batch > 1:
        # a stack of rows times one matrix is one tall GEMM: (batch·m × k)·(k × n)
        m, batch = m * batch, 1
    return GemmShape(m=int(m), n=int(n), k=int(k), batch=int(batch))


def conv_gemm(
    x: Sequence[int], w: Sequence[int], y: Sequence[int], groups: int, transposed: bool = False
) -> GemmShape:
    """Implicit GEMM of a convolution from input, weight and output shapes (NC… layout).

    Direct: weight [Cout, Cin/g, *k]: m = N·prod(out), n = Cout/g, k = Cin/g·prod(k), batch = g.
    Transposed: weight [Cin, Cout/g, *k]: m = N·prod(in), n = Cout/g·prod(k), k = Cin/g, batch = g.
    Using the output shape means padding, stride and dilation need no separate handling.
    """
    g = max(1, int(groups))
    kernel = numel(w[2:])
    if transposed:
        cin, cout_g = int(w[0]), int(w[1])
        return GemmShape(m=int(x[0]) * numel(x[2:]), n=cout_g * kernel, k=cin // g, batch=g)
    cout, cin_g = int(w[0]), int(w[1])
    return GemmShape(m=int(y[0]) * numel(y[2:]), n=cout // g, k=cin_g * kernel, batch=g)


def attention_work(
    *, batch_heads: int, lq: int, lk: int, d: int, dv: int, masked: bool, causal: bool = False
) -> tuple[float, GemmShape, str]:
    """FLOPs, GEMM shape (the QKᵀ product) and note of one scaled-dot-product attention."""
    scores = batch_heads * lq * lk
    per_score = SOFTMAX_FLOPS + 1 + (1 if masked or causal else 0)
    flops = 2.0 * scores * d + 2.0 * scores * dv + float(scores * per_score)
    note = (
        f"QK^T 2*BH*Lq*Lk*D + PV 2*BH*Lq*Lk*Dv + {per_score}/score (softmax {SOFTMAX_FLOPS}, scale 1"
        f"{', mask 1' if masked or causal else ''}); BH={batch_heads} Lq={lq} Lk={lk} D={d} Dv={dv}"
        f"{'; causal counted as full square' if causal else ''}; gemm is QK^T (PV has n=Dv, k=Lk)"
    )
    return flops, GemmShape(m=lq, n=lk, k=d, batch=batch_heads), note


@dataclass
class RnnPart:
    """One of the two records a recurrent layer becomes (input projection, recurrence)."""

    suffix: str
    flops: float
    gemm: GemmShape
    weight_bytes: int
    read_bytes: int
    write_bytes: int
    note: str


def rnn_parts(
    kind: str, *, batch: int, steps: int, input_size: int, hidden: int, proj: int = 0, bias: bool = True,
    itemsize: int = 4, ih_weight_bytes: int = 0, hh_weight_bytes: int = 0, state_bytes: int = 0,
    direction: str = "",
) -> list[RnnPart]:
    """Input projection (one GEMM over all T steps: m=B·T, n=G·H, k=I) and recurrence
    (GemmShape m=B, n=G·H, k=H, batch=T: T products that run one after another, with
    the cell's pointwise work). ``hh_weight_bytes`` includes the projection weight."""
    gates = GATES[kind]
    gh = gates * hidden
    hin = proj or hidden
    out = proj or hidden
    bt = batch * steps
    ih_flops = 2.0 * bt * gh * input_size + (bt * gh if bias else 0)
    hh_flops = 2.0 * bt * gh * hin + (bt * gh if bias else 0) + bt * hidden * CELL_FLOPS[kind]
    if proj:
        hh_flops += 2.0 * bt * hidden * proj
    where = f"{kind.upper()}{' ' + direction if direction else ''}"
    return [
        RnnPart(
            "ih", ih_flops, GemmShape(m=bt, n=gh, k=input_size, batch=1), ih_weight_bytes,
            bt * input_size * itemsize, bt * gh * itemsize,
            f"{where} input projection: one GEMM over all {steps} steps (m=B*T, n={gates}H, k=I)",
        ),
        RnnPart(
            "hh", hh_flops, GemmShape(m=batch, n=gh, k=hin, batch=steps), hh_weight_bytes,
            bt * gh * itemsize + state_bytes, bt * out * itemsize + state_bytes,
            f"{where} recurrence: gemm.batch={steps} SEQUENTIAL products (m=B, n={gates}H, k=H) + "
            f"{CELL_FLOPS[kind]} pointwise FLOPs per hidden unit per step; weights counted once",
        ),
    ]


def shape_text(inputs: Sequence[Sequence[int] | None], outputs: Sequence[Sequence[int] | None], limit: int = 90) -> str:
    """``[8,128,256] [768,256] -> [8,128,768]``, cut to ``limit`` characters."""

    def one(s: Sequence[int] | None) -> str:
        return "?" if s is None else "[" + ",".join(str(int(d)) for d in s) + "]"

    text = " ".join(one(s) for s in inputs) + " -> " + " ".join(one(s) for s in outputs)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def elementwise_note(base: str) -> str:
    return "transcendental: 1 FLOP per element by convention" if base.lower() in TRANSCENDENTAL else ""
