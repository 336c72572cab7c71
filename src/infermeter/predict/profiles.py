"""Hardware profiles as YAML: in the store, in files, and shipped with infermeter.

YAML because a profile is read and kept by people too (a reference machine's
profile lives in the repository beside its source). The text round-trips
exactly: ``profile_from_yaml(profile_to_yaml(p)) == p``. A malformed profile is
a :class:`~infermeter.errors.UsageError` naming the field, so a hand-edited or
truncated file says where it is wrong.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import OutputError, UsageError
from .schema import HardwareProfile, HardwareSpec

__all__ = [
    "SCHEMA",
    "profile_to_yaml",
    "profile_from_yaml",
    "save_profile",
    "stored_profiles",
    "spec_of_profile",
    "load_profile",
    "read_profile_file",
    "write_profile_file",
    "reference_profiles",
    "profile_summary",
]

# infermeter.hardware/1: the first version (HardwareProfile in predict/schema.py).
SCHEMA = "infermeter.hardware/1"
_HEADER = "# infermeter hardware profile ({schema}); made by `infermeter calibrate`, read by `infermeter predict`\n"


def profile_to_yaml(p: HardwareProfile) -> str:
    """YAML text of ``p``: block style, GEMM shapes inline, fields in schema order."""
    import yaml

    data = p.model_dump(mode="json", by_alias=True)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=160, allow_unicode=True)
    return _HEADER.format(schema=p.schema_) + body


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def profile_from_yaml(text: str, *, source: str = "hardware profile") -> HardwareProfile:
    """Parse a profile; ``source`` (a path, a store name) goes into error messages."""
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{source} is not valid YAML{at}: {problem}; fix the file or recalibrate with `infermeter calibrate`") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source} is not a hardware profile (expected a mapping of fields, got {type(data).__name__}); recalibrate with `infermeter calibrate`")
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise UsageError(f"{source} has schema '{schema}', but this infermeter reads '{SCHEMA}'; recalibrate with `infermeter calibrate` or upgrade infermeter")
    try:
        return HardwareProfile.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        first = errs[0]
        got = first.get("input")
        shown = "" if isinstance(got, (dict, list)) or first.get("type") == "missing" else f" (got {got!r:.60})"
        more = f"; and {len(errs) - 1} more problem(s)" if len(errs) > 1 else ""
        raise UsageError(
            f"{source}: field {_where(tuple(first['loc']))}: {first['msg'].lower()}{shown}{more}; fix it or recalibrate with `infermeter calibrate`"
        ) from None


def save_profile(store: Any, p: HardwareProfile) -> None:
    """Keep ``p`` in the store under its name (older profiles of that name stay)."""
    store.save_hardware(p.name, profile_to_yaml(p), created=p.created)


def load_profile(store: Any, name: str | None = None) -> HardwareProfile | None:
    """The newest stored profile (named ``name``, or any); None when there is none."""
    text = store.hardware(name)
    if text is None:
        return None
    return profile_from_yaml(text, source=f"stored hardware profile {name or ''}".rstrip())


def stored_profiles(store: Any) -> list[HardwareProfile]:
    """The newest stored profile of every name, newest first; [] without a store."""
    if store is None:
        return []
    out = []
    for name in dict.fromkeys(n for n, _ in store.list_hardware()):
        p = load_profile(store, name)
        if p is not None:
            out.append(p)
    return out


def spec_of_profile(p: HardwareProfile) -> HardwareSpec | None:
    """The spec-sheet entry a calibrated machine is, when its device or profile name
    is one of the table's names or aliases (``NVIDIA H100 80GB HBM3``)."""
    from .hardware import find_spec

    return (find_spec(p.device_name) if p.device_name else None) or find_spec(p.name)


