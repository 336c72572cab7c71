"""Per-op formulas of the torch dispatch counter (:mod:`.count_torch`).

Each formula takes a :class:`Call` (one dispatched op with its arguments bound by
schema name, its tensors and their bytes) and returns the :class:`OpCount` records
it amounts to: one for most ops, several for fused layers (an LSTM is an input
projection and a recurrence per layer and direction; the fast path of
``nn.TransformerEncoderLayer`` is its ten parts). Conventions: :mod:`._count_common`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ._count_common import (
    BATCHNORM_EVAL_FLOPS, NORM_FLOPS, RMSNORM_FLOPS, SOFTMAX_FLOPS, attention_work, conv_gemm, elementwise_note,
    gemm_flops, matmul_gemm, numel, rnn_parts,
)
from .opclass import classify_torch
from .schema import GemmShape, OpClass, OpCount

__all__ = ["Call", "count", "has_formula"]

ROOT = "(root)"


@dataclass
class Call:
    """One dispatched op, ready for a formula."""

    op: str
    base: str
    name: str
    bound: dict[str, Any]
    ins: list[Any]
    outs: list[Any]
    out: Any
    inplace: bool
    view: bool
    weight_bytes: int
    read_bytes: int
    write_bytes: int
    dtype: str
    shapes: str
    is_weight: Callable[[Any], bool]
    counter: dict[tuple[str, str], int] = field(default_factory=dict)

    def arg(self, *names: str) -> Any:
        for n in names:
            if self.bound.get(n) is not None:
                return self.bound[n]
        raise KeyError(f"{self.op} has none of the arguments {', '.join(names)}")

    def record(self, **over: Any) -> OpCount:
        fields: dict[str, Any] = dict(
            name=self.name or ROOT, op=self.op, op_class="unknown", dtype=self.dtype, weight_bytes=self.weight_bytes,
            read_bytes=self.read_bytes, write_bytes=self.write_bytes, shapes=self.shapes,
        )
        fields.update(over)
        return OpCount(**fields)

    def part(self, suffix: str, op_class: OpClass, flops: float, *, gemm: GemmShape | None = None, w: int = 0,
             r: int = 0, wr: int = 0, note: str = "") -> OpCount:
        """A record for one part of a fused op, named ``path.suffix``."""
        name = ".".join(p for p in (self.name, suffix) if p) or ROOT
        return OpCount(name=name, op=self.op, op_class=op_class, dtype=self.dtype, flops=flops, weight_bytes=w,
                       read_bytes=r, write_bytes=wr, gemm=gemm, shapes=self.shapes, note=note)


def _nbytes(t: Any) -> int:
    return int(t.numel()) * t.element_size() if t is not None else 0


# ---------------------------------------------------------------------------- matmul, conv


_LINEAR = {"linear", "mkldnn_linear", "_mkl_linear", "_linear_pointwise", "mkldnn_linear_pointwise"}


def _matmul(c: Call) -> list[OpCount]:
    b, extra, note = c.base, 0.0, ""
    if b in _LINEAR:
        x, w = c.arg("input", "self"), c.arg("weight")
        g = GemmShape(m=numel(x.shape[:-1]), n=int(w.shape[0]), k=int(x.shape[-1]))
        if c.bound.get("bias") is not None:
            extra, note = g.m * g.n, "bias add 1/output"
    elif b in ("addmm", "_addmm_activation"):
        g = matmul_gemm(c.arg("mat1").shape, c.arg("mat2").shape)
        extra, note = g.m * g.n * (2 if b == "_addmm_activation" else 1), "bias add 1/output"
    elif b in ("baddbmm", "addbmm"):
        g = matmul_gemm(c.arg("batch1").shape, c.arg("batch2").shape)
        extra = g.batch * g.m * g.n if b == "baddbmm" else (g.batch + 1) * g.m * g.n
        note = "accumulate into self 1/output"
    elif b in ("mv", "addmv"):
        mat = c.arg("mat", "self") if b == "addmv" else c.arg("self")
        g = GemmShape(m=int(mat.shape[0]), n=1, k=int(mat.shape[1]))
        extra = g.m if b == "addmv" else 0
    elif b in ("dot", "vdot"):
        g = GemmShape(m=1, n=1, k=int(c.arg("self").shape[0]))
    elif b == "_weight_int8pack_mm":
        x, w = c.arg("self"), c.arg("mat2")
        g = GemmShape(m=numel(x.shape[:-1]), n=int(w.shape[0]), k=int(x.shape[-1]))
    else:  # mm, bmm, matmul, _int_mm
        g = matmul_gemm(c.arg("self").shape, c.arg("mat2", "other").shape)
    return [c.record(op_class="matmul", flops=gemm_flops(g) + extra, gemm=g, note=note)]


def _conv(c: Call) -> list[OpCount]:
    x, w = c.arg("input", "self"), c.arg("weight")
    y = c.outs[0]
    transposed = bool(c.bound.get("transposed", c.base.startswith("conv_transpose")))
    groups = int(c.bound.get("groups", 1) or 1)
    xs, ys = list(x.shape), list(y.shape)
    if len(xs) == w.dim() - 1:  # unbatched input (C, H, W)
        xs, ys = [1, *xs], [1, *ys]
    g = conv_gemm(xs, list(w.shape), ys, groups, transposed)
    bias = c.bound.get("bias") is not None
    flops = gemm_flops(g) + (numel(ys) if bias else 0)
    depthwise = groups > 1 and groups == xs[1]
    note = "depthwise: groups == in_channels" if depthwise else (f"groups={groups}" if groups > 1 else "")
    if transposed:
        note = ("transposed; " + note).strip("; ")
    if bias:
        note = (note + "; bias add 1/output").strip("; ")
    return [c.record(op_class="depthwise_conv" if depthwise else "conv", flops=flops, gemm=g, note=note)]


# ---------------------------------------------------------------------------- attention


def _sdpa(c: Call) -> list[OpCount]:
    q, k, v = c.arg("query"), c.arg("key"), c.arg("value")
    if c.base in ("_flash_attention_forward", "_efficient_attention_forward"):  # [B, L, H, D]
        bh, lq, lk = int(q.shape[0]) * int(q.shape[2]), int(q.shape[1]), int(k.shape[1])
    else:  # [..., L, D]
        bh, lq, lk = numel(q.shape[:-2]), int(q.shape[-2]), int(k.shape[-2])
    masked = any(c.bound.get(n) is not None for n in ("attn_mask", "attn_bias", "bias"))
    causal = bool(c.bound.get("is_causal", False)) or int(c.bound.get("custom_mask_type", 0) or 0) > 0
    flops, g, note = attention_work(batch_heads=bh, lq=lq, lk=lk, d=int(q.shape[-1]), dv=int(v.shape[-1]),
                                    masked=masked, causal=causal)
    return [c.record(op_class="attention", flops=flops, gemm=g, note=note + "; scores stay in the kernel")]


def _mha_parts(c: Call, prefix: str, q: Any, kv_same: bool, lk: int, heads: int, qkv_w: Any, qkv_b: Any,
               proj_w: Any, proj_b: Any, masked: bool, weights_out: int = 0) -> list[OpCount]:
    """in_proj, attention and out_proj of a fused multi-head attention ([B, L, E] inputs)."""
    batch, lq, e = (1, *q.shape) if q.dim() == 2 else tuple(int(d) for d in q.shape)
    item = q.element_size()
    rows_q, rows_k = batch * lq, batch * lk
    proj_flops = 2.0 * rows_q * e * e + 2.0 * 2 * rows_k * e * e + rows_q * e + 2 * rows_k * e
    in_gemm = GemmShape(m=rows_q, n=3 * e, k=e) if kv_same else GemmShape(m=rows_q, n=e, k=e)
    read_in = (rows_q if kv_same else rows_q + 2 * rows_k) * e * item
    att_flops, att_gemm, att_note = attention_work(batch_heads=batch * heads, lq=lq, lk=lk, d=e // heads,
                                                   dv=e // heads, masked=masked)
    join = (lambda s: f"{prefix}.{s}" if prefix else s)
    return [
        c.part(join("in_proj"), "matmul", proj_flops, gemm=in_gemm, w=_nbytes(qkv_w) + _nbytes(qkv_b), r=read_in,
               wr=(rows_q + 2 * rows_k) * e * item,
               note="fused QKV projection + bias" + ("" if kv_same else "; gemm is the Q part, K and V have m=B*Lk")),
        c.part(prefix, "attention", att_flops, gemm=att_gemm, r=(rows_q + 2 * rows_k) * e * item,
               wr=rows_q * e * item + weights_out, note=att_note),
        c.part(join("out_proj"), "matmul", 2.0 * rows_q * e * e + rows_q * e, gemm=GemmShape(m=rows_q, n=e, k=e),
               w=_nbytes(proj_w) + _nbytes(proj_b), r=rows_q * e * item, wr=rows_q * e * item, note="bias add 1/output"),
    ]


def _native_mha(c: Call) -> list[OpCount]:
    q, k = c.arg("query"), c.arg("key")
    weights_out = _nbytes(c.outs[1]) if len(c.outs) > 1 else 0
    return _mha_parts(c, "", q, q is k and k is c.bound.get("value"), int(k.shape[-2]), int(c.arg("num_head")),
                      c.bound["qkv_weight"], c.bound["qkv_bias"], c.bound["proj_weight"], c.bound["proj_bias"],
                      c.bound.get("mask") is not None, weights_out)


def _encoder_layer(c: Call) -> list[OpCount]:
    """``nn.TransformerEncoderLayer``'s inference fast path, one op for the whole layer."""
    src = c.arg("src")
    if getattr(src, "is_nested", False):
        return [c.record(known=False, note="nested-tensor input: FLOPs not counted")]
    b = c.bound
    rows, e = numel(src.shape[:-1]), int(src.shape[-1])
    ffn = int(b["ffn_weight_1"].shape[0])
    item, act = src.element_size(), numel(src.shape) * src.element_size()
    parts = _mha_parts(c, "self_attn", src, True, int(src.shape[-2]), int(b["num_heads"]), b["qkv_weight"],
                       b["qkv_bias"], b["proj_weight"], b["proj_bias"], b.get("mask") is not None)
    norm = NORM_FLOPS + 2
    a = "gelu" if b.get("use_gelu") else "relu"
    parts += [
        c.part("add1", "elementwise", rows * e, r=2 * act, wr=act, note="residual add"),
        c.part("norm1", "normalization", rows * e * norm, w=_nbytes(b["norm_weight_1"]) + _nbytes(b["norm_bias_1"]),
               r=act, wr=act, note=f"{norm}/element"),
        c.part("linear1", "matmul", 2.0 * rows * e * ffn + rows * ffn, gemm=GemmShape(m=rows, n=ffn, k=e),
               w=_nbytes(b["ffn_weight_1"]) + _nbytes(b["ffn_bias_1"]), r=act, wr=rows * ffn * item),
        c.part("activation", "elementwise", rows * ffn, r=rows * ffn * item, wr=rows * ffn * item,
               note=a + (": " + elementwise_note(a) if elementwise_note(a) else "")),
        c.part("linear2", "matmul", 2.0 * rows * ffn * e + rows * e, gemm=GemmShape(m=rows, n=e, k=ffn),
               w=_nbytes(b["ffn_weight_2"]) + _nbytes(b["ffn_bias_2"]), r=rows * ffn * item, wr=act),
        c.part("add2", "elementwise", rows * e, r=2 * act, wr=act, note="residual add"),
        c.part("norm2", "normalization", rows * e * norm, w=_nbytes(b["norm_weight_2"]) + _nbytes(b["norm_bias_2"]),
               r=act, wr=act, note=f"{norm}/element"),
    ]
    return parts


