"""Count the work of a model per operator: FLOPs, bytes, op class, GEMM shape.

``count_work`` takes what ``bench`` takes (a spec or an object) and gives a
:class:`WorkCount` at one batch size. The ONNX counter reads the graph after shape
inference (no run needed); the torch counter watches one real forward pass at the
dispatcher. Both share their formulas (``_count_common``), so they agree on a
GEMM or a convolution by construction. Conventions: FLOPs are 2 × multiply-
accumulates (:data:`~infermeter.predict.schema.FLOPS_CONVENTION`).

Inputs resolve exactly as in ``bench``: the model's own specs merged with the
user's ``--input``, symbolic dims from ``--dim`` over the zoo's defaults; a dim
left symbolic is an :class:`InputError` naming it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import InputError, UsageError
from ..inputs import InputSpec, make_batches, parse_input
from ..models import load_model, require_inputs
from ..models.base import LoadOptions, Runner
from .schema import WorkCount

__all__ = ["count_work", "count_runner"]


def count_work(
    model: Any,
    *,
    batch_size: int = 1,
    dims: Mapping[str, int] | None = None,
    inputs: Sequence[str | InputSpec] | None = None,
    options: LoadOptions | None = None,
    seed: int = 0,
) -> WorkCount:
    """Load ``model`` (``x.onnx``, ``x.pt``, ``x.pt2``, ``module:attr``, ``zoo:NAME``, an
    ``nn.Module`` or a Runner) and count its work at ``batch_size``."""
    runner = load_model(model, options or LoadOptions())
    try:
        return count_runner(runner, batch_size=batch_size, dims=dims, inputs=inputs, seed=seed)
    finally:
        if runner is not model:  # a Runner passed in belongs to the caller
            runner.close()


def count_runner(
    runner: Runner,
    *,
    batch_size: int = 1,
    dims: Mapping[str, int] | None = None,
    inputs: Sequence[str | InputSpec] | None = None,
    seed: int = 0,
) -> WorkCount:
    """Count the work of an already loaded runner (so several batch sizes load it once)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise UsageError(f"batch size {batch_size!r} is not a positive integer; use e.g. --batch 1,8")
    backend = getattr(runner, "backend", "")
    if backend not in ("onnxruntime", "torch"):
        raise UsageError(
            f"count needs an ONNX or PyTorch model, and '{runner.spec or backend}' is a {backend or 'custom'} runner "
            "whose ops infermeter cannot see; give a .onnx file, a torch model (.pt, .pt2, module:attr naming an "
            "nn.Module) or a zoo model"
        )
    user = [s if isinstance(s, InputSpec) else parse_input(s) for s in (inputs or ())]
    specs = require_inputs(runner, user)
    all_dims = {**dict(getattr(runner, "default_dims", {}) or {}), **dict(dims or {})}
    shapes = {s.name: _resolve(s, batch_size, all_dims) for s in specs}
    used = {d: int(all_dims[d]) for s in specs for d in s.symbols if d in all_dims}
    if backend == "onnxruntime":
        from .count_onnx import count_onnx

        path = getattr(runner, "_path", None)
        if path is None:
            raise UsageError(f"'{runner.spec}' is an ONNX session without a file; count reads the graph from the .onnx file")
        return count_onnx(
            path, specs=specs, shapes=shapes, spec=runner.spec, batch_size=batch_size, dims=used,
            feed=lambda: make_batches(specs, batch_size, all_dims, seed=seed, pool=1)[0][0],
        )
    from .count_torch import count_torch

    batch = make_batches(specs, batch_size, all_dims, seed=seed, pool=1)[0][0]
    args, kwargs = runner.prepare(batch)
    return count_torch(runner.model, args, kwargs, spec=runner.spec, batch_size=batch_size, dims=used)  # type: ignore[attr-defined]


def _resolve(spec: InputSpec, batch_size: int, dims: Mapping[str, int]) -> tuple[int, ...]:
    try:
        return spec.resolve(batch_size, dims)
    except InputError:
        missing = [d for d in spec.symbols if d != "B" and d not in dims]
        name = missing[0] if missing else "?"
        raise InputError(
            f"dim '{name}' of input '{spec.name}' ({spec.text()}) is symbolic and count needs a size for it; "
            f"set it with --dim {name}=N"
        ) from None
