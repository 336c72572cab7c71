"""Any Python callable as a model: it gets the batch as numpy arrays by name.

``fn(**batch)``; or, for a callable of one positional parameter fed one input,
``fn(array)``. The signature is checked against the input names when they are
first known (at load if the callable declares ``infermeter_inputs`` or the user
gave ``--input``), so a mismatch is an :class:`InputError` before any timing.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import InputError, UsageError
from ..inputs import InputSpec, parse_input
from . import parse_device
from .base import LoadOptions, Runner

__all__ = ["PythonRunner"]


class PythonRunner(Runner):
    backend = "python"

    def __init__(self, fn: Callable[..., Any], spec: str, options: LoadOptions = LoadOptions()) -> None:
        kind, _ = parse_device(options.device)
        if kind != "cpu":
            raise UsageError(
                f"'{spec}' is a plain Python callable, which infermeter cannot place or synchronise on "
                f"{options.device}; use --device cpu, or give an nn.Module so torch runs it on the GPU"
            )
        if options.dtype is not None:
            raise UsageError(
                f"'{spec}' is a plain Python callable and gets numpy arrays as they are; drop --dtype "
                "and set the input dtypes with --input NAME:DTYPE[DIMS]"
            )
        self.fn = fn
        self.spec = spec
        self.device = "cpu"
        self.dtype = None
        self.default_dims: dict[str, int] = dict(getattr(fn, "infermeter_dims", None) or {})
        self._declared = _declared(fn, spec)
        self._checked: dict[tuple[str, ...], bool] = {}  # names → pass positionally?
        names = tuple(s.name for s in (self._declared or options.inputs))
        if names:
            self._convention(names)

    def inputs(self) -> list[InputSpec]:
        return list(self._declared)

    def prepare(self, batch: Mapping[str, np.ndarray]) -> Any:
        positional = self._convention(tuple(batch))
        if positional:
            return _One(next(iter(batch.values())))
        return dict(batch)

    def __call__(self, prepared: Any) -> Any:
        if isinstance(prepared, _One):
            return self.fn(prepared.value)
        return self.fn(**prepared)

    def describe(self) -> dict[str, Any]:
        target = self.fn if inspect.isroutine(self.fn) else type(self.fn)
        details = {
            "callable": f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}",
            "call": "positional" if any(self._checked.values()) else "keyword",
        }
        if self.default_dims:
            details["default_dims"] = dict(self.default_dims)
        return {
            "spec": self.spec,
            "backend": self.backend,
            "device": self.device,
            "dtype": None,
            "params": None,
            "file_size_bytes": None,
            "details": details,
        }

    def _convention(self, names: tuple[str, ...]) -> bool:
        """True to pass the single input positionally; raise if the callable cannot take ``names``."""
        if names not in self._checked:
            self._checked[names] = _check(self.fn, names, self.spec)
        return self._checked[names]


class _One:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _declared(fn: Any, spec: str) -> list[InputSpec]:
    raw = getattr(fn, "infermeter_inputs", None)
    if raw is None:
        return []
    if isinstance(raw, (str, InputSpec)):
        raw = [raw]
    try:
        return [s if isinstance(s, InputSpec) else parse_input(str(s)) for s in raw]
    except InputError as exc:
        raise InputError(f"infermeter_inputs of '{spec}': {exc}") from None


def _check(fn: Any, names: tuple[str, ...], spec: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False  # builtins without a signature: trust fn(**batch)
    params = list(sig.parameters.values())
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = [p.name for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    unknown = [n for n in names if n not in named and not var_kw]
    missing = [n for n in required if n not in names]
    if not unknown and not missing:
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_var_pos = any(p.kind is p.VAR_POSITIONAL for p in params)
    others_required = [n for n in required if n not in {p.name for p in positional[:1]}]
    if len(names) == 1 and (len(positional) == 1 or (not positional and has_var_pos)) and not others_required:
        return True
    problems = []
    if unknown:
        problems.append(f"does not accept {', '.join(unknown)}")
    if missing:
        problems.append(f"needs {', '.join(missing)} which the inputs lack")
    raise InputError(
        f"callable '{spec}'{sig} {' and '.join(problems)} (inputs: {', '.join(names)}); "
        "name the inputs after its parameters with --input NAME:DTYPE[DIMS], or give it **kwargs"
    )
