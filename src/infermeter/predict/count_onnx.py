"""Count the work of an ONNX graph node by node, from its shapes after inference.

Why the graph and not a run: every node and every shape is in the file once the
batch dim and the other symbolic dims are set. The input dims are made concrete,
then ``onnx.shape_inference`` runs (strict, with data propagation so ``Shape →
Gather → Concat → Reshape`` chains resolve). Values it still cannot size (contrib
ops such as ``com.microsoft.Attention``, shapes computed at run time) are sized by
one ONNX Runtime run with those values added as graph outputs; the method says so.

Initializers and ``Constant`` outputs are weights. Nodes whose inputs are all
constant are marked ``folded`` (ONNX Runtime folds them at load; no run-time
work). Formulas: :mod:`._count_onnx_ops`; conventions: :mod:`._count_common`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailable, ModelLoadError
from ..inputs import InputSpec
from ..models import short_error
from . import _count_onnx_ops as formulas
from ._count_common import numel
from .schema import OpCount, WorkCount

__all__ = ["count_onnx", "ELEM_TYPES"]

#: TensorProto data type → (dtype name, bits per element).
ELEM_TYPES: dict[int, tuple[str, int]] = {
    1: ("float32", 32), 2: ("uint8", 8), 3: ("int8", 8), 4: ("uint16", 16), 5: ("int16", 16), 6: ("int32", 32),
    7: ("int64", 64), 8: ("string", 0), 9: ("bool", 8), 10: ("float16", 16), 11: ("float64", 64), 12: ("uint32", 32),
    13: ("uint64", 64), 14: ("complex64", 64), 15: ("complex128", 128), 16: ("bfloat16", 16),
    17: ("float8e4m3fn", 8), 18: ("float8e4m3fnuz", 8), 19: ("float8e5m2", 8), 20: ("float8e5m2fnuz", 8),
    21: ("uint4", 4), 22: ("int4", 4), 23: ("float4e2m1", 4),
}
# Deterministic ops ONNX Runtime can fold when every input is constant.
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
                 "If", "Loop", "Scan"}


def count_onnx(
    path: str | Path,
    *,
    specs: Sequence[InputSpec],
    shapes: Mapping[str, tuple[int, ...]],
    spec: str,
    batch_size: int,
    dims: Mapping[str, int] | None = None,
    feed: Callable[[], Mapping[str, np.ndarray]] | None = None,
) -> WorkCount:
    """Count the nodes of the ONNX file at ``path`` with its inputs at ``shapes``.

    ``feed`` makes one batch of inputs; it is called only when shape inference
    leaves values unsized and an ONNX Runtime run has to size them.
    """
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailable(f"counting an ONNX graph needs the onnx package ({exc}); pip install onnx") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(f"onnx {onnx.__version__} cannot read '{spec}': {short_error(exc)}") from None
    _fix_input_dims(model, shapes)
    model, how = _infer(onnx, model)
    values = _values(model)
    graph = model.graph
    missing = sorted({n for node in graph.node for n in (*node.input, *node.output) if n and not _sized(values.get(n))})
    method = f"onnx {onnx.__version__} shape inference ({how}, data propagation) at batch {batch_size}"
    if missing and feed is not None:
        sized = _run_for_shapes(onnx, path, missing, feed, model)
        values.update(sized)
        if sized:
            method += f"; {len(sized)} value(s) sized by one onnxruntime run"
    unsized = [n for n in missing if not _sized(values.get(n))]
    if unsized:
        method += f"; {len(unsized)} value(s) left unsized (their nodes say so in the note)"
    const = {i.name for i in graph.initializer}
    const |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    ops: list[OpCount] = []
    unknown: set[str] = set()
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        folded = _foldable(node, const, values)
        if folded:
            const |= {o for o in node.output if o}
        made = formulas.count(_node(onnx, node, name, values, const, folded))
        for op in made:
            if not op.known:
                unknown.add(_op_type(node))
        ops.extend(made)
    params = param_bytes = 0
    for init in graph.initializer:
        n = numel(list(init.dims))
        params += n
        param_bytes += _bytes(n, init.data_type)
    return WorkCount(
        spec=spec, backend="onnx", method=method, batch_size=batch_size, dims=dict(dims or {}), params=params,
        param_bytes=param_bytes, ops=ops, unknown_ops=sorted(unknown),
    )


# ---------------------------------------------------------------------------- shapes


def _fix_input_dims(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Set every graph input to its concrete shape; carry the symbols' values to the outputs."""
    graph = model.graph
    init = {i.name for i in graph.initializer}
    symbols: dict[str, int] = {}
    for gi in graph.input:
        if gi.name in init or gi.name not in shapes:
            continue
        dims = gi.type.tensor_type.shape.dim
        concrete = shapes[gi.name]
        if len(dims) != len(concrete):
            continue  # rank mismatch: the runner reports it when it runs
        for d, value in zip(dims, concrete):
            if d.HasField("dim_param"):
                symbols[d.dim_param] = int(value)
            d.Clear()
            d.dim_value = int(value)
    del graph.value_info[:]  # re-inferred at the concrete sizes
    for go in graph.output:
        if not go.type.HasField("tensor_type") or not go.type.tensor_type.HasField("shape"):
            continue
        for d in go.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                value = symbols.get(d.dim_param)
                d.Clear()
                if value is not None:
                    d.dim_value = value


