"""What published figures imply: latency from throughput, lower bounds from the
roofline, utilisation of the hardware, and claims that cannot be true.

Papers and vendors publish throughput at a batch size, FLOPs or MACs, params
and a chip; they rarely publish the latency a user would see, and rarely check
that their throughput fits under the chip's peak. :func:`implied` derives both,
and every figure it derives carries the formula (with the numbers put in) it
came from, so a reader can check it by hand.

Model of the claim, stated once:
  * ``concurrency`` is requests in flight, each of ``batch_size`` samples (the
    meaning Triton's perf_analyzer gives it); with neither, one batch of
    ``batch_size`` (default 1) is in flight at a time. Samples in flight
    N = concurrency × batch.
  * Little's law: latency = N / throughput.
  * compute lower bound = N × FLOPs per sample / peak FLOP/s;
    memory lower bound = weight bytes / bandwidth, weights read once per N
    samples in flight (activations, KV cache and re-reads are ignored: both are
    lower bounds, so a claim under them is impossible, not merely optimistic).
  * FLOPs = 2 × MACs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UsageError
from .hardware import DTYPE_BYTES, get_spec, normalize_dtype, peak_for
from .schema import HardwareSpec

__all__ = ["Claim", "Derived", "Flag", "Implied", "implied", "FLOPS_MACS_TOLERANCE", "LATENCY_TOLERANCE"]

FLOPS_MACS_TOLERANCE = 0.01  # FLOPs and MACs both given must agree to 1% (FLOPs = 2 × MACs)
LATENCY_TOLERANCE = 0.05  # a published latency must match Little's law to 5%


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Claim(_Model):
    """Published figures to check; give any subset. Units: seconds, samples/s, FLOP/s, B/s."""

    throughput_samples_per_s: float | None = None
    batch_size: int | None = Field(None, description="samples per batch (per request when concurrency is given)")
    concurrency: float | None = Field(None, description="requests in flight, each of batch_size samples")
    latency_s: float | None = Field(None, description="published latency of one batch/request")
    flops_per_sample: float | None = None
    macs_per_sample: float | None = None
    params: float | None = None
    dtype: str | None = None
    hardware: str | HardwareSpec | None = Field(None, description="table name, file path, or a HardwareSpec")
    peak_flops: float | None = Field(None, description="overrides the table's peak for dtype")
    memory_bandwidth: float | None = Field(None, description="B/s; overrides the table's")
    max_efficiency: float | None = Field(
        None, description="best GEMM FLOP/s / peak any calibrated machine reached; None: no 'suspicious' check"
    )


class Derived(_Model):
    """One derived figure and how it was derived."""

    name: str
    value: float
    unit: str = Field(description="s, samples/s, FLOP, FLOP/s, B, B/s, samples, or ratio (a fraction, 1 = 100%)")
    formula: str
    inputs: dict[str, float | str] = Field(default_factory=dict)


class Flag(_Model):
    level: Literal["impossible", "suspicious", "info"]
    message: str


class Implied(_Model):
    """Everything :func:`implied` derived from one claim."""

    claim: Claim
    hardware: str | None = None
    hardware_source: str | None = None
    dtype: str | None = None
    figures: list[Derived] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)

    def figure(self, name: str) -> Derived | None:
        return next((f for f in self.figures if f.name == name), None)

    @property
    def verdict(self) -> str:
        """'impossible', 'suspicious' or 'plausible' (the worst flag decides)."""
        levels = {f.level for f in self.flags}
        for level in ("impossible", "suspicious"):
            if level in levels:
                return level
        return "plausible"


# ---------------------------------------------------------------------------- formatting of formulas


def num(x: float) -> str:
    """Compact number for formulas: 3000, 8.7e9, 0.002667."""
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    text = f"{x:.6g}" if 1 <= abs(x) < 1e6 else f"{x:.4g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text


# ---------------------------------------------------------------------------- checks


_LABELS = {
    "throughput_samples_per_s": "throughput (samples/s)", "batch_size": "batch size", "concurrency": "concurrency",
    "latency_s": "latency", "flops_per_sample": "FLOPs per sample", "macs_per_sample": "MACs per sample",
    "params": "params", "peak_flops": "peak FLOP/s", "memory_bandwidth": "memory bandwidth",
    "max_efficiency": "max efficiency",
}


def _check_positive(claim: Claim) -> None:
    for field, label in _LABELS.items():
        value = getattr(claim, field)
        if value is not None and not value > 0:
            raise UsageError(f"{label} is {num(value)}; it must be a positive number")
    if claim.max_efficiency is not None and claim.max_efficiency > 1:
        raise UsageError(f"max efficiency {claim.max_efficiency} is above 1 (100% of peak); give a fraction such as 0.8")


def _flops(claim: Claim, out: list[Derived]) -> float | None:
    f, m = claim.flops_per_sample, claim.macs_per_sample
    if f is not None and m is not None:
        if abs(f / (2 * m) - 1) > FLOPS_MACS_TOLERANCE:
            raise UsageError(
                f"FLOPs per sample {num(f)} and MACs per sample {num(m)} disagree: FLOPs = 2 x MACs = {num(2 * m)} "
                f"(to {FLOPS_MACS_TOLERANCE:.0%}); give only one, and check whether the paper's 'FLOPs' are MACs"
            )
        return f
    if m is not None:
        out.append(Derived(name="FLOPs per sample", value=2 * m, unit="FLOP",
                           formula=f"FLOPs = 2 x MACs = 2 x {num(m)} (a multiply-add is two operations)",
                           inputs={"macs_per_sample": m}))
        return 2 * m
    return f


def _spec(claim: Claim) -> HardwareSpec | None:
    if claim.hardware is None:
        return None
    if isinstance(claim.hardware, HardwareSpec):
        return claim.hardware
    return get_spec(claim.hardware)


# ---------------------------------------------------------------------------- the derivation


@dataclass
class _Machine:
    """The peak and bandwidth a claim is judged against, and where each came from."""

    peak: float | None = None
    peak_note: str = ""
    bw: float | None = None
    bw_note: str = ""


def _machine(claim: Claim, spec: HardwareSpec | None, dtype: str | None, flags: list[Flag]) -> _Machine:
    """Explicit figures override the spec sheet's, and the formula text says so."""
    m = _Machine()
    if claim.peak_flops is not None:
        m.peak = claim.peak_flops
        listed = spec.peak_flops.get(dtype) if spec is not None and dtype is not None else None
        m.peak_note = f"peak given: overrides the spec sheet's {num(listed)}" if listed else "peak given"
    elif spec is not None and dtype is not None:
        m.peak = peak_for(spec, dtype)  # a dtype the hardware lists no peak for is an error
        m.peak_note = f"spec-sheet {dtype} peak, dense"
    elif spec is not None:
        flags.append(Flag(level="info", message=(
            f"no dtype given, so no peak of {spec.name} applies (it lists {', '.join(spec.peak_flops)}); "
            "give the dtype to get the compute bound and utilisation")))
    if claim.memory_bandwidth is not None:
        m.bw = claim.memory_bandwidth
        m.bw_note = f"bandwidth given: overrides the spec sheet's {num(spec.memory_bandwidth)}" if spec else "bandwidth given"
    elif spec is not None:
        m.bw, m.bw_note = spec.memory_bandwidth, "spec-sheet bandwidth"
    return m


