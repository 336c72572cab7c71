"""Pruning transforms: magnitude (unstructured) pruning of a PyTorch module or an
ONNX file, and structured pruning that removes whole channels and hidden units.

* unstructured: the smallest-magnitude weights of every Linear and Conv are set
  to zero (``torch.nn.utils.prune``, then ``prune.remove`` so the zeros are
  baked into plain parameters and no mask or hook is left for an exporter or
  compiler to trip over). The shapes do not change, so a dense kernel runs it
  no faster: it is a candidate for sparse kernels and for compression, and a
  way to learn how much accuracy the weights' tail carries.
* structured: whole output channels of convolutions and hidden units of MLPs
  and transformer FFNs are removed, with the layers that consume them shrunk to
  match, so the matmuls themselves get smaller. torch-pruning's dependency
  graph finds the coupled layers (a BatchNorm after a conv, the Linear that
  reads a flattened conv output, every conv on one residual path).

Which widths structured pruning may touch is decided from the traced graph,
not from layer names; see :func:`prune_structured`.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error
from .quantize import Transformed

if TYPE_CHECKING:
    from torch import nn

__all__ = ["PruneInfo", "prune_unstructured", "prune_onnx_unstructured", "prune_structured"]

_SCOPES = ("global", "layer")
_IMPORTANCE = {"l2": 2, "l1": 1}


@dataclass(frozen=True)
class PruneInfo:
    params_before: int  # parameters (numel) of the whole module
    params_after: int  # structured: fewer; unstructured: the same count, more of them zero
    zeros_before: int  # zero-valued weights in the Linear/Conv weights
    zeros_after: int
    sparsity: float  # unstructured: zeros / Linear-Conv weights; structured: fraction of parameters removed
    description: str  # one line for a human


def _torch() -> Any:  # imported on use: torch is an extra
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"pruning needs torch ({exc}); pip install 'infermeter[torch]'") from None
    return torch


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise UsageError(f"{what} must be a fraction between 0 and 1 (exclusive), got {value!r}; e.g. 0.5 for half")
    return float(value)


def _weighted_layers(module: nn.Module) -> list[nn.Module]:
    """Linear and Conv layers with a materialised weight, each weight once (tied weights
    are pruned once: the mask is computed over the tensor, whoever holds it)."""
    torch = _torch()
    nn = torch.nn
    seen: set[int] = set()
    layers = []
    for m in module.modules():
        w = getattr(m, "weight", None)
        if not isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) or not isinstance(w, torch.Tensor):
            continue
        if nn.parameter.is_lazy(w) or id(w) in seen:
            continue
        seen.add(id(w))
        layers.append(m)
    return layers


def _zeros(layers: Sequence[nn.Module]) -> tuple[int, int]:
    """(zero weights, all weights) over the layers' weight tensors."""
    zeros = total = 0
    for m in layers:
        zeros += int((m.weight == 0).sum())
        total += int(m.weight.numel())
    return zeros, total


def _numel(module: nn.Module) -> int:
    return sum(int(p.numel()) for p in module.parameters())


# ---------------------------------------------------------------------------- unstructured


def prune_unstructured(module: nn.Module, sparsity: float, *, scope: str = "global") -> PruneInfo:
    """Zero the smallest-|w| fraction ``sparsity`` of the Linear/Conv weights, in place.

    ``scope="global"`` ranks all those weights together (layers that matter less
    lose more; the usual choice), ``"layer"`` takes the same fraction from each.
    Biases, embeddings and norms are left alone: they are few and they carry
    offsets and scales that zeroing would distort far more than it saves.
    """
    torch = _torch()
    from torch.nn.utils import prune

    sparsity = _check_fraction(sparsity, "sparsity")
    if scope not in _SCOPES:
        raise UsageError(f"pruning scope '{scope}' is not one of {', '.join(_SCOPES)}")
    layers = _weighted_layers(module)
    if not layers:
        raise TransformError(f"{type(module).__name__} has no Linear or Conv layer to prune; "
                             "magnitude pruning acts on their weights only")
    params = _numel(module)
    zeros_before, total = _zeros(layers)
    try:
        # inference_mode off: the pruner creates masks and parameters that must be ordinary tensors.
        with torch.inference_mode(False), torch.no_grad():
            if scope == "global":
                prune.global_unstructured([(m, "weight") for m in layers], pruning_method=prune.L1Unstructured,
                                          amount=sparsity)
            else:
                for m in layers:
                    prune.l1_unstructured(m, "weight", amount=sparsity)
            for m in layers:
                # Bakes the mask into the original Parameter object (same identity, so tied
                # weights and optimizers still see it) and removes the forward pre-hook.
                prune.remove(m, "weight")
    except Exception as exc:
        raise TransformError(f"magnitude pruning of {type(module).__name__} failed: {short_error(exc)}") from None
    zeros_after, _ = _zeros(layers)
    achieved = zeros_after / total
    return PruneInfo(params, params, zeros_before, zeros_after, achieved,
                     f"{achieved:.0%} of {total:,} Linear/Conv weights set to zero ({scope} L1 magnitude)")