# ---------------------------------------------------------------------------- recurrent


def _rnn(c: Call) -> list[OpCount]:
    """``aten.lstm/gru/rnn_*.input``: the whole stack; per layer and direction two records."""
    if "input" not in c.bound:
        return [c.record(op_class="recurrent", known=False, note="packed sequence: FLOPs not counted")]
    kind = c.base if c.base in ("lstm", "gru") else "rnn"
    x, params = c.bound["input"], list(c.bound["params"])
    hx = c.bound["hx"]
    hx = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    layers, dirs = int(c.bound["num_layers"]), 2 if c.bound["bidirectional"] else 1
    bias = bool(c.bound["has_biases"])
    if x.dim() == 2:
        steps, batch = int(x.shape[0]), 1
    else:
        batch, steps = (int(x.shape[0]), int(x.shape[1])) if c.bound["batch_first"] else (int(x.shape[1]), int(x.shape[0]))
    stride = len(params) // (layers * dirs)
    item = x.element_size()
    gates = {"lstm": 4, "gru": 3}.get(kind, 1)
    out: list[OpCount] = []
    in_size = int(x.shape[-1])
    for layer in range(layers):
        for d in range(dirs):
            p = params[(layer * dirs + d) * stride:(layer * dirs + d + 1) * stride]
            w_ih, w_hh = p[0], p[1]
            b_ih, b_hh = (p[2], p[3]) if bias else (None, None)
            w_hr = p[-1] if stride in (3, 5) else None
            hidden = int(w_ih.shape[0]) // gates
            proj = int(w_hr.shape[0]) if w_hr is not None else 0
            state = batch * ((proj or hidden) + (hidden if kind == "lstm" else 0)) * item
            suffix = f"l{layer}{'_reverse' if d else ''}"
            for part in rnn_parts(
                kind, batch=batch, steps=steps, input_size=in_size, hidden=hidden, proj=proj, bias=bias,
                itemsize=item, ih_weight_bytes=_nbytes(w_ih) + _nbytes(b_ih),
                hh_weight_bytes=_nbytes(w_hh) + _nbytes(b_hh) + _nbytes(w_hr), state_bytes=state,
                direction="reverse" if d else "",
            ):
                out.append(c.part(f"{suffix}.{part.suffix}", "recurrent", part.flops, gemm=part.gemm,
                                  w=part.weight_bytes, r=part.read_bytes, wr=part.write_bytes, note=part.note))
        in_size = (proj or hidden) * dirs
    return out


