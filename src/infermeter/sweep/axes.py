"""The axes a sweep can vary, how their values are written, and how a point becomes ``bench()`` arguments.

An axis is listed (``batch: [1, 8, 32]``) or ranged (``batch: {range: [1, 64], scale: log2}``).
Ranges are inclusive of both ends when a step lands on the upper bound:

* ``{range: [LO, HI]}`` — LO, LO+1, … ≤ HI; ``step: S`` adds S instead of 1;
* ``{range: [LO, HI], scale: log2}`` — LO, 2·LO, 4·LO, … ≤ HI; ``step: S`` multiplies by 2**S.

On the command line (``--grid``) the same is ``batch=1,8,32``, ``batch=1..64`` (step 1),
``batch=1..9:2`` (step 2) and ``batch=1..64:log2`` (doubling; ``:log2:2`` quadruples).

Axis → ``bench()`` keyword:

============  =================================================================
``model``     the model spec (positional argument)
``backend``   the ONNX Runtime execution provider: ``providers=[NAME]``. Short names
              ``cpu``, ``cuda``, ``tensorrt``, ``openvino``, ``rocm``, ``dml``, ``coreml``
              or a full ``…ExecutionProvider`` name. Only for ``.onnx`` models.
``batch``     ``batch_size``
``dims.NAME`` one symbolic input dim: ``dims={NAME: value}`` (merged with ``settings.dims``)
``threads``   ``threads`` (``null``: the backend's default)
``dtype``     ``dtype`` (``null``: the model's own)
``device``    ``device`` (cpu, cuda, cuda:N)
``scenario``  ``scenario`` (needs a ``bench()`` that takes it)
``settings.NAME``  any other ``bench()`` keyword, e.g. ``settings.qps: [10, 20]``
============  =================================================================
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from functools import lru_cache
from typing import Any, Callable, Mapping

__all__ = [
    "AXES", "KNOWN_AXES_TEXT", "ConfigProblem", "axis_values", "bench_parameters", "parse_grid", "point_kwargs", "PROVIDERS",
]

AXES = ("model", "backend", "batch", "dims.NAME", "threads", "dtype", "device", "scenario", "settings.NAME")
KNOWN_AXES_TEXT = ", ".join(AXES)
_MAX_VALUES = 10_000

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}

# bench() keywords a sweep sets itself, or that make no sense per point.
RESERVED_SETTINGS = {
    "model": "name the model with the top-level 'model' key or the 'model' axis",
    "batch_sizes": "one point measures one batch size; vary it with the 'batch' axis",
    "store": "the sweep saves every point to its own store (--store)",
    "progress": "the sweep reports progress itself",
}


class ConfigProblem(ValueError):
    """A mistake at ``loc`` (a path into the config, as pydantic gives): the loader turns it into 'FILE line N: …'."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


@lru_cache(maxsize=1)
def bench_parameters() -> tuple[frozenset[str], bool]:
    """``bench()``'s keyword names, and whether it takes ``**kwargs`` (then any name passes)."""
    from ..measure import bench

    params = inspect.signature(bench).parameters.values()
    names = frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    return names - {"model"}, any(p.kind == p.VAR_KEYWORD for p in params)