# ---------------------------------------------------------------------------- ONNX


def _onnx() -> tuple[Any, Any]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise BackendUnavailable(f"ONNX pruning needs onnx ({exc}); pip install 'infermeter[onnx]'") from None
    return onnx, numpy_helper


# The weight input of each operator: MatMul may hold its weight on either side.
_WEIGHT_INPUTS = {"MatMul": (0, 1), "Gemm": (1,), "Conv": (1,)}
# onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16: integer (quantized) weights are not pruned.
_FLOAT_TYPES = (1, 10, 11, 16)


def prune_onnx_unstructured(src: str | os.PathLike[str], dst: str | os.PathLike[str], sparsity: float) -> Transformed:
    """Zero the smallest-|w| ``sparsity`` of each float weight initializer of MatMul,
    Gemm (B) and Conv (W), per tensor, and save the model to ``dst``.

    Per tensor rather than global: an ONNX graph has lost which tensors are
    layers of one network, and scales differ between, say, a conv and a
    projection. Shapes are kept, so the file is no smaller; it compresses
    better, and sparse-aware runtimes can use it.
    """
    onnx, numpy_helper = _onnx()
    src, dst = Path(src), Path(dst)
    sparsity = _check_fraction(sparsity, "sparsity")
    if not src.is_file():
        raise UsageError(f"cannot prune '{src}': no such file; give an ONNX model path")
    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise TransformError(f"cannot read '{src.name}' as an ONNX model: {short_error(exc)}") from None
    inits = {t.name: t for t in model.graph.initializer}
    names: list[str] = []
    for node in model.graph.node:
        for i in _WEIGHT_INPUTS.get(node.op_type, ()):
            name = node.input[i] if i < len(node.input) else ""
            t = inits.get(name)
            if t is not None and name not in names and len(t.dims) >= 2 and t.data_type in _FLOAT_TYPES:
                names.append(name)
    if not names:
        raise TransformError(f"'{src.name}' has no float MatMul/Gemm/Conv weight initializer to prune; "
                             "prune the PyTorch model before export, or a graph that is not already quantized")
    try:
        for name in names:
            w = numpy_helper.to_array(inits[name])
            k = int(round(sparsity * w.size))
            if k == 0:
                continue
            flat = w.reshape(-1).copy()
            # argpartition: exactly k entries, the k smallest |w|, in O(n) rather than a sort.
            flat[np.argpartition(np.abs(flat.astype(np.float32)), k - 1)[:k]] = 0
            inits[name].CopyFrom(numpy_helper.from_array(flat.reshape(w.shape), name))
        dst.parent.mkdir(parents=True, exist_ok=True)
        # protobuf cannot hold 2 GB: larger models keep their weights in a side file.
        onnx.save_model(model, str(dst), save_as_external_data=model.ByteSize() > 1_800_000_000)
    except Exception as exc:
        raise TransformError(f"magnitude pruning of '{src.name}' failed: {short_error(exc)}") from None
    return Transformed(dst, f"prune-unstructured(sparsity={sparsity:g}, per-tensor L1)",
                       src.stat().st_size, dst.stat().st_size)



# ---------------------------------------------------------------------------- structured


