"""The shipped spec-sheet table (``hardware.yaml``) and users' hardware files.

``--hardware NAME|FILE`` resolves here: a name or alias from the table (case,
spaces, dashes and underscores do not matter), or a YAML/JSON file holding one
:class:`HardwareSpec`. Spec sheets give peaks, not what kernels attain; code
that predicts from them says so (``predict/machine.py``).

The table is read once, on first use (not at import), and validated: every
entry must name its source with a URL, list only known dtypes and positive
figures. A broken shipped table is our bug and raises ``RuntimeError``; a
broken user file is the user's to fix and raises :class:`UsageError` naming the
field and the file.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import UsageError
from .schema import HardwareSpec

__all__ = [
    "DTYPES",
    "DTYPE_BYTES",
    "normalize_dtype",
    "table",
    "find_spec",
    "get_spec",
    "load_spec_file",
    "peak_for",
]

#: dtypes a peak may be listed for, in display order (widest first).
DTYPES: tuple[str, ...] = ("float64", "float32", "tf32", "bfloat16", "float16", "float8", "int8")

#: bytes per element, for weight traffic (tf32 is stored as float32).
DTYPE_BYTES: dict[str, float] = {
    "float64": 8,
    "float32": 4,
    "tf32": 4,
    "bfloat16": 2,
    "float16": 2,
    "float8": 1,
    "int8": 1,
}

_DTYPE_ALIASES: dict[str, str] = {
    **{d: d for d in DTYPES},
    "fp64": "float64", "f64": "float64", "double": "float64",
    "fp32": "float32", "f32": "float32", "float": "float32", "single": "float32",
    "tensorfloat32": "tf32",
    "bf16": "bfloat16",
    "fp16": "float16", "f16": "float16", "half": "float16",
    "fp8": "float8", "float8_e4m3fn": "float8", "float8_e5m2": "float8", "e4m3": "float8", "e5m2": "float8",
    "fp8_e4m3": "float8", "fp8_e5m2": "float8",
    "i8": "int8", "s8": "int8", "uint8": "int8", "u8": "int8", "qint8": "int8", "quint8": "int8",
}

_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def normalize_dtype(dtype: str) -> str:
    """``bf16``, ``torch.bfloat16``, ``BFloat16`` → ``bfloat16``; unknown → UsageError.

    One spelling per dtype, so peaks from a table, a user file and a CLI flag meet.
    """
    key = str(dtype).strip().lower().removeprefix("torch.").removeprefix("np.").removeprefix("numpy.")
    if key in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[key]
    raise UsageError(f"unknown dtype '{dtype}'; use one of {', '.join(DTYPES)} (or fp32, bf16, fp16, fp8 …)")


def _norm_name(text: str) -> str:
    """Case, spaces, dashes, dots and underscores do not distinguish hardware names; '+' does (8480 vs 8480+)."""
    return re.sub(r"[^a-z0-9+]", "", str(text).lower())


# ---------------------------------------------------------------------------- validation


def _problems(spec: HardwareSpec, *, shipped: bool) -> list[str]:
    """What is wrong with an otherwise well-typed spec (empty when nothing)."""
    out: list[str] = []
    if not spec.peak_flops:
        out.append("field 'peak_flops': list at least one dtype's peak, e.g. {float32: 19.5e+12}")
    for key, value in spec.peak_flops.items():
        if shipped and key not in DTYPES:
            out.append(f"field 'peak_flops.{key}': not one of {', '.join(DTYPES)}")
        if not value > 0:
            out.append(f"field 'peak_flops.{key}': {value} must be a positive FLOP/s figure")
    if not spec.memory_bandwidth > 0:
        out.append(f"field 'memory_bandwidth': {spec.memory_bandwidth} must be positive bytes/s, e.g. 2.0e+12")
    if spec.memory_bytes is not None and spec.memory_bytes <= 0:
        out.append("field 'memory_bytes': must be positive bytes (or left out)")
    for level, size in spec.caches.items():
        if size <= 0:
            out.append(f"field 'caches.{level}': must be positive bytes")
    if not spec.source.strip():
        out.append("field 'source': say where the figures come from (document and URL)")
    if shipped and "http" not in spec.source:
        out.append("field 'source': the shipped table names a URL for every entry")
    return out


def _normalized_peaks(spec: HardwareSpec, where: str) -> HardwareSpec:
    """User files may write ``fp16``/``bf16``; the table speaks one dtype language."""
    peaks: dict[str, float] = {}
    for key, value in spec.peak_flops.items():
        try:
            d = normalize_dtype(key)
        except UsageError:
            raise UsageError(f"{where}: field 'peak_flops.{key}' is not a known dtype; use one of {', '.join(DTYPES)}") from None
        if d in peaks:
            raise UsageError(f"{where}: field 'peak_flops' lists {d} twice (as '{key}' and another spelling); keep one")
        peaks[d] = value
    return spec.model_copy(update={"peak_flops": peaks})


# ---------------------------------------------------------------------------- the shipped table


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[HardwareSpec, ...]:
    text = resources.files("infermeter.predict").joinpath("hardware.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    entries = data.get("hardware") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RuntimeError("infermeter's hardware.yaml has no 'hardware:' list; the installation is broken")
    specs: list[HardwareSpec] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(entries):
        try:
            spec = HardwareSpec.model_validate(raw)
        except ValidationError as exc:
            raise RuntimeError(f"hardware.yaml entry {i}: {_first_error(exc)}") from None
        bad = _problems(spec, shipped=True)
        if bad:
            raise RuntimeError(f"hardware.yaml entry '{spec.name}': {bad[0]}")
        for label in (spec.name, *spec.aliases):
            key = _norm_name(label)
            if key in seen and seen[key] != spec.name:
                raise RuntimeError(f"hardware.yaml: '{label}' names both {seen[key]} and {spec.name}")
            seen[key] = spec.name
        specs.append(spec)
    return tuple(specs)


def table() -> list[HardwareSpec]:
    """Every entry of the shipped table, in file order (copies: change them freely)."""
    return [s.model_copy(deep=True) for s in _shipped()]


def find_spec(name: str) -> HardwareSpec | None:
    """The entry whose name or alias matches ``name`` exactly (after normalising), or None.

    Also matches the device names drivers report when they are listed as aliases
    (``NVIDIA H100 80GB HBM3``, ``Tesla T4``), so calibrated profiles find their spec sheet.
    """
    key = _norm_name(name)
    if not key:
        return None
    for spec in _shipped():
        if key in {_norm_name(x) for x in (spec.name, *spec.aliases)}:
            return spec.model_copy(deep=True)
    return None


def _close_names(name: str, n: int = 5) -> list[str]:
    key = _norm_name(name)
    labels: dict[str, str] = {}
    for spec in _shipped():
        for label in (spec.name, *spec.aliases):
            labels.setdefault(_norm_name(label), spec.name)
    # names that contain what was typed ("xeon", "h100") first; spelling neighbours only if none
    hits = [labels[k] for k in labels if key and (key in k or (len(k) >= 3 and k in key))]
    if not hits:
        hits = [labels[k] for k in difflib.get_close_matches(key, list(labels), n=n, cutoff=0.5)]
    return list(dict.fromkeys(hits))[:n]


def _looks_like_path(text: str) -> bool:
    return text.lower().endswith(_FILE_SUFFIXES) or "/" in text or "\\" in text


def get_spec(name_or_path: str | Path) -> HardwareSpec:
    """A table entry by name or alias, or the one entry of a YAML/JSON file.

    Text that looks like a path (a .yaml/.yml/.json suffix or a directory part) is
    always read as a file; other text is a name first, and a file of that name second.
    """
    text = str(name_or_path).strip()
    if not text:
        raise UsageError("--hardware is empty; give a name from `infermeter hardware` or a YAML/JSON file")
    if isinstance(name_or_path, Path) or _looks_like_path(text):
        return load_spec_file(Path(text))
    spec = find_spec(text)
    if spec is not None:
        return spec
    if Path(text).is_file():
        return load_spec_file(Path(text))
    close = _close_names(text)
    hint = f"close: {', '.join(close)}; " if close else ""
    raise UsageError(
        f"unknown hardware '{text}'; {hint}`infermeter hardware` lists all, "
        "or give a YAML/JSON file holding one entry"
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field '{field}': {err.get('msg', 'invalid')}{more}"


def load_spec_file(path: Path) -> HardwareSpec:
    """One :class:`HardwareSpec` from a YAML or JSON file; any problem is one UsageError line."""
    where = f"hardware file {path}"
    if not path.is_file():
        raise UsageError(f"{where} does not exist; give an existing file or a name from `infermeter hardware`")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {where}: {exc}") from None
    data: Any
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{where} is not valid YAML: {at}{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{where} must hold one hardware entry, a mapping with name, kind, peak_flops, "
            f"memory_bandwidth and source; it holds a {type(data).__name__}"
        )
    try:
        spec = HardwareSpec.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{where}: {_first_error(exc)}; `infermeter hardware t4 --json` shows a valid entry") from None
    spec = _normalized_peaks(spec, where)
    bad = _problems(spec, shipped=False)
    if bad:
        raise UsageError(f"{where}: {bad[0]}")
    return spec


# ---------------------------------------------------------------------------- lookups


def peak_for(spec: HardwareSpec, dtype: str) -> float:
    """Dense peak FLOP/s of ``spec`` for ``dtype``; a dtype it lists no peak for is an error.

    No silent fallback to another dtype: a bfloat16 claim judged against a float32
    peak would call a plausible figure impossible.
    """
    d = normalize_dtype(dtype)
    if d in spec.peak_flops:
        return float(spec.peak_flops[d])
    listed = ", ".join(spec.peak_flops) or "none"
    raise UsageError(
        f"{spec.name} lists no {d} peak (it lists {listed}); choose one of those dtypes "
        "or give the peak yourself (--peak-tflops)"
    )