def _mkldnn_rnn_layer(c: Call) -> list[OpCount]:
    """One layer and direction, as ``aten.lstm`` decomposes outside inference mode on CPU."""
    b = c.bound
    kind = {0: "rnn", 1: "rnn", 2: "lstm", 3: "gru"}.get(int(b["mode"]), "lstm")
    x = b["input"]
    batch, steps = (int(x.shape[0]), int(x.shape[1])) if b["batch_first"] else (int(x.shape[1]), int(x.shape[0]))
    reverse = bool(b["reverse"])
    key = (c.name, "reverse" if reverse else "")
    index = c.counter.get(key, 0)
    c.counter[key] = index + 1
    bias = bool(b["has_biases"])
    hidden, item = int(b["hidden_size"]), x.element_size()
    state = batch * hidden * item * (2 if kind == "lstm" else 1)
    suffix = f"l{index}{'_reverse' if reverse else ''}"
    return [
        c.part(f"{suffix}.{p.suffix}", "recurrent", p.flops, gemm=p.gemm, w=p.weight_bytes, r=p.read_bytes,
               wr=p.write_bytes, note=p.note)
        for p in rnn_parts(
            kind, batch=batch, steps=steps, input_size=int(x.shape[-1]), hidden=hidden, bias=bias, itemsize=item,
            ih_weight_bytes=_nbytes(b["weight0"]) + (_nbytes(b["weight2"]) if bias else 0),
            hh_weight_bytes=_nbytes(b["weight1"]) + (_nbytes(b["weight3"]) if bias else 0), state_bytes=state,
            direction="reverse" if reverse else "",
        )
    ]