def implied(claim: Claim) -> Implied:
    """Derive latency, bounds and utilisation from ``claim``; flag what cannot be.

    Raises :class:`UsageError` (one line) for contradictory or unusable input:
    non-positive figures, FLOPs and MACs not in ratio 2, a latency that Little's
    law cannot reconcile with throughput and batch/concurrency, a dtype the
    hardware lists no peak for, or nothing to derive.
    """
    _check_positive(claim)
    figs: list[Derived] = []
    flags: list[Flag] = []
    flops = _flops(claim, figs)
    spec = _spec(claim)
    dtype = normalize_dtype(claim.dtype) if claim.dtype else None
    mach = _machine(claim, spec, dtype, flags)

    def add(name: str, value: float, unit: str, formula: str, **inputs: float | str) -> None:
        figs.append(Derived(name=name, value=value, unit=unit, formula=formula, inputs=inputs))

    # --- samples in flight and latency (Little's law)
    x, lat = claim.throughput_samples_per_s, claim.latency_s
    b, c = claim.batch_size or 1, claim.concurrency
    in_flight_given = claim.batch_size is not None or c is not None
    n = (c or 1) * b
    n_text = f"{num(c)} requests x batch {b}" if c is not None else f"batch {b}, one in flight"
    if x is not None and lat is not None:
        if in_flight_given:
            _check_little(x, lat, n, b, n_text)
        else:
            n, n_text = x * lat, "from Little's law"
            add("samples in flight", n, "samples", f"N = throughput x latency = {num(x)} x {num(lat)} s (Little's law)",
                throughput_samples_per_s=x, latency_s=lat)
    elif x is not None:
        lat = n / x
        if c is not None:
            add("request latency", lat, "s", f"L = concurrency x batch / throughput = {num(c)} x {b} / {num(x)} (Little's law)",
                concurrency=c, batch_size=b, throughput_samples_per_s=x)
        else:
            add("batch latency", lat, "s", f"L = batch / throughput = {b} / {num(x)} (one batch in flight; each sample waits L)",
                batch_size=b, throughput_samples_per_s=x)
    elif lat is not None:
        x = n / lat
        add("implied throughput", x, "samples/s", f"X = N / latency = {num(n)} / {num(lat)} s (Little's law; N: {n_text})",
            samples_in_flight=n, latency_s=lat)
    if x is not None:
        add("time per sample", 1 / x, "s", f"1 / throughput = 1 / {num(x)} (amortised, not a latency unless N = 1)",
            throughput_samples_per_s=x)
    if not in_flight_given and (x is None or lat is None):
        flags.append(Flag(level="info", message="no batch size or concurrency given: batch 1, one request in flight, assumed"))

    # --- roofline lower bounds at N samples in flight
    compute_s = memory_s = weights = None
    if flops is not None and mach.peak is not None:
        compute_s = n * flops / mach.peak
        add("compute lower bound", compute_s, "s", f"N x FLOPs / peak = {num(n)} x {num(flops)} / {num(mach.peak)} ({mach.peak_note})",
            samples_in_flight=n, flops_per_sample=flops, peak_flops=mach.peak)
        add("compute-bound max throughput", mach.peak / flops, "samples/s", f"peak / FLOPs = {num(mach.peak)} / {num(flops)}",
            peak_flops=mach.peak, flops_per_sample=flops)
    if claim.params is not None and dtype is not None:
        weights = claim.params * DTYPE_BYTES[dtype]
        add("weight bytes", weights, "B", f"params x bytes = {num(claim.params)} x {num(DTYPE_BYTES[dtype])} ({dtype})",
            params=claim.params, dtype=dtype)
    elif claim.params is not None:
        flags.append(Flag(level="info", message="params given without a dtype: give it to get weight bytes and the memory bound"))
    if weights is not None and mach.bw is not None:
        memory_s = weights / mach.bw
        add("memory lower bound", memory_s, "s",
            f"weights / bandwidth = {num(weights)} / {num(mach.bw)} (read once per N samples; {mach.bw_note})",
            weight_bytes=weights, memory_bandwidth=mach.bw)
        add("memory-bound max throughput", n * mach.bw / weights, "samples/s",
            f"N x bandwidth / weights = {num(n)} x {num(mach.bw)} / {num(weights)}",
            samples_in_flight=n, memory_bandwidth=mach.bw, weight_bytes=weights)
    if compute_s is not None and memory_s is not None:
        bound = "compute" if compute_s >= memory_s else "memory"
        add("roofline lower bound", max(compute_s, memory_s), "s",
            f"max(compute, memory) = max({num(compute_s)}, {num(memory_s)}) s: {bound}-bound",
            compute_s=compute_s, memory_s=memory_s)
    if x is None and compute_s is None and memory_s is None:
        raise UsageError(
            "nothing to derive from these figures: give a throughput (with batch size or concurrency) or a latency, "
            "FLOPs or MACs per sample with hardware or a peak, or params with a dtype and hardware or a bandwidth"
        )

    # --- utilisation the claim implies, and what that says about it
    if x is not None and flops is not None:
        rate = flops * x
        add("implied FLOP/s", rate, "FLOP/s", f"FLOPs x throughput = {num(flops)} x {num(x)}",
            flops_per_sample=flops, throughput_samples_per_s=x)
        if mach.peak is not None:
            util = rate / mach.peak
            add("implied compute utilisation", util, "ratio",
                f"implied FLOP/s / peak = {num(rate)} / {num(mach.peak)} ({mach.peak_note})",
                implied_flops=rate, peak_flops=mach.peak)
            flags += _compute_flags(util, claim.max_efficiency, x, mach.peak / flops)
    if x is not None and weights is not None and mach.bw is not None:
        traffic = weights * x / n
        add("implied weight bandwidth", traffic, "B/s", f"weights x throughput / N = {num(weights)} x {num(x)} / {num(n)} (N: {n_text})",
            weight_bytes=weights, throughput_samples_per_s=x, samples_in_flight=n)
        add("implied bandwidth utilisation", traffic / mach.bw, "ratio",
            f"implied bandwidth / bandwidth = {num(traffic)} / {num(mach.bw)} ({mach.bw_note})",
            implied_bandwidth=traffic, memory_bandwidth=mach.bw)
        if traffic > mach.bw:
            flags.append(_bandwidth_flag(traffic / mach.bw, weights, spec))
    if weights is not None and spec is not None and spec.memory_bytes and weights > spec.memory_bytes:
        flags.append(Flag(level="suspicious", message=(
            f"the weights ({weights / 1e9:.3g} GB) do not fit {spec.name}'s {spec.memory_bytes / 2**30:.0f} GiB of memory: "
            "the claim needs several devices or offloading")))
    if memory_s is not None:
        flags.append(Flag(level="info", message="the memory bound counts weight reads only (activations ignored): a lower bound"))
    return Implied(claim=claim, hardware=spec.name if spec else None, hardware_source=spec.source if spec else None,
                   dtype=dtype, figures=figs, flags=flags)