def read_profile_file(path: str | os.PathLike[str]) -> HardwareProfile:
    """A profile from a YAML file (``infermeter calibrate --out``, or a shipped one)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read hardware profile {p}: {exc.strerror or exc}; give the path of a YAML file written by `infermeter calibrate --out`") from None
    return profile_from_yaml(text, source=str(p))


def write_profile_file(path: str | os.PathLike[str], p: HardwareProfile) -> Path:
    """Write ``p`` as YAML to ``path``; an unwritable path is an :class:`OutputError`."""
    out = Path(path)
    try:
        out.write_text(profile_to_yaml(p), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}; choose a writable path for --out") from None
    return out


def reference_profiles() -> list[HardwareProfile]:
    """Profiles calibrated on real machines and shipped in ``predict/profiles/*.yaml``, by name."""
    folder = resources.files(__package__ or "infermeter.predict").joinpath("profiles")
    if not folder.is_dir():
        return []
    found = [profile_from_yaml(f.read_text(encoding="utf-8"), source=f"shipped profile {f.name}") for f in folder.iterdir() if f.name.endswith(".yaml")]
    return sorted(found, key=lambda p: p.name)


# ---------------------------------------------------------------------------- summary (data; report/ renders it)


def profile_summary(p: HardwareProfile) -> dict[str, Any]:
    """The headline figures of a profile, as plain data (rates in FLOP/s, B/s, seconds).

    ``gemm``: per dtype the best grid point and the best at M=1; ``conv``: per
    (kind, dtype) the best; ``bandwidth``: per cache level (and DRAM) the rate
    of each kind at the largest working set measured that fits in half of that
    level (DRAM: the largest measured); ``overhead``: per backend and threads.
    """
    gemm: dict[str, dict[str, Any]] = {}
    for dt in sorted({g.dtype for g in p.gemm}):
        pts = [g for g in p.gemm if g.dtype == dt and g.gemm.batch == 1]
        best = max(pts, key=lambda g: g.flops_per_s, default=None)
        m1 = [g for g in pts if g.gemm.m == 1]
        best1 = max(m1, key=lambda g: g.flops_per_s, default=None)
        gemm[dt] = {
            "best": best.flops_per_s if best else None,
            "best_shape": _shape(best) if best else "",
            "m1_best": best1.flops_per_s if best1 else None,
            "m1_shape": _shape(best1) if best1 else "",
            "m1_median": sorted(g.flops_per_s for g in m1)[len(m1) // 2] if m1 else None,
            "points": len([g for g in p.gemm if g.dtype == dt]),
        }
    conv: dict[str, dict[str, Any]] = {}
    for r in p.conv:
        key = f"{r.kind} {r.dtype}"
        if key not in conv or r.flops_per_s > conv[key]["best"]:
            conv[key] = {"best": r.flops_per_s, "label": r.label}
    levels: list[tuple[str, int | None]] = [(k, v) for k, v in sorted(p.caches.items(), key=lambda kv: kv[1])]
    levels.append(("DRAM" if p.kind == "cpu" else "HBM", None))
    bandwidth: list[dict[str, Any]] = []
    sizes = sorted({b.bytes for b in p.bandwidth if b.kind == "copy"})
    for level, size in levels:
        fit = [s for s in sizes if size is None or s <= size // 2]
        if not fit or (size is None and p.caches and fit[-1] <= max(p.caches.values())):
            continue
        ws = fit[-1]
        row: dict[str, Any] = {"level": level, "cache_bytes": size, "working_set": ws}
        for b in p.bandwidth:
            if abs(b.bytes - ws) <= 0.01 * ws:  # other kinds' sizes round to whole elements and rows
                row[b.kind] = b.bytes_per_s
        bandwidth.append(row)
    overhead = [{"backend": o.backend, "threads": o.threads, "seconds": o.seconds, "spread": o.spread} for o in p.overhead]
    return {
        "name": p.name,
        "device": p.device,
        "device_name": p.device_name,
        "threads": p.threads,
        "dtypes": p.dtypes,
        "skipped_dtypes": dict(p.env.get("skipped_dtypes") or {}),
        "created": p.created.isoformat(timespec="seconds"),
        "duration_s": p.duration_s,
        "source": p.source,
        "gemm": gemm,
        "conv": conv,
        "bandwidth": bandwidth,
        "overhead": overhead,
        "skipped_count": int(p.env.get("skipped_count") or 0),
    }


def _shape(r: Any) -> str:
    g = r.gemm
    return f"{g.m}x{g.n}x{g.k}" + (f" x{g.batch}" if g.batch > 1 else "")
