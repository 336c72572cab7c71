"""What a model takes as input, and how batches of it are made.

An :class:`InputSpec` is a name, a dtype and a shape whose dims are integers or
symbols. The symbol ``B`` is the batch dim and follows ``--batch``; any other
symbol (``seq``) must be set with ``--dim seq=128``. The text form is the one the
CLI takes::

    x:float32[B,3,224,224]
    input_ids:int64[B,seq]@0:30522     # integers drawn from [0, 30522)

Batches are numpy arrays keyed by input name: seeded random data, or rows of a
user's ``.npy``/``.npz`` file taken in order so that no row is reused while the
file still has unused ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import InputError, UsageError

__all__ = [
    "BATCH",
    "InputSpec",
    "parse_input",
    "parse_dims",
    "parse_batch_sizes",
    "merge_specs",
    "load_data",
    "make_batches",
    "INPUT_SYNTAX",
]

BATCH = "B"
INPUT_SYNTAX = "--input NAME:DTYPE[DIMS] e.g. --input x:float32[B,3,224,224] (B is the batch dim; add @LOW:HIGH for integer ranges)"

# numpy has no bfloat16: such inputs are made as float32 and cast by the runner.
_DTYPES = {
    "float32": "float32", "float": "float32", "fp32": "float32", "f32": "float32",
    "float16": "float16", "half": "float16", "fp16": "float16", "f16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float64": "float64", "double": "float64", "fp64": "float64",
    "int8": "int8", "uint8": "uint8", "int16": "int16", "int32": "int32", "int64": "int64",
    "long": "int64", "int": "int64", "bool": "bool",
}
_SPEC_RE = re.compile(
    r"^\s*(?P<name>[^:\[\]@\s]+)\s*:\s*(?P<dtype>[A-Za-z0-9_]+)\s*\[(?P<dims>[^\]]*)\]\s*"
    r"(?:@\s*(?P<low>-?[0-9.eE+]+)\s*:\s*(?P<high>-?[0-9.eE+]+))?\s*$"
)
# Memory cap for the pool of distinct batches kept ready for the timed loop.
_POOL_BYTES = 256 * 1024 * 1024


def canonical_dtype(text: str) -> str:
    """Return the canonical dtype name for ``text`` or raise :class:`InputError`."""
    key = str(text).strip().lower().replace("torch.", "").replace("tensor(", "").rstrip(")")
    if key not in _DTYPES:
        raise InputError(f"unknown dtype '{text}'; use one of: {', '.join(sorted(set(_DTYPES.values())))}")
    return _DTYPES[key]


def numpy_dtype(dtype: str) -> np.dtype:
    """The numpy dtype batches of ``dtype`` are made in (bfloat16 → float32)."""
    return np.dtype("float32" if dtype == "bfloat16" else dtype)


@dataclass(frozen=True)
class InputSpec:
    """One model input. ``shape`` holds ints and symbol names; ``low``/``high``
    bound the random values (half-open) where the default would be wrong, such as
    token ids into an embedding table."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(d for d in self.shape if isinstance(d, str))

    @property
    def has_batch(self) -> bool:
        return BATCH in self.shape

    def resolve(self, batch_size: int, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """Concrete shape for ``batch_size`` with the symbolic dims set from ``dims``."""
        dims = dims or {}
        out: list[int] = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            elif d == BATCH:
                out.append(batch_size)
            elif d in dims:
                out.append(int(dims[d]))
            else:
                raise InputError(
                    f"dim '{d}' of input '{self.name}' is symbolic; set it with --dim {d}=N "
                    f"or fix the shape with --input {self.name}:{self.dtype}[...]"
                )
        return tuple(out)

    def text(self) -> str:
        """The spec in the form ``--input`` takes."""
        s = f"{self.name}:{self.dtype}[{','.join(str(d) for d in self.shape)}]"
        if self.low is not None and self.high is not None:
            s += f"@{_num(self.low)}:{_num(self.high)}"
        return s

    def random(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        dt = numpy_dtype(self.dtype)
        if dt.kind == "b":
            return rng.integers(0, 2, size=shape).astype(bool)
        if dt.kind in "iu":
            low = int(self.low) if self.low is not None else 0
            high = int(self.high) if self.high is not None else 2
            return rng.integers(low, high, size=shape, dtype=dt)
        if self.low is not None and self.high is not None:
            return rng.uniform(self.low, self.high, size=shape).astype(dt)
        return rng.standard_normal(size=shape, dtype=np.float32).astype(dt, copy=False)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_input(text: str) -> InputSpec:
    """Parse ``name:dtype[d0,d1,...]`` (optionally ``@low:high``)."""
    m = _SPEC_RE.match(text or "")
    if not m:
        raise InputError(f"cannot read input spec '{text}'; expected {INPUT_SYNTAX}")
    dims: list[int | str] = []
    raw = m.group("dims").strip()
    for part in (p.strip() for p in raw.split(",")) if raw else ():
        if not part:
            raise InputError(f"empty dim in input spec '{text}'; expected {INPUT_SYNTAX}")
        if re.fullmatch(r"-?\d+", part):
            value = int(part)
            if value <= 0:
                raise InputError(f"dim {value} in input spec '{text}' must be a positive integer or a symbol such as B")
            dims.append(value)
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            dims.append(part)
        else:
            raise InputError(f"dim '{part}' in input spec '{text}' is neither an integer nor a symbol name")
    low = high = None
    if m.group("low") is not None:
        low, high = float(m.group("low")), float(m.group("high"))
        if not high > low:
            raise InputError(f"range @{m.group('low')}:{m.group('high')} in '{text}' is empty; HIGH must exceed LOW")
    return InputSpec(m.group("name"), m.group("dtype"), tuple(dims), low, high)


def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """Parse ``--dim seq=128`` values (also ``seq=128,heads=4``)."""
    out: dict[str, int] = {}
    for item in items or ():
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip() or not re.fullmatch(r"\s*\d+\s*", value) or int(value) <= 0:
                raise UsageError(f"cannot read --dim '{part}'; expected NAME=POSITIVE_INT such as --dim seq=128")
            out[name.strip()] = int(value)
    return out


def parse_batch_sizes(text: str | Sequence[int] | int) -> list[int]:
    """Parse ``--batch 1,8,32`` into positive integers, in the order given."""
    if isinstance(text, int) and not isinstance(text, bool):
        items: list[object] = [text]
    elif isinstance(text, str):
        items = [p.strip() for p in text.split(",")]
    else:
        items = list(text)
    out: list[int] = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            raise UsageError(f"cannot read batch size '{item}'; use positive integers such as --batch 1,8,32") from None
        if value <= 0:
            raise UsageError(f"batch size {value} is not positive; use positive integers such as --batch 1,8,32")
        if value not in out:
            out.append(value)
    if not out:
        raise UsageError("no batch size given; use positive integers such as --batch 1,8,32")
    return out


def merge_specs(model_specs: Sequence[InputSpec], user_specs: Sequence[InputSpec]) -> list[InputSpec]:
    """Inputs to feed: the model's own, each replaced by the user's spec of the same name.

    A model that declares no inputs (a plain callable) takes the user's specs as they are.
    """
    if not model_specs:
        return list(user_specs)
    by_name = {s.name: s for s in model_specs}
    for u in user_specs:
        if u.name not in by_name:
            raise InputError(
                f"model has no input '{u.name}'; its inputs are: {', '.join(s.text() for s in model_specs)}"
            )
        m = by_name[u.name]
        if u.dtype != m.dtype:
            raise InputError(
                f"input '{u.name}' is {m.dtype} in the model ({m.text()}) but --input gives {u.dtype}; "
                f"use --input {u.name}:{m.dtype}[...]"
            )
        if len(m.shape) and len(u.shape) != len(m.shape):
            raise InputError(
                f"input '{u.name}' has rank {len(m.shape)} ({m.text()}) but --input gives rank {len(u.shape)}"
            )
    users = {u.name: u for u in user_specs}
    return [users.get(s.name, s) for s in model_specs]


def load_data(path: str | Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Read ``--data``: a ``.npy`` for a single-input model, or a ``.npz`` keyed by input name.

    Axis 0 of every array is the row (sample) axis. Keys that name no input (labels)
    are ignored.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--data file '{p}' does not exist; give a .npy or .npz file of input rows")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            if len(specs) != 1:
                raise InputError(
                    f"--data '{p}' is one array but the model takes {len(specs)} inputs; "
                    f"save a .npz with keys {', '.join(s.name for s in specs)}"
                )
            arrays = {specs[0].name: arr}
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                missing = [s.name for s in specs if s.name not in z.files]
                if missing:
                    raise InputError(
                        f"--data '{p}' lacks arrays for input(s) {', '.join(missing)}; it holds {', '.join(z.files) or 'nothing'}"
                    )
                arrays = {s.name: z[s.name] for s in specs}
        else:
            raise InputError(f"--data '{p}' is neither .npy nor .npz; save rows with numpy.save or numpy.savez")
    except InputError:
        raise
    except Exception as exc:  # corrupt file, pickled object arrays, …
        raise InputError(f"cannot read --data '{p}': {exc}") from None
    rows = {len(a) if a.ndim else 0 for a in arrays.values()}
    if 0 in rows or len(rows) != 1:
        raise InputError(f"--data '{p}' arrays must share a non-empty row axis 0; found row counts {sorted(rows)}")
    return arrays


def _check_data(spec: InputSpec, arr: np.ndarray, row_shape: tuple[int, ...]) -> np.ndarray:
    want = numpy_dtype(spec.dtype)
    if arr.ndim != len(row_shape) + 1 or tuple(arr.shape[1:]) != row_shape:
        raise InputError(
            f"--data rows for '{spec.name}' have shape {tuple(arr.shape[1:])} but the model wants {row_shape} "
            f"(spec {spec.text()}); fix the data or the spec"
        )
    if arr.dtype.kind != want.kind and not (arr.dtype.kind in "iu" and want.kind in "iu"):
        raise InputError(f"--data '{spec.name}' is {arr.dtype} but the model wants {spec.dtype}; convert it with astype")
    return arr.astype(want, copy=False)


def make_batches(
    specs: Sequence[InputSpec],
    batch_size: int,
    dims: Mapping[str, int] | None = None,
    *,
    seed: int = 0,
    data: Mapping[str, np.ndarray] | None = None,
    pool: int = 4,
    pool_bytes: int = _POOL_BYTES,
) -> tuple[list[dict[str, np.ndarray]], list[str]]:
    """Make the distinct batches the timed loop cycles through, and notes about them.

    Random data: ``pool`` seeded batches (fewer if they would pass ``pool_bytes``).
    With ``data``: consecutive slices of ``batch_size`` rows, as many as the file
    holds (within ``pool_bytes``), so a row is used again only after every row was.
    Inputs without a batch dim (rare) are the same in every batch.
    """
    if not specs:
        raise InputError(f"the model's inputs are unknown; describe them with {INPUT_SYNTAX}")
    notes: list[str] = []
    shapes = {s.name: s.resolve(batch_size, dims) for s in specs}
    one_batch = sum(int(np.prod(shapes[s.name])) * numpy_dtype(s.dtype).itemsize for s in specs)
    fit = max(1, pool_bytes // max(one_batch, 1))
    batches: list[dict[str, np.ndarray]] = []
    if data is None:
        rng = np.random.default_rng(seed)
        for _ in range(max(1, min(pool, fit))):
            batches.append({s.name: s.random(shapes[s.name], rng) for s in specs})
        return batches, notes

    checked: dict[str, np.ndarray] = {}
    for s in specs:
        if s.name not in data:
            raise InputError(f"--data has no array for input '{s.name}'")
        row_shape = shapes[s.name][1:] if s.has_batch else shapes[s.name]
        arr = data[s.name]
        checked[s.name] = _check_data(s, arr, row_shape) if s.has_batch else arr.astype(numpy_dtype(s.dtype))
    n_rows = len(next(iter(checked.values())))
    if n_rows < batch_size:
        notes.append(f"--data holds {n_rows} rows, fewer than batch {batch_size}: rows repeat within a batch")
        idx = np.resize(np.arange(n_rows), batch_size)
        batches.append({k: (v[idx] if _spec(specs, k).has_batch else v) for k, v in checked.items()})
        return batches, notes
    n_batches = n_rows // batch_size
    if n_batches > fit:
        notes.append(f"--data holds {n_batches} batches of {batch_size}; {fit} are kept in memory and cycled")
        n_batches = fit
    for i in range(n_batches):
        sl = slice(i * batch_size, (i + 1) * batch_size)
        batches.append({k: (np.ascontiguousarray(v[sl]) if _spec(specs, k).has_batch else v) for k, v in checked.items()})
    return batches, notes


def _spec(specs: Sequence[InputSpec], name: str) -> InputSpec:
    return next(s for s in specs if s.name == name)