def check_setting_name(name: str, loc: tuple[Any, ...]) -> None:
    if name in RESERVED_SETTINGS:
        raise ConfigProblem(loc, f"'{name}' cannot be set in a sweep: {RESERVED_SETTINGS[name]}")
    names, open_ended = bench_parameters()
    if name in names or open_ended:
        return
    close = difflib.get_close_matches(name, sorted(names), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigProblem(loc, f"unknown setting '{name}'; {hint}bench() takes: {', '.join(sorted(names - set(RESERVED_SETTINGS)))}")


# ------------------------------------------------------------------------------- values


def _expand_range(spec: Mapping[str, Any], loc: tuple[Any, ...]) -> list[Any]:
    unknown = sorted(set(map(str, spec)) - {"range", "step", "scale"})
    if unknown:
        raise ConfigProblem(loc + (unknown[0],), f"unknown range key '{unknown[0]}'; a range takes range: [LO, HI], step and scale (linear or log2)")
    bounds = spec.get("range")
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(_is_number(b) for b in bounds):
        raise ConfigProblem(loc + ("range",), "range must be two numbers [LO, HI], e.g. range: [1, 64]")
    lo, hi = bounds
    scale = spec.get("scale", "linear")
    if scale not in ("linear", "log2"):
        raise ConfigProblem(loc + ("scale",), f"unknown scale {scale!r}; use linear or log2")
    step = spec.get("step", 1)
    if not _is_number(step) or step <= 0:
        raise ConfigProblem(loc + ("step",), f"step must be a positive number, got {step!r}")
    if hi < lo:
        raise ConfigProblem(loc + ("range",), f"range [{lo}, {hi}] is empty; give LO <= HI")
    if scale == "log2" and lo <= 0:
        raise ConfigProblem(loc + ("range",), f"a log2 range must start above 0, got {lo}")
    integral = all(isinstance(v, int) for v in (lo, hi, step))
    out: list[Any] = []
    k = 0
    while True:
        value = lo + k * step if scale == "linear" else lo * 2 ** (k * step)
        if value > hi * (1 + 1e-12):
            break
        out.append(int(round(value)) if integral or (scale == "log2" and isinstance(lo, int) and float(value).is_integer()) else value)
        k += 1
        if len(out) > _MAX_VALUES:
            raise ConfigProblem(loc, f"range gives more than {_MAX_VALUES} values; use a larger step")
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        return f"expected a positive integer, got {v!r}"
    return None


def _optional_positive_int(v: Any) -> str | None:
    return None if v is None else _positive_int(v)


def _nonempty_str(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else f"expected a non-empty string, got {v!r}"


def _dtype(v: Any) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        return f"expected a dtype name such as float32, got {v!r}"
    from ..inputs import canonical_dtype

    try:
        canonical_dtype(v)
    except Exception as exc:  # InputError: says which dtypes exist
        return str(exc)
    return None


def _device(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a device such as cpu or cuda:0, got {v!r}"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", v.strip().lower()):
        return f"unknown device '{v}'; use cpu, cuda or cuda:N"
    return None


def _backend(v: Any) -> str | None:
    if not isinstance(v, str) or not (v.lower() in PROVIDERS or v.endswith("ExecutionProvider")):
        return f"unknown backend {v!r}; use an ONNX Runtime execution provider: {', '.join(PROVIDERS)} or NAMEExecutionProvider"
    return None


def _any(v: Any) -> str | None:
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "model": _nonempty_str, "backend": _backend, "batch": _positive_int, "threads": _optional_positive_int,
    "dtype": _dtype, "device": _device, "scenario": _nonempty_str,
}


def _check_for(name: str, loc: tuple[Any, ...]) -> Callable[[Any], str | None]:
    if name in _CHECKS:
        if name == "scenario":
            check_setting_name("scenario", loc)
        return _CHECKS[name]
    if name.startswith("dims."):
        if not re.fullmatch(r"[A-Za-z_]\w*", name[5:]):
            raise ConfigProblem(loc, f"axis '{name}': the dim name must be an identifier, e.g. dims.seq")
        return _positive_int
    if name.startswith("settings."):
        check_setting_name(name[9:], loc)
        return _any
    close = difflib.get_close_matches(name, [a for a in AXES if "NAME" not in a], n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigProblem(loc, f"unknown axis '{name}'; {hint}known axes: {KNOWN_AXES_TEXT}")


def axis_values(name: str, raw: Any, loc: tuple[Any, ...]) -> list[Any]:
    """Validate one axis and return its values, listed or expanded from a range."""
    check = _check_for(str(name), loc)
    if isinstance(raw, Mapping):
        values = _expand_range(raw, loc)
        where: Callable[[int], tuple[Any, ...]] = lambda i: loc
    else:
        values = list(raw) if isinstance(raw, list) else [raw]
        where = (lambda i: loc + (i,)) if isinstance(raw, list) else (lambda i: loc)
    if not values:
        raise ConfigProblem(loc, f"axis '{name}' has no values; list at least one")
    seen: list[str] = []
    for i, v in enumerate(values):
        if isinstance(v, (Mapping, list)) and not str(name).startswith("settings."):
            raise ConfigProblem(where(i), f"axis '{name}': expected a single value, got {v!r}")
        problem = check(v)
        if problem:
            raise ConfigProblem(where(i), f"axis '{name}': {problem}")
        key = repr(v)
        if key in seen:
            raise ConfigProblem(where(i), f"axis '{name}': value {v!r} is listed twice")
        seen.append(key)
    if name == "backend":
        values = [PROVIDERS.get(v.lower(), v) for v in values]
    return values


def point_kwargs(base: Mapping[str, Any], axes: Mapping[str, Any]) -> dict[str, Any]:
    """``bench()`` keywords for one point: the fixed ones, then each axis value on top."""
    kw = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for name, value in axes.items():
        if name == "model":
            kw["model"] = value
        elif name == "backend":
            kw["providers"] = [value]
        elif name == "batch":
            kw["batch_size"] = value
        elif name.startswith("dims."):
            kw["dims"] = {**dict(kw.get("dims") or {}), name[5:]: value}
        elif name.startswith("settings."):
            kw[name[9:]] = value
        else:  # threads, dtype, device, scenario: same name in bench()
            kw[name] = value
    return kw


# ------------------------------------------------------------------------------- --grid


def parse_grid(text: str) -> dict[str, Any]:
    """``'batch=1,8;threads=1..4;dims.seq=64,128'`` → axes as the YAML form writes them."""
    import yaml

    from ..errors import UsageError

    out: dict[str, Any] = {}
    for part in str(text).split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"--grid: cannot read '{part}'; expected AXIS=V1,V2 or AXIS=LO..HI[:STEP|:log2] joined by ';', e.g. 'batch=1,8;threads=1,2'")
        if name in out:
            raise UsageError(f"--grid: axis '{name}' is given twice")
        m = re.fullmatch(r"(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)(?::(log2)(?::([\d.]+))?|:([\d.]+))?", value)
        if m:
            lo, hi = yaml.safe_load(m.group(1)), yaml.safe_load(m.group(2))
            spec: dict[str, Any] = {"range": [lo, hi]}
            if m.group(3):
                spec["scale"] = "log2"
            step = m.group(4) or m.group(5)
            if step:
                spec["step"] = yaml.safe_load(step)
            out[name] = spec
            continue
        try:
            out[name] = [yaml.safe_load(v.strip()) for v in value.split(",")]
        except yaml.YAMLError:
            raise UsageError(f"--grid: cannot read the values of '{name}': {value!r}") from None
    if not out:
        raise UsageError("--grid is empty; give AXIS=V1,V2 pairs joined by ';', e.g. 'batch=1,8;threads=1,2'")
    return out