def _leaves(out: Any) -> list[Any]:
    """The tensors of a model's output, in order, through tuples, lists and dicts."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _leaves(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _leaves(v)]
    return []


def _shapes(model: nn.Module, inputs: tuple[Any, ...]) -> list[tuple[int, ...]]:
    torch = _torch()
    with torch.no_grad():
        return [tuple(t.shape) for t in _leaves(model(*inputs))]


class _Graph:
    """A traced copy of the model and, for each prunable width, whether it must stay.

    A group is torch-pruning's unit: one width shared by coupled layers (a Linear's
    outputs and the next Linear's inputs; every conv writing into one residual
    sum). A group is *fixed* when pruning it would change what the model is:

    * it reaches a model output (the class count, a hidden state the caller reads);
    * it is the model's residual width: it passes through a LayerNorm, an
      Embedding, a free nn.Parameter (positions, class token) or a
      MultiheadAttention, whose width every block shares;
    * removing one unit from it breaks the forward pass or changes an output shape
      (found by trying: attention projections split their width into heads with a
      ``view``, which no graph rule sees).
    """

    def __init__(self, tp: Any, model: nn.Module, inputs: tuple[Any, ...]) -> None:
        torch = _torch()
        nn = torch.nn
        self.model = model
        outputs: list[Any] = []

        def forward(m: nn.Module, x: tuple[Any, ...]) -> Any:
            out = m(*x)
            outputs.append(out)
            return out

        self.dg = tp.DependencyGraph().build_dependency(model, example_inputs=inputs, forward_fn=forward)
        out_fns = {t.grad_fn for t in _leaves(outputs[-1]) if t.grad_fn is not None}
        self.names = {m: n for n, m in model.named_modules()}
        residual = (nn.LayerNorm, getattr(nn, "RMSNorm", nn.LayerNorm), nn.Embedding, nn.EmbeddingBag,
                    nn.MultiheadAttention)
        roots = (nn.Linear, nn.modules.conv._ConvNd)
        self.fixed: list[str] = []  # group roots, by module name
        self.candidates: list[str] = []
        for group in self.dg.get_all_groups(root_module_types=roots):
            root = self.names.get(group[0].dep.target.module)
            if root is None:
                continue
            keep = False
            for dep, _ in group:
                node, m = dep.target, dep.target.module
                shrinks_input_only = isinstance(m, roots) and self.dg.is_in_channel_pruning_fn(dep.handler)
                if (node.grad_fn in out_fns or node.type == tp.ops.OPTYPE.OUTPUT) and not shrinks_input_only:
                    keep = True
                elif isinstance(m, residual) or node.type == tp.ops.OPTYPE.PARAMETER:
                    keep = True
            (self.fixed if keep else self.candidates).append(root)

    def module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)


def _try_prune_one(tp: Any, original: nn.Module, inputs: tuple[Any, ...], roots: Sequence[str],
                   shapes: list[tuple[int, ...]]) -> bool:
    """Whether removing one unit from each group in ``roots`` (on a throwaway copy)
    leaves a model that runs and keeps its output shapes."""
    probe = copy.deepcopy(original)
    try:
        dg = tp.DependencyGraph().build_dependency(probe, example_inputs=inputs)
        for name in roots:
            m = probe.get_submodule(name)
            group = dg.get_pruning_group(m, dg.get_pruner_of_module(m).prune_out_channels, [0])
            if not dg.check_pruning_group(group):
                return False
            group.prune()
        return _shapes(probe, inputs) == shapes
    except Exception:
        return False


def _prunable(tp: Any, original: nn.Module, inputs: tuple[Any, ...], roots: list[str],
              shapes: list[tuple[int, ...]]) -> list[str]:
    """The roots whose groups survive a one-unit trial: all at once first (one trial
    for the usual conv net or MLP), halving the set only when the trial fails."""
    if not roots or _try_prune_one(tp, original, inputs, roots, shapes):
        return roots
    if len(roots) == 1:
        return []
    half = len(roots) // 2
    return _prunable(tp, original, inputs, roots[:half], shapes) + _prunable(tp, original, inputs, roots[half:], shapes)


def _widths(model: nn.Module, names: Sequence[str]) -> dict[str, int]:
    torch = _torch()
    out = {}
    for n in names:
        m = model.get_submodule(n)
        out[n] = int(m.out_features if isinstance(m, torch.nn.Linear) else m.out_channels)
    return out


def prune_structured(module: nn.Module, ratio: float, example_inputs: tuple[Any, ...], *, importance: str = "l2",
                     round_to: int | None = None) -> tuple[nn.Module, PruneInfo]:
    """Remove ``ratio`` of the units of every prunable width; returns ``(smaller copy, info)``.

    ``example_inputs`` are the model's positional arguments (it is traced with
    ``module(*example_inputs)``); ``importance`` ranks units by the L2 or L1 norm
    of their weights across the coupled layers; ``round_to`` keeps each pruned
    width a multiple of it (8 or 16 suits vectorised kernels).

    What shrinks: conv channels, MLP hidden units, transformer FFN intermediate
    units. What stays: the model's outputs, its residual width, attention
    projections (see :class:`_Graph` for the rule). The module passed in is not
    changed. The copy is checked by running it: every output keeps its shape.
    """
    torch = _torch()
    ratio = _check_fraction(ratio, "pruning ratio")
    if importance not in _IMPORTANCE:
        raise UsageError(f"importance '{importance}' is not one of {', '.join(_IMPORTANCE)}")
    if round_to is not None and (isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1):
        raise UsageError(f"round_to must be a positive whole number of channels, got {round_to!r}")
    try:
        import torch_pruning as tp
    except ImportError as exc:
        raise BackendUnavailable(f"structured pruning needs torch-pruning ({exc}); pip install 'infermeter[optimize]'") from None
    cls = type(module).__name__
    if not _weighted_layers(module):
        raise TransformError(f"{cls} has no Linear or Conv layer to prune; structured pruning removes their units")
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if not isinstance(example_inputs, (tuple, list)) or not example_inputs:
        raise UsageError("structured pruning needs example inputs: a tuple of tensors in the model's call order")

    # Tracing follows autograd, so: grad on, no inference tensors, every weight requiring grad.
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch-pruning's notes on unwrapped parameters and the like
        inputs = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in example_inputs)
        work = copy.deepcopy(module).eval()
        grad_flags = {n: p.requires_grad for n, p in work.named_parameters()}
        for p in work.parameters():
            p.requires_grad_(True)
        try:
            shapes = _shapes(work, inputs)
        except Exception as exc:
            raise TransformError(f"structured pruning of {cls} failed: the model does not run on the example inputs "
                                 f"({short_error(exc)}); give them in the model's positional call order") from None
        params_before = _numel(work)
        zeros_before, _ = _zeros(_weighted_layers(work))
        try:
            graph = _Graph(tp, work, inputs)
            keep = _prunable(tp, work, inputs, graph.candidates, shapes)
            if not keep:
                raise TransformError(f"structured pruning of {cls} found no width it can shrink: every Linear/Conv "
                                     "output is a model output, the residual width or an attention projection")
            ignored = [graph.module(n) for n in graph.fixed + [c for c in graph.candidates if c not in keep]]
            widths_before = _widths(work, keep)
            pruner = tp.pruner.MetaPruner(
                work, inputs, importance=tp.importance.GroupMagnitudeImportance(p=_IMPORTANCE[importance]),
                pruning_ratio=ratio, ignored_layers=ignored, round_to=round_to, global_pruning=False,
                root_module_types=[torch.nn.modules.conv._ConvNd, torch.nn.Linear])
            pruner.step()
            for n, p in work.named_parameters():
                p.requires_grad_(grad_flags.get(n, True))
        except TransformError:
            raise
        except Exception as exc:
            raise TransformError(f"structured pruning of {cls} failed: {short_error(exc)}") from None
        try:
            after = _shapes(work, inputs)
        except Exception as exc:
            raise TransformError(f"structured pruning of {cls} left a model that does not run: {short_error(exc)}") from None
    if after != shapes:
        raise TransformError(f"structured pruning of {cls} changed the output shapes {shapes} to {after}; "
                             "the model has a width the dependency graph did not see")
    work.train(module.training)
    params_after = _numel(work)
    zeros_after, _ = _zeros(_weighted_layers(work))
    widths_after = _widths(work, keep)
    order = {n: i for i, (n, _) in enumerate(work.named_modules())}
    shrunk = sorted((n for n in keep if widths_after[n] < widths_before[n]), key=order.__getitem__)
    removed = 1.0 - params_after / params_before
    sample = ", ".join(f"{n}: {widths_before[n]}→{widths_after[n]}" for n in shrunk[:3])
    more = f" and {len(shrunk) - 3} more" if len(shrunk) > 3 else ""
    description = (f"{ratio:.0%} of the units of {len(shrunk)} Linear/Conv width(s) removed ({sample}{more}; "
                   f"{importance.upper()} group magnitude): {params_before:,} → {params_after:,} parameters (-{removed:.1%})")
    return work, PruneInfo(params_before, params_after, zeros_before, zeros_after, removed, description)