def _rnn_cell(c: Call) -> list[OpCount]:
    kind = "lstm" if c.base == "lstm_cell" else "gru" if c.base == "gru_cell" else "rnn"
    x, w_ih, w_hh = c.arg("input"), c.arg("w_ih"), c.arg("w_hh")
    batch = int(x.shape[0]) if x.dim() == 2 else 1
    hidden = int(w_hh.shape[1])
    parts = rnn_parts(kind, batch=batch, steps=1, input_size=int(x.shape[-1]), hidden=hidden,
                      bias=c.bound.get("b_ih") is not None, itemsize=x.element_size())
    g = GemmShape(m=batch, n=int(w_ih.shape[0]), k=int(x.shape[-1]) + hidden)
    return [c.record(op_class="recurrent", flops=sum(p.flops for p in parts), gemm=g,
                     note=f"one {kind.upper()} step: input and hidden GEMMs + cell pointwise")]


# ---------------------------------------------------------------------------- by class


_TWO_FLOPS = {"addcmul", "addcdiv", "lerp"}
_GATHER = {"embedding", "embedding_bag", "index_select", "gather", "index", "take"}


def _generic(c: Call, cls: OpClass) -> OpCount:
    b = c.base.rstrip("_")  # in-place variants count as their functional op
    if c.view:
        return c.record(op_class=cls, note="view")
    out_n = max((int(t.numel()) for t in c.outs), default=0)
    in_n = int(c.ins[0].numel()) if c.ins else 0
    flops, note, over = 0.0, "", {}
    if cls == "elementwise":
        flops = out_n * (2 if b in _TWO_FLOPS else 1)
        note = elementwise_note(b)
    elif cls == "normalization":
        flops, note = _norm_flops(c, b, in_n)
    elif cls == "reduction":
        flops, note = _reduce_flops(c, b, in_n, out_n)
    elif cls == "data_movement" and b in _GATHER and c.weight_bytes:
        # an embedding lookup reads the rows it gathers, not the whole table
        over["weight_bytes"] = min(c.weight_bytes, sum(int(t.numel()) * t.element_size() for t in c.outs))
        note = "gather from weights: weight bytes are the rows read"
    return c.record(op_class=cls, flops=float(flops), note=note, **over)