def _check_little(x: float, lat: float, n: float, b: int, n_text: str) -> None:
    """A published latency must be what Little's law makes of throughput and samples in flight."""
    expect = n / x
    if abs(lat - expect) / expect > LATENCY_TOLERANCE:
        raise UsageError(
            f"published latency {lat * 1e3:.4g} ms disagrees with throughput {num(x)} samples/s at {n_text}: "
            f"Little's law gives {num(n)} / {num(x)} = {expect * 1e3:.4g} ms (more than {LATENCY_TOLERANCE:.0%} apart); "
            f"together they imply {num(x * lat)} samples in flight (concurrency {num(x * lat / b)} at batch {b}): "
            "give that concurrency if batches overlap, or check the figures"
        )


def _compute_flags(util: float, max_eff: float | None, x: float, ceiling: float) -> list[Flag]:
    if util > 1:
        return [Flag(level="impossible", message=(
            f"implied compute utilisation {util:.0%}: {num(x)} samples/s is above the {num(ceiling)} samples/s "
            "the peak allows (faster than the roofline)"))]
    if max_eff is None:
        return [Flag(level="info", message=(
            "'suspicious' check off: no best GEMM efficiency of a calibrated machine to compare with "
            "(max_efficiency, --max-efficiency)"))]
    if util > max_eff:
        return [Flag(level="suspicious", message=(
            f"implied compute utilisation {util:.0%} is above the best GEMM efficiency any calibrated machine "
            f"reached ({max_eff:.0%}); a whole model rarely runs faster than its best single GEMM"))]
    return []


def _bandwidth_flag(util: float, weights: float, spec: HardwareSpec | None) -> Flag:
    """Above DRAM bandwidth is impossible only if the weights cannot stay in cache between batches."""
    what = f"implied weight bandwidth is {util:.0%} of DRAM bandwidth"
    cache = sum(spec.caches.values()) if spec is not None and spec.caches else None
    if cache is None:
        return Flag(level="suspicious", message=(
            f"{what}: possible only if the weights ({weights / 1e6:.3g} MB) stay on chip between batches; "
            "no cache sizes known to check"))
    if weights <= cache:
        return Flag(level="info", message=(
            f"{what}, but the weights ({weights / 1e6:.3g} MB) fit in the caches ({cache / 1e6:.3g} MB), "
            "so DRAM need not bound it"))
    return Flag(level="impossible", message=(
        f"{what}: the weights ({weights / 1e6:.3g} MB) exceed the caches ({cache / 1e6:.3g} MB), "
        "so each batch must read them from DRAM faster than it delivers"))
