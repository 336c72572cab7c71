"""Per-node formulas of the ONNX counter (:mod:`.count_onnx`).

A formula takes a :class:`Node` (its inputs and outputs sized, constants marked)
and returns the :class:`OpCount` records it amounts to: one per node, two per
direction for LSTM/GRU/RNN (input projection and recurrence, both named after the
node). Conventions: :mod:`._count_common`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ._count_common import (
    BATCHNORM_EVAL_FLOPS, NORM_FLOPS, RMSNORM_FLOPS, SOFTMAX_FLOPS, attention_work, conv_gemm, elementwise_note,
    gemm_flops, matmul_gemm, numel, rnn_parts, shape_text,
)
from .opclass import classify_onnx
from .schema import GemmShape, OpClass, OpCount

__all__ = ["Tensor", "Node", "count"]

_VIEWS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}  # ORT aliases the input buffer


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: list[int] | None  # None: not sized
    nbytes: int
    const: bool  # initializer or constant: a weight


@dataclass
class Node:
    name: str
    op_type: str
    domain: str
    op: str
    ins: list[Tensor | None]
    outs: list[Tensor | None]
    attrs: dict[str, Any]
    folded: bool = False

    def inp(self, i: int) -> Tensor | None:
        return self.ins[i] if i < len(self.ins) else None

    def shape(self, i: int) -> list[int]:
        t = self.inp(i)
        if t is None or t.shape is None:
            raise ValueError(f"input {i} of {self.name} is not sized")
        return t.shape

    def out_shape(self, i: int = 0) -> list[int]:
        t = self.outs[i] if i < len(self.outs) else None
        if t is None or t.shape is None:
            raise ValueError(f"output {i} of {self.name} is not sized")
        return t.shape

    @property
    def dtype(self) -> str:
        for group in (self.outs, self.ins):
            for t in group:
                if t is not None and t.dtype.startswith(("float", "bfloat")):
                    return t.dtype
        first = next((t for t in self.outs if t is not None), None)
        return first.dtype if first is not None else "float32"

    def record(self, op_class: OpClass, flops: float = 0.0, **over: Any) -> OpCount:
        weight = sum(t.nbytes for t in self.ins if t is not None and t.const)
        read = sum(t.nbytes for t in self.ins if t is not None and not t.const)
        fields: dict[str, Any] = dict(
            name=self.name, op=self.op, op_class=op_class, dtype=self.dtype, flops=float(flops), weight_bytes=weight,
            read_bytes=read, write_bytes=sum(t.nbytes for t in self.outs if t is not None),
            shapes=shape_text([t.shape if t else None for t in self.ins if t][:4],
                              [t.shape if t else None for t in self.outs if t][:3]),
        )
        fields.update(over)
        return OpCount(**fields)


# ---------------------------------------------------------------------------- matmul, conv


_AB = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "FusedMatMul": (0, 1), "QLinearMatMul": (0, 3),
       "DynamicQuantizeMatMul": (0, 1), "MatMulIntegerToFloat": (0, 1), "Gemm": (0, 1), "FusedGemm": (0, 1),
       "QGemm": (0, 3)}


def _matmul(n: Node) -> list[OpCount]:
    if n.op_type == "MatMulNBits":
        a = n.shape(0)
        g = GemmShape(m=numel(a[:-1]), n=int(n.attrs["N"]), k=int(n.attrs["K"]))
        return [n.record("matmul", gemm_flops(g), gemm=g, note="weights packed to n bits")]
    ia, ib = _AB.get(n.op_type, (0, 1))
    a, b = list(n.shape(ia)), list(n.shape(ib))
    if n.attrs.get("transA"):
        a[-2], a[-1] = a[-1], a[-2]
    if n.attrs.get("transB"):
        b[-2], b[-1] = b[-1], b[-2]
    g = matmul_gemm(a, b)
    extra, note = 0, ""
    bias = {"Gemm": 2, "FusedGemm": 2, "QGemm": 6}.get(n.op_type)
    if bias is not None and n.inp(bias) is not None:
        extra, note = g.m * g.n, "bias add 1/output"
    return [n.record("matmul", gemm_flops(g) + extra, gemm=g, note=note)]


def _conv(n: Node) -> list[OpCount]:
    ix, iw, ib = {"QLinearConv": (0, 3, 8)}.get(n.op_type, (0, 1, 2))
    x, w, y = list(n.shape(ix)), n.shape(iw), list(n.out_shape())
    if n.op_type == "NhwcConv":  # channels last: move C next to N
        x, y = [x[0], x[-1], *x[1:-1]], [y[0], y[-1], *y[1:-1]]
    groups = int(n.attrs.get("group", 1))
    transposed = n.op_type == "ConvTranspose"
    g = conv_gemm(x, w, y, groups, transposed)
    bias = n.inp(ib) is not None
    depthwise = groups > 1 and groups == x[1]
    note = "depthwise: group == in_channels" if depthwise else (f"group={groups}" if groups > 1 else "")
    if transposed:
        note = ("transposed; " + note).strip("; ")
    if bias:
        note = (note + "; bias add 1/output").strip("; ")
    cls = classify_onnx(n.op_type, depthwise=depthwise)
    return [n.record(cls, gemm_flops(g) + (numel(y) if bias else 0), gemm=g, note=note)]


def _einsum(n: Node) -> list[OpCount]:
    eq = str(n.attrs.get("equation", "")).replace(" ", "")
    m = re.fullmatch(r"([a-zA-Z]*),([a-zA-Z]*)->([a-zA-Z]*)", eq)
    if not m or len(n.ins) != 2:
        return [n.record("matmul", known=False, note=f"einsum '{eq}': only two-operand explicit equations are counted")]
    la, lb, lo = m.groups()
    size = {c: d for c, d in zip(la, n.shape(0))} | {c: d for c, d in zip(lb, n.shape(1))}
    prod = (lambda cs: numel([size[c] for c in cs]))
    g = GemmShape(
        m=prod([c for c in set(la) if c in lo and c not in lb]), n=prod([c for c in set(lb) if c in lo and c not in la]),
        k=prod([c for c in set(la) & set(lb) if c not in lo]), batch=prod([c for c in set(la) & set(lb) if c in lo]),
    )
    return [n.record("matmul", gemm_flops(g), gemm=g, note=f"einsum {eq}")]


# ---------------------------------------------------------------------------- attention


def _attention(n: Node) -> list[OpCount]:
    """com.microsoft Attention / MultiHeadAttention / GroupQueryAttention and ONNX Attention (opset 23)."""
    t, a = n.op_type, n.attrs
    q = n.shape(0)
    present = n.outs[1].shape if len(n.outs) > 1 and n.outs[1] is not None else None
    extra, proj_note = 0.0, ""
    if t == "Attention" and n.domain == "com.microsoft":  # input [B,S,hidden] @ weights [hidden, q+k+v]
        heads = int(a["num_heads"])
        w = n.shape(1)
        sizes = list(a.get("qkv_hidden_sizes") or [w[1] // 3] * 3)
        b, s = q[0], q[1]
        extra = 2.0 * b * s * w[0] * w[1] + (b * s * w[1] if n.inp(2) is not None else 0)
        proj_note = f"; includes the QKV projection ({extra / 1e9:.3g} GFLOP)"
        lk = present[3] if present else s
        bh, lq, d, dv = b * heads, s, sizes[0] // heads, sizes[2] // heads
        masked = n.inp(3) is not None
    elif t == "Attention":  # ONNX opset 23: Q [B, qh, S, d] or [B, S, q_hidden]
        k, v = n.shape(1), n.shape(2)
        if len(q) == 4:
            bh, lq, d, lk, dv = q[0] * q[1], q[2], q[3], k[2], v[3]
        else:
            qh, kvh = int(a["q_num_heads"]), int(a["kv_num_heads"])
            bh, lq, d, lk, dv = q[0] * qh, q[1], q[2] // qh, k[1], v[2] // kvh
        lk = present[2] if present else lk + (n.shape(4)[2] if n.inp(4) is not None else 0)
        masked = n.inp(3) is not None or bool(a.get("is_causal"))
    else:  # MultiHeadAttention, GroupQueryAttention: query [B, S, D] (or packed)
        heads = int(a["num_heads"])
        kvh = int(a.get("kv_num_heads", heads))
        key = n.inp(1)
        if len(q) == 5:  # packed [B, S, N, 3, H]
            d = q[4]
        elif key is None:  # packed [B, S, (N + 2·kvN)·H]
            d = q[2] // (heads + 2 * kvh)
        else:
            d = q[2] // heads
        lk = q[1]
        if key is not None and key.shape is not None:
            lk = key.shape[2] if len(key.shape) == 4 else key.shape[1]
        if present:
            lk = present[2]
        bh, lq, dv = q[0] * heads, q[1], d
        masked = any(n.inp(i) is not None for i in (4, 5)) if t == "MultiHeadAttention" else True
    flops, g, note = attention_work(batch_heads=bh, lq=lq, lk=lk, d=d, dv=dv, masked=masked)
    return [n.record("attention", flops + extra, gemm=g, note=note + proj_note)]


# ---------------------------------------------------------------------------- recurrent


def _rnn(n: Node) -> list[OpCount]:
    kind = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn", "DynamicQuantizeLSTM": "lstm"}[n.op_type]
    x, w, r = n.shape(0), n.shape(1), n.shape(2)
    steps, batch = (x[1], x[0]) if n.attrs.get("layout", 0) else (x[0], x[1])
    hidden = int(n.attrs.get("hidden_size") or r[2])
    dirs = w[0]
    wt, rt, bt = n.inp(1), n.inp(2), n.inp(3)
    item = max(1, (wt.nbytes // max(1, numel(w))) if wt else 4)
    bias_bytes = (bt.nbytes // dirs // 2) if bt is not None else 0
    state = batch * hidden * item * (2 if kind == "lstm" else 1)
    out: list[OpCount] = []
    for d in range(dirs):
        if dirs == 2:
            direction = "reverse" if d else "forward"
        else:
            direction = "reverse" if n.attrs.get("direction") == "reverse" else ""
        for p in rnn_parts(kind, batch=batch, steps=steps, input_size=x[2], hidden=hidden, bias=bt is not None,
                           itemsize=item, ih_weight_bytes=(wt.nbytes // dirs if wt else 0) + bias_bytes,
                           hh_weight_bytes=(rt.nbytes // dirs if rt else 0) + bias_bytes, state_bytes=state,
                           direction=direction):
            out.append(n.record("recurrent", p.flops, gemm=p.gemm, weight_bytes=p.weight_bytes,
                                read_bytes=p.read_bytes, write_bytes=p.write_bytes, note=p.note))
    return out


# ---------------------------------------------------------------------------- by class


_VARIADIC = {"Sum", "Max", "Min", "Mean"}
_GATHER = {"Gather", "GatherElements", "GatherND", "GatherBlockQuantized"}


def _generic(n: Node, cls: OpClass) -> OpCount:
    t = n.op_type
    x = n.inp(0)
    in_n = numel(x.shape) if x is not None and x.shape is not None else 0
    y = n.outs[0] if n.outs else None
    out_n = numel(y.shape) if y is not None and y.shape is not None else 0
    if cls == "elementwise":
        per = max(1, len([i for i in n.ins if i is not None]) - 1) if t in _VARIADIC else 1
        per += 1 if t in ("BiasGelu", "FastGelu") and n.inp(1) is not None else 0
        return n.record(cls, out_n * per, note=elementwise_note(t))
    if cls in ("normalization", "reduction"):
        flops, note = _norm(n, in_n) if cls == "normalization" else _reduce(n, in_n, out_n)
        return n.record(cls, flops, note=note)
    if t in _VIEWS:
        return n.record(cls, weight_bytes=0, read_bytes=0, write_bytes=0, note="view (ORT aliases the input)")
    if t in ("Shape", "Size"):
        return n.record(cls, weight_bytes=0, read_bytes=0, note="shape metadata only")
    if t == "Constant":
        return n.record(cls, write_bytes=0, note="folded: a constant (an initializer once loaded); no run-time work")
    if t in _GATHER and x is not None and x.const:
        rows = y.nbytes if y is not None else 0
        return n.record(cls, weight_bytes=min(x.nbytes, rows) + sum(i.nbytes for i in n.ins[1:] if i and i.const),
                        note="gather from weights: weight bytes are the rows read")
    if t in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
        return n.record(cls, 2 * out_n, note="2/element (scale, zero point)")
    return n.record(cls)


def _norm(n: Node, elems: int) -> tuple[float, str]:
    t = n.op_type
    present = (lambda *idx: sum(n.inp(i) is not None for i in idx))
    if t == "BatchNormalization":
        return float(elems * BATCHNORM_EVAL_FLOPS), f"{BATCHNORM_EVAL_FLOPS}/element (running stats folded)"
    if t in ("SimplifiedLayerNormalization", "RMSNormalization", "SkipSimplifiedLayerNormalization"):
        skip = present(1, 3) if t.startswith("Skip") else 0
        per = RMSNORM_FLOPS + 1 + skip
        return float(elems * per), f"{per}/element (square, sum, scale, weight{', skip add' if skip else ''})"
    if t == "LpNormalization":
        return float(elems * 3), "3/element (square or abs, sum, scale)"
    if t == "SkipLayerNormalization":  # input, skip, gamma, beta?, bias?
        per = NORM_FLOPS + 1 + present(3) + 1 + present(4)
        return float(elems * per), f"{per}/element (skip add, bias, mean, center, square, sum, scale, affine)"
    if t == "EmbedLayerNormalization":  # three gathers summed, then layer norm
        per = 2 + NORM_FLOPS + 2
        return float(numel(n.out_shape()) * per), f"{per}/element (embedding sum 2, layer norm {NORM_FLOPS + 2})"
    affine = present(1, 2) if t in ("LayerNormalization", "InstanceNormalization", "GroupNormalization") else 2
    per = NORM_FLOPS + affine
    return float(elems * per), f"{per}/element (mean, center, square, sum, scale, affine)"


def _reduce(n: Node, in_n: int, out_n: int) -> tuple[float, str]:
    t = n.op_type
    if t in ("Softmax", "LogSoftmax", "BiasSoftmax"):
        per = SOFTMAX_FLOPS + (1 if t == "BiasSoftmax" else 0)
        return float(in_n * per), f"{per}/element (max, subtract, exp, sum, divide)"
    if t in ("MaxPool", "AveragePool", "LpPool"):
        window = numel(list(n.attrs.get("kernel_shape") or [1]))
        avg = t == "AveragePool"
        return float(out_n * (window + avg)), f"{window} per output (window{' + divide' if avg else ''})"
    if t == "GlobalAveragePool":
        return float(in_n + out_n), "1/input element + 1/output (mean)"
    if t in ("ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "GlobalLpPool"):
        return float(2 * in_n), "2/input element"
    return float(in_n), "1/input element"


# ---------------------------------------------------------------------------- table


_SPECIAL: dict[str, Callable[[Node], list[OpCount]]] = {}
for _n in _AB:
    _SPECIAL[_n] = _matmul
_SPECIAL["MatMulNBits"] = _matmul
for _n in ("Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "FusedConv", "NhwcConv"):
    _SPECIAL[_n] = _conv
for _n in ("Attention", "MultiHeadAttention", "GroupQueryAttention"):
    _SPECIAL[_n] = _attention
for _n in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
    _SPECIAL[_n] = _rnn
_SPECIAL["Einsum"] = _einsum


def count(n: Node) -> list[OpCount]:
    """The records of one node (never a silent zero: unknown ops are marked and listed)."""
    cls = classify_onnx(n.op_type)
    if n.folded:
        return [n.record(cls if cls != "unknown" else "data_movement", weight_bytes=0, read_bytes=0, write_bytes=0,
                         note="folded: all inputs constant, ONNX Runtime computes it at load; no run-time work")]
    unsized = [t.name for t in (*n.ins, *n.outs) if t is not None and t.shape is None]
    fn = _SPECIAL.get(n.op_type)
    if fn is not None and n.op_type == "Attention" and n.domain not in ("", "ai.onnx", "com.microsoft"):
        fn = None
    if cls == "unknown" or (fn is None and cls in ("matmul", "conv", "attention", "recurrent")):
        what = "unknown op" if cls == "unknown" else f"{cls} op without a formula"
        return [n.record(cls, known=False, note=f"{what}: FLOPs not counted; bytes from tensor sizes"
                         + (f"; shapes not inferred for {', '.join(unsized[:3])}" if unsized else ""))]
    try:
        made = fn(n) if fn is not None else [_generic(n, cls)]
    except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as exc:
        why = f"shapes not inferred for {', '.join(unsized[:3])}" if unsized else f"formula failed: {exc}"
        return [n.record(cls, known=False, note=f"{why}; FLOPs not counted")]
    if unsized:
        for op in made:
            op.note = (op.note + "; " if op.note else "") + f"shapes not inferred for {', '.join(unsized[:3])}"
    return made