def _norm_flops(c: Call, b: str, n: int) -> tuple[float, str]:
    affine = sum(c.bound.get(k) is not None for k in ("weight", "bias"))
    if b in ("rms_norm", "_fused_rms_norm"):
        per = RMSNORM_FLOPS + (c.bound.get("weight") is not None)
        return float(n * per), f"{per}/element (square, sum, scale, weight)"
    eval_bn = (b == "_native_batch_norm_legit_no_training") or (
        "batch_norm" in b and not c.bound.get("training", False) and c.bound.get("running_mean") is not None
    )
    if eval_bn:
        return float(n * BATCHNORM_EVAL_FLOPS), f"{BATCHNORM_EVAL_FLOPS}/element (running stats folded to scale, shift)"
    per = NORM_FLOPS + affine
    return float(n * per), f"{per}/element (mean, center, square, sum, scale{', affine' if affine else ''})"


def _reduce_flops(c: Call, b: str, in_n: int, out_n: int) -> tuple[float, str]:
    if b in ("softmax", "_softmax", "log_softmax", "_log_softmax"):
        return float(in_n * SOFTMAX_FLOPS), f"{SOFTMAX_FLOPS}/element (max, subtract, exp, sum, divide)"
    if "pool" in b and "adaptive" not in b:
        kernel = c.bound.get("kernel_size", [1])
        kernel = list(kernel) if isinstance(kernel, (list, tuple)) else [int(kernel)]
        spatial = max(1, c.ins[0].dim() - 2) if c.ins else 1
        window = numel(kernel * spatial if len(kernel) == 1 else kernel)
        avg = "avg" in b
        return float(out_n * (window + (1 if avg else 0))), f"{window} per output (window{' + divide' if avg else ''})"
    if "adaptive" in b:
        return float(in_n + (out_n if "avg" in b else 0)), "1/input element (+1/output for the mean)"
    if b in ("var", "std", "var_mean", "std_mean", "norm", "linalg_vector_norm"):
        return float(3 * in_n), "3/input element (center or abs, square, sum)"
    return float(in_n), "1/input element"


# ---------------------------------------------------------------------------- table


_SPECIAL: dict[str, Callable[[Call], list[OpCount]]] = {}
for _n in ("mm addmm bmm baddbmm addbmm matmul linear mkldnn_linear _mkl_linear _linear_pointwise "
           "mkldnn_linear_pointwise _addmm_activation addmv mv dot vdot _int_mm _weight_int8pack_mm").split():
    _SPECIAL[_n] = _matmul
for _n in ("convolution _convolution conv1d conv2d conv3d mkldnn_convolution cudnn_convolution _convolution_pointwise "
           "conv_transpose1d conv_transpose2d conv_transpose3d _nnpack_spatial_convolution slow_conv2d "
           "slow_conv2d_forward thnn_conv2d cudnn_convolution_transpose slow_conv_transpose2d").split():
    _SPECIAL[_n] = _conv
for _n in ("scaled_dot_product_attention _scaled_dot_product_flash_attention _scaled_dot_product_flash_attention_for_cpu "
           "_scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention _scaled_dot_product_attention_math "
           "_flash_attention_forward _efficient_attention_forward").split():
    _SPECIAL[_n] = _sdpa
for _n in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
    _SPECIAL[_n] = _rnn
for _n in ("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"):
    _SPECIAL[_n] = _rnn_cell
_SPECIAL["mkldnn_rnn_layer"] = _mkldnn_rnn_layer
_SPECIAL["_native_multi_head_attention"] = _native_mha
_SPECIAL["_transformer_encoder_layer_fwd"] = _encoder_layer


def has_formula(base: str) -> bool:
    return base in _SPECIAL


def count(c: Call) -> list[OpCount]:
    """The records of one dispatched op."""
    if c.base in _SPECIAL:
        return _SPECIAL[c.base](c)
    cls = classify_torch(c.base)
    if cls in ("unknown", "matmul", "conv", "attention", "recurrent"):  # no formula: never a silent zero
        what = "unknown op" if cls == "unknown" else f"{cls} op without a formula"
        return [c.record(op_class=cls, known=False, note=f"{what}: FLOPs not counted; bytes from tensor sizes"
                         + ("; view" if c.view else ""))]
    return [_generic(c, cls)]
