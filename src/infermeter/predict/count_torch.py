"""Count the work of a PyTorch model by watching the ATen ops one real forward pass dispatches.

Why dispatch, not a traced graph: what runs is what gets counted, with the real
shapes at the batch size asked for, on the runner's device. Under
``torch.inference_mode()`` a :class:`TorchDispatchMode` sees the high-level ops
(``aten.linear``, ``aten.conv2d``, ``aten.scaled_dot_product_attention``,
``aten.lstm``) before they are broken up, which is the level kernels are chosen at.

Every dispatched op is recorded, views too (0 bytes, note "view": they still cost a
dispatch, and the predictor charges per-op overhead). Ops are named by the module
path they ran in (global module forward hooks, which leave fused fast paths alone;
for a ``torch.export`` graph, each node's ``nn_module_stack``), so a per-layer view
is possible. An op the
formulas do not know is decomposed when it has a composite implementation, and
otherwise recorded as unknown: listed, bytes counted from tensor sizes, never a
silent zero. Formulas: :mod:`._count_torch_ops`; conventions: :mod:`._count_common`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ..errors import ModelRunError
from ..models import short_error
from . import _count_torch_ops as formulas
from ._count_common import shape_text
from .opclass import classify_torch, torch_base_name
from .schema import OpCount, WorkCount

__all__ = ["count_torch", "DispatchCounter"]

_COMPOSITE = torch._C.DispatchKey.CompositeImplicitAutograd
# Composite ops counted through their parts rather than a formula of their own.
_DECOMPOSE = frozenset({"einsum", "bilinear", "tensordot", "chain_matmul", "multi_dot", "kron"})


def count_torch(
    model: Any, args: Sequence[Any], kwargs: Mapping[str, Any], *, spec: str, batch_size: int,
    dims: Mapping[str, int] | None = None,
) -> WorkCount:
    """Run ``model(*args, **kwargs)`` once under inference mode and count every dispatched op."""
    counter = DispatchCounter(_weight_storages(model))
    try:
        with torch.inference_mode(), _module_names(model, counter), counter:
            _forward(model, tuple(args), dict(kwargs), counter)
    except ModelRunError:
        raise
    except Exception as exc:
        raise ModelRunError(
            f"the forward pass of '{spec}' failed while counting its ops: {type(exc).__name__}: {short_error(exc)}; "
            "check that the model runs with these inputs (infermeter bench shows the same error)"
        ) from None
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    graph_kind = "torch.export graph" if _module_stack_graph(model) else "module"
    return WorkCount(
        spec=spec,
        backend="torch",
        method=(
            f"torch {torch.__version__} dispatch: TorchDispatchMode around one forward pass under inference_mode "
            f"at batch {batch_size} on {_device_of(model)}; ops named by {graph_kind} path"
        ),
        batch_size=batch_size,
        dims=dict(dims or {}),
        params=sum(int(p.numel()) for p in params),
        param_bytes=sum(int(p.numel()) * p.element_size() for p in params),
        ops=counter.ops,
        unknown_ops=sorted(counter.unknown),
    )


class DispatchCounter(TorchDispatchMode):
    """Records an :class:`OpCount` (or several, for fused layers) per dispatched ATen op.

    ``weights`` holds the storage addresses of the model's parameters and buffers:
    a tensor input living in one of them is a weight read, any other is an activation.
    """

    def __init__(self, weights: set[int]) -> None:
        super().__init__()
        self.weights = weights
        self.ops: list[OpCount] = []
        self.unknown: set[str] = set()
        self.stack: list[str] = []
        self.node_path: str | None = None  # set per node when running an exported graph
        self.calls: dict[tuple[str, str], int] = {}

    def path(self) -> str:
        if self.node_path is not None:
            return self.node_path
        return self.stack[-1] if self.stack else ""

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = dict(kwargs or {})
        base = torch_base_name(str(func))
        known = formulas.has_formula(base) or classify_torch(base) != "unknown"
        if (base in _DECOMPOSE or not known) and func.has_kernel_for_dispatch_key(_COMPOSITE):
            with self:  # count the parts it is made of
                return func.decompose(*args, **kwargs)
        out = func(*args, **kwargs)
        self.record(func, base, args, kwargs, out)
        return out

    def record(self, func: Any, base: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any) -> None:
        call = _call(func, base, args, kwargs, out, self)
        try:
            made = formulas.count(call)
        except Exception as exc:  # a formula that does not fit this call: say so, keep the bytes
            made = [call.record(known=False, op_class="unknown", note=f"counting failed ({type(exc).__name__}: {exc}); bytes from tensor sizes")]
        for op in made:
            if not op.known:
                self.unknown.add(call.op)
        self.ops.extend(made)


# ---------------------------------------------------------------------------- one call


def _call(func: Any, base: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: Any, counter: DispatchCounter) -> formulas.Call:
    """Bind the arguments by schema name, sort the tensors, and size the bytes."""
    schema = func._schema
    bound: dict[str, Any] = {}
    for i, a in enumerate(schema.arguments):
        if i < len(args):
            bound[a.name] = args[i]
        elif a.name in kwargs:
            bound[a.name] = kwargs[a.name]
        elif a.has_default_value():
            bound[a.name] = a.default_value
    ins = _unique_tensors(tree_flatten((list(args), dict(kwargs)))[0])
    outs = _unique_tensors(tree_flatten(out)[0])
    inplace = any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
    in_storages = {_storage(t) for t in ins} - {None}
    view = (
        not inplace and bool(outs) and bool(ins)
        and all(_storage(t) in in_storages for t in outs)
    )
    weight = read = 0
    skip_self = base.rstrip("_") in ("copy", "fill", "zero") and inplace  # written, not read
    for i, t in enumerate(ins):
        if skip_self and i == 0:
            continue
        nbytes = _nbytes(t)
        if _storage(t) in counter.weights:
            weight += nbytes
        else:
            read += nbytes
    write = 0 if view else sum(_nbytes(t) for t in outs)
    if base in ("empty", "empty_like", "new_empty", "empty_strided"):
        write = 0  # an allocation writes nothing
    if view:
        weight = read = 0
    dtype = _dtype(outs, ins)
    shapes = shape_text([tuple(t.shape) for t in ins[:4]], [tuple(t.shape) for t in outs[:3]])
    return formulas.Call(
        op=str(func), base=base, name=counter.path(), bound=bound, ins=ins, outs=outs, out=out,
        inplace=inplace, view=view, weight_bytes=weight, read_bytes=read, write_bytes=write, dtype=dtype,
        shapes=shapes, is_weight=lambda t: _storage(t) in counter.weights, counter=counter.calls,
    )


def _unique_tensors(items: Sequence[Any]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in items:
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _storage(t: torch.Tensor) -> int | None:
    try:
        ptr = t.untyped_storage().data_ptr()
    except Exception:  # nested, sparse or other storage-less tensors
        return None
    return ptr or None


def _nbytes(t: torch.Tensor) -> int:
    try:
        return int(t.numel()) * t.element_size()
    except Exception:
        return 0


def _dtype(outs: Sequence[torch.Tensor], ins: Sequence[torch.Tensor]) -> str:
    for group in (outs, ins):
        for t in group:
            if t.is_floating_point():
                return str(t.dtype).replace("torch.", "")
    for t in list(outs) + list(ins):
        return str(t.dtype).replace("torch.", "")
    return "float32"


# ---------------------------------------------------------------------------- running and naming


def _weight_storages(model: Any) -> set[int]:
    if not isinstance(model, torch.nn.Module):
        return set()
    found = set()
    for t in list(model.parameters()) + list(model.buffers()):
        ptr = _storage(t)
        if ptr is not None:
            found.add(ptr)
    return found


def _device_of(model: Any) -> str:
    if isinstance(model, torch.nn.Module):
        for t in list(model.parameters()) + list(model.buffers()):
            return str(t.device)
    return "cpu"


def _module_stack_graph(model: Any) -> bool:
    """A ``torch.export`` graph module whose nodes carry the module path they came from."""
    graph = getattr(model, "graph", None)
    if not isinstance(model, torch.fx.GraphModule) or graph is None:
        return False
    return any(n.meta.get("nn_module_stack") for n in graph.nodes)


@contextlib.contextmanager
def _module_names(model: Any, counter: DispatchCounter) -> Iterator[None]:
    """Keep ``counter.stack`` at the path of the module running now.

    Global module hooks, not per-module ones: a module with hooks of its own takes
    another path (``nn.TransformerEncoderLayer`` skips its fused fast path), and the
    count must see what runs without us. TorchScript modules call no hooks: their
    ops are named at the root.
    """
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    paths: dict[int, str] = {}
    if isinstance(model, torch.nn.Module):
        for path, module in model.named_modules():
            if path:
                paths.setdefault(id(module), path)

    def pre(module: Any, _args: Any) -> None:
        path = paths.get(id(module))
        if path is not None:
            counter.stack.append(path)

    def post(module: Any, _args: Any, _out: Any) -> None:
        path = paths.get(id(module))
        if path is not None and counter.stack and counter.stack[-1] == path:
            counter.stack.pop()

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)] if paths else []
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _forward(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], counter: DispatchCounter) -> Any:
    if _module_stack_graph(model):
        flat = _flat_graph_args(model, args, kwargs)
        if flat is not None:
            return _PathInterpreter(model, counter).run(*flat)
    return model(*args, **kwargs)


def _flat_graph_args(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
    """The graph's placeholders in order, as ``ExportedProgram.module()``'s forward flattens them."""
    placeholders = [n for n in model.graph.nodes if n.op == "placeholder"]
    in_spec = getattr(model, "_in_spec", None)
    try:
        if in_spec is not None:
            from torch.fx._pytree import tree_flatten_spec

            flat = list(tree_flatten_spec((args, kwargs), in_spec))
        elif not kwargs:
            flat = list(args)
        else:
            return None
    except Exception:
        return None
    return flat if len(flat) == len(placeholders) else None


class _PathInterpreter(torch.fx.Interpreter):
    """Runs an exported graph node by node, naming each node's ops by its module path."""

    def __init__(self, module: Any, counter: DispatchCounter) -> None:
        super().__init__(module)
        self.counter = counter

    def run_node(self, n: Any) -> Any:
        stack = n.meta.get("nn_module_stack") or {}
        self.counter.node_path = str(list(stack.values())[-1][0]) if stack else ""
        try:
            return super().run_node(n)
        finally:
            self.counter.node_path = None
