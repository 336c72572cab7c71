"""``infermeter implied``: what published throughput, FLOPs and params imply about latency."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app, handle_errors
from .options import DebugOpt, StoreOpt

_SI = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "g": 1e9, "B": 1e9, "b": 1e9, "T": 1e12, "t": 1e12, "P": 1e15, "p": 1e15}
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]?)$")


def parse_si(text: Optional[str], flag: str) -> Optional[float]:
    """``8.7G`` → 8.7e9, ``110M`` → 1.1e8, ``7B`` → 7e9, ``30,000`` → 30000, ``1.5e3`` → 1500.

    Suffixes: k, M, G, T, P (and B for billion, as in "7B params"). A lower-case
    ``m`` is refused: milli or mega cannot be told apart.
    """
    from ..errors import UsageError

    if text is None:
        return None
    t = str(text).strip().replace(",", "").replace("_", "")
    m = _NUMBER.match(t)
    if m is None:
        raise UsageError(f"cannot read {flag} '{text}'; write a number with an optional suffix k, M, G, T or P, such as 8.7G")
    value, suffix = float(m.group(1)), m.group(2)
    if not suffix:
        return value
    if suffix == "m":
        raise UsageError(f"{flag} '{text}': 'm' could mean milli or mega; write M for million (110M)")
    if suffix not in _SI:
        raise UsageError(f"{flag} '{text}': unknown suffix '{suffix}'; use k, M, G, T or P (B = billion)")
    return value * _SI[suffix]


def _parse_int(text: Optional[str], flag: str) -> Optional[int]:
    from ..errors import UsageError

    value = parse_si(text, flag)
    if value is None:
        return None
    if value != int(value):
        raise UsageError(f"{flag} {text} must be a whole number of samples")
    return int(value)


def _parse_efficiency(text: Optional[str]) -> Optional[float]:
    from ..errors import UsageError

    if text is None:
        return None
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"cannot read --max-efficiency '{text}'; give a percentage (75%) or a fraction (0.75)") from None
    return value


def _profile_efficiency(store_path: Optional[Path]) -> tuple[Optional[float], str]:
    """Best GEMM FLOP/s / spec peak over calibrated profiles that match a table entry.

    Reference profiles ship with ``predict.profiles`` (when that module is
    installed); stored ones are read only when the store already exists (this
    command never creates one). A profile whose name or device matches no
    table entry cannot be put against a peak and is skipped.
    """
    from ..predict.hardware import normalize_dtype
    from ..predict.schema import HardwareProfile

    profiles: list[HardwareProfile] = []
    try:
        from ..predict import profiles as _profiles  # optional: absent or broken means no reference
    except Exception:  # noqa: BLE001
        return None, "no calibrated profiles available"
    try:
        profiles += _profiles.reference_profiles()
    except Exception:  # noqa: BLE001 - a broken shipped profile must not stop a paper check
        pass
    try:
        from ..store import Store, default_store_path

        path = store_path or default_store_path()
        if path.is_file():
            with Store(path) as store:
                profiles += _profiles.stored_profiles(store)
    except Exception:  # noqa: BLE001 - an unreadable store must not stop a paper check
        pass
    best: Optional[float] = None
    where = ""
    for p in profiles:
        spec = _profiles.spec_of_profile(p)
        if spec is None:
            continue
        for point in p.gemm:
            try:
                peak = spec.peak_flops.get(normalize_dtype(point.dtype))
            except Exception:  # noqa: BLE001 - a dtype the table does not know
                continue
            if not peak:
                continue
            eff = point.flops_per_s / peak
            if eff <= 1 and (best is None or eff > best):
                best, where = eff, f"profile '{p.name}' ({spec.name}, {point.dtype} GEMM {point.gemm.m}x{point.gemm.n}x{point.gemm.k})"
    if best is None:
        return None, "no calibrated profile matches a spec-sheet entry"
    return best, f"suspicious above {best:.0%}: the best GEMM efficiency of a calibrated machine, {where}"


@app.command()
@handle_errors
def implied(
    throughput: Annotated[Optional[str], typer.Option("--throughput", help="published samples/s (SI suffixes: 3k, 1.2M)")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", "-b", help="samples per batch (per request with --concurrency)")] = None,
    concurrency: Annotated[Optional[str], typer.Option("--concurrency", help="requests in flight, each of --batch samples")] = None,
    latency_ms: Annotated[Optional[str], typer.Option("--latency-ms", help="published latency of one batch/request, ms")] = None,
    flops: Annotated[Optional[str], typer.Option("--flops", help="FLOPs per sample (8.7G); FLOPs = 2 x MACs")] = None,
    macs: Annotated[Optional[str], typer.Option("--macs", help="MACs per sample (4.35G), instead of --flops")] = None,
    params: Annotated[Optional[str], typer.Option("--params", help="parameter count (110M, 7B)")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="float32, tf32, bfloat16, float16, float8, int8 (or fp16, bf16 …)")] = None,
    hardware: Annotated[Optional[str], typer.Option("--hardware", help="a name from `infermeter hardware`, or a YAML/JSON file")] = None,
    peak_tflops: Annotated[Optional[str], typer.Option("--peak-tflops", help="peak TFLOP/s for --dtype; overrides the table's")] = None,
    bandwidth_gbs: Annotated[Optional[str], typer.Option("--bandwidth-gbs", help="memory bandwidth GB/s; overrides the table's")] = None,
    max_efficiency: Annotated[
        Optional[str],
        typer.Option("--max-efficiency", help="flag utilisation above this as suspicious (75% or 0.75); default: calibrated profiles"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print as JSON (Implied: figures with formulas, flags)")] = False,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """What inference time do published figures imply, and can they be true?

    From any of throughput at a batch size or concurrency, a latency, FLOPs or
    MACs per sample, params and dtype, and hardware (table name, file, or peaks),
    derive the latency per batch (Little's law with --concurrency), lower bounds
    from compute and from weight traffic, and the utilisation the claim implies;
    each figure shows its formula.

    Exit status: 0 when the figures could be put together, whatever the verdict
    (an 'impossible' claim is a finding, printed as such, not a failure of the
    command); 2 when they contradict each other (FLOPs vs MACs, latency vs
    throughput and batch), are not positive, or give nothing to derive.
    """
    from rich.console import Console

    from ..predict.implied import Claim, implied as derive

    lat = parse_si(latency_ms, "--latency-ms")
    peak = parse_si(peak_tflops, "--peak-tflops")
    bw = parse_si(bandwidth_gbs, "--bandwidth-gbs")
    fields: dict[str, Any] = dict(
        throughput_samples_per_s=parse_si(throughput, "--throughput"),
        batch_size=_parse_int(batch, "--batch"),
        concurrency=parse_si(concurrency, "--concurrency"),
        latency_s=None if lat is None else lat / 1e3,
        flops_per_sample=parse_si(flops, "--flops"),
        macs_per_sample=parse_si(macs, "--macs"),
        params=parse_si(params, "--params"),
        dtype=dtype,
        hardware=hardware,
        peak_flops=None if peak is None else peak * 1e12,
        memory_bandwidth=None if bw is None else bw * 1e9,
        max_efficiency=_parse_efficiency(max_efficiency),
    )
    if fields["max_efficiency"] is None:
        # None leaves the check off; the result's own info flag says so
        fields["max_efficiency"], note = _profile_efficiency(store)
    else:
        note = f"suspicious above {fields['max_efficiency']:.0%} (--max-efficiency)"
    result = derive(Claim(**fields))
    if json_out:
        typer.echo(result.model_dump_json(indent=2))
        return
    from ..report.implied_table import render_implied

    # where the 'suspicious' threshold came from matters only when utilisation was derived
    used = result.claim.max_efficiency is not None and result.figure("implied compute utilisation") is not None
    notes = [note] if used else []
    render_implied(result, Console(highlight=False), notes=notes)