def _infer(onnx: Any, model: Any) -> tuple[Any, str]:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True), "strict"
    except Exception as exc:
        reason = short_error(exc, 120)
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True), f"non-strict; strict failed: {reason}"
    except Exception as exc:
        return model, f"failed ({short_error(exc, 120)})"


Value = tuple[int, "list[int | None]"]  # (elem type, dims; None where unknown)


def _values(model: Any) -> dict[str, Value]:
    graph = model.graph
    out: dict[str, Value] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if t is None or not t.HasField("shape"):
            if t is not None and t.elem_type:
                out.setdefault(vi.name, (t.elem_type, None))  # type: ignore[arg-type]
            continue
        dims = [int(d.dim_value) if d.HasField("dim_value") else None for d in t.shape.dim]
        if vi.name not in out or not _sized(out[vi.name]):
            out[vi.name] = (t.elem_type, dims)
    for init in graph.initializer:
        out[init.name] = (init.data_type, [int(d) for d in init.dims])
    return out


def _sized(v: Value | None) -> bool:
    return v is not None and v[1] is not None and all(d is not None for d in v[1])


def _run_for_shapes(onnx: Any, path: str | Path, names: Sequence[str], feed: Callable[[], Mapping[str, np.ndarray]],
                    inferred: Any) -> dict[str, Value]:
    """Size ``names`` by running the graph once with them as extra outputs (optimizations off,
    so every value still exists). Best effort: a failure leaves them unsized, and notes say so."""
    try:
        import onnxruntime as ort

        full = onnx.load(str(path))
        have = {o.name for o in full.graph.output}
        for n in names:
            if n not in have:
                full.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.log_severity_level = 3
        session = ort.InferenceSession(full.SerializeToString(), so, providers=["CPUExecutionProvider"])
        types = {i.name: i.type.tensor_type.elem_type for i in inferred.graph.input}
        source = feed()
        batch = {}
        for i in session.get_inputs():
            arr = np.asarray(source[i.name])
            try:
                arr = arr.astype(onnx.helper.tensor_dtype_to_np_dtype(types[i.name]), copy=False)
            except Exception:
                pass  # bfloat16 and friends: feed as made
            batch[i.name] = arr
        results = session.run(list(names), batch)
    except Exception:
        return {}
    sized: dict[str, Value] = {}
    for n, arr in zip(names, results):
        if isinstance(arr, np.ndarray):
            sized[n] = (_elem_of(onnx, arr.dtype), [int(d) for d in arr.shape])
    return sized


def _elem_of(onnx: Any, dtype: np.dtype) -> int:
    try:
        return int(onnx.helper.np_dtype_to_tensor_dtype(dtype))
    except Exception:
        return 1


# ---------------------------------------------------------------------------- nodes


def _op_type(node: Any) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def _foldable(node: Any, const: set[str], values: Mapping[str, Value]) -> bool:
    """All inputs constant (or a Shape/Size of a fully sized tensor): ORT computes it at load."""
    if node.op_type in _NOT_FOLDABLE or node.domain not in ("", "ai.onnx") or node.op_type == "Constant":
        return False
    if node.op_type in ("Shape", "Size"):
        return bool(node.input) and _sized(values.get(node.input[0]))
    ins = [i for i in node.input if i]
    return bool(ins) and all(i in const for i in ins)


def _bytes(n: int, elem: int) -> int:
    bits = ELEM_TYPES.get(elem, ("", 32))[1]
    return (n * bits + 7) // 8


def _node(onnx: Any, node: Any, name: str, values: Mapping[str, Value], const: set[str], folded: bool) -> formulas.Node:
    def tensor(n: str) -> formulas.Tensor | None:
        if not n:
            return None
        v = values.get(n)
        elem = v[0] if v is not None else 0
        shape = list(v[1]) if v is not None and _sized(v) else None  # type: ignore[arg-type]
        nbytes = _bytes(numel(shape), elem) if shape is not None else 0
        return formulas.Tensor(n, ELEM_TYPES.get(elem, ("unknown", 0))[0], shape, nbytes, n in const)

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    return formulas.Node(name=name, op_type=node.op_type, domain=node.domain or "", op=_op_type(node),
                         ins=[tensor(i) for i in node.input], outs=[tensor(o) for o in node.output], attrs=attrs,
                         folded=folded)
