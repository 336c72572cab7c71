"""What a machine attains for a kernel of a given shape: looked up in a calibrated
profile, or scaled from one onto a spec sheet.

A calibrated :class:`HardwareProfile` holds measured points (GEMM and conv
FLOP/s by shape, bandwidth by working-set size, per-op dispatch cost). A
:class:`Machine` answers "how long does this kernel take here" by interpolating
between those points; it never invents a rate that no measurement supports.

Interpolation, and why:
  * rates of matrix kernels vary smoothly in log(m), log(n), log(k) but not
    linearly; inverse-distance weighting of log(rate) over the nearest measured
    shapes (in log space) follows the grid where it is dense and stays within
    the measured range where it is not (no extrapolation beyond the best point);
  * bandwidth against working-set size is a staircase (cache levels): linear in
    log(size) between neighbouring points, flat beyond the ends.

Spec-sheet targets (:func:`machine_for_spec`) have no measurements: their rate
for a shape is the target's peak times the *efficiency* a calibrated reference
machine of the same kind reaches for that shape (rate / its own peak), and
their bandwidth is the reference's curve scaled by the ratio of DRAM
bandwidths. Every prediction made that way says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError
from .schema import BandwidthPoint, GemmShape, HardwareProfile, HardwareSpec, RatePoint

__all__ = ["Machine", "machine_for_profile", "machine_for_spec", "best_rate"]

_NEAREST = 4  # points blended by inverse-distance weighting
_POWER = 2.0


def _coords(g: GemmShape) -> tuple[float, float, float, float]:
    return (math.log2(max(1, g.m)), math.log2(max(1, g.n)), math.log2(max(1, g.k)), math.log2(max(1, g.batch)))


@dataclass
class _RateTable:
    """Measured rates of one (kind, dtype), ready for nearest-point blending."""

    coords: np.ndarray  # (n, 4) log2 m, n, k, batch
    log_rate: np.ndarray  # (n,) log of per-product FLOP/s
    best: float

    @classmethod
    def of(cls, points: list[RatePoint]) -> "_RateTable":
        coords = np.array([_coords(p.gemm) for p in points], dtype=float)
        rates = np.array([p.flops_per_s for p in points], dtype=float)
        return cls(coords, np.log(rates), float(rates.max()))

    def rate(self, shape: GemmShape) -> float:
        x = np.array(_coords(shape))
        # batch counts a quarter as much as a shape axis: many small products
        # behave more like one product of their size than like a bigger matrix
        d = np.sqrt((((self.coords - x) * np.array([1.0, 1.0, 1.0, 0.5])) ** 2).sum(axis=1))
        exact = d < 1e-9
        if exact.any():  # points measured at this very shape (e.g. two input sizes of one recurrence): their mean
            return float(np.exp(self.log_rate[exact].mean()))
        order = np.argsort(d)[:_NEAREST]
        w = 1.0 / d[order] ** _POWER
        return float(np.exp((w * self.log_rate[order]).sum() / w.sum()))


@dataclass
class _Staircase:
    log_bytes: np.ndarray
    log_bw: np.ndarray

    @classmethod
    def of(cls, points: list[BandwidthPoint]) -> "_Staircase":
        pts = sorted(points, key=lambda p: p.bytes)
        return cls(np.log([max(1, p.bytes) for p in pts]), np.log([p.bytes_per_s for p in pts]))

    def at(self, nbytes: float) -> float:
        return float(np.exp(np.interp(math.log(max(1.0, nbytes)), self.log_bytes, self.log_bw)))


@dataclass
class Machine:
    """Kernel timings for one machine, from a calibrated profile (possibly scaled)."""

    name: str
    kind: str
    source: str
    calibrated: bool
    rates: dict[tuple[str, str], _RateTable] = field(default_factory=dict)  # (kind, dtype)
    stairs: dict[tuple[str, str], _Staircase] = field(default_factory=dict)  # (bandwidth kind, dtype)
    overheads: dict[tuple[str, int], float] = field(default_factory=dict)  # (backend, threads) → s
    rate_scale: dict[str, float] = field(default_factory=dict)  # dtype → target/reference (spec targets)
    bw_scale: float = 1.0
    default_threads: int | None = None
    notes: list[str] = field(default_factory=list)
    sequence: dict[str, Any] = field(default_factory=dict)  # dtype → SequenceFactor

    def in_sequence(self, dtype: str, op_s: float) -> float:
        """How much slower an op of this isolated length runs among other ops (≥ the
        calibrated chains' smallest ratio, ≤ their largest); 1 with no chains."""
        f = self.sequence.get(dtype) or self.sequence.get("float32")
        return f.at(op_s) if f else 1.0

    # ------------------------------------------------------------------ lookups

    def dtypes(self) -> list[str]:
        return sorted({d for _, d in self.rates})

    def has(self, kind: str, dtype: str) -> bool:
        return (kind, dtype) in self.rates

    def rate(self, kind: str, dtype: str, shape: GemmShape) -> tuple[float, str]:
        """(FLOP/s of one product of ``shape``, what the figure is based on)."""
        table, used, basis = self._table(kind, dtype)
        r = table.rate(shape) * self.rate_scale.get(dtype, self.rate_scale.get(used, 1.0))
        return r, basis

    def _table(self, kind: str, dtype: str) -> tuple[_RateTable, str, str]:
        for k in (kind, "gemm"):
            if (k, dtype) in self.rates:
                return self.rates[(k, dtype)], dtype, f"{k} {dtype}"
        for k in (kind, "gemm"):
            if (k, "float32") in self.rates:
                return self.rates[(k, "float32")], "float32", f"{k} float32 (no {dtype} calibration)"
        if not self.rates:
            raise UsageError(f"the profile '{self.name}' has no GEMM measurements; run infermeter calibrate again")
        key = next(iter(self.rates))
        return self.rates[key], key[1], f"{key[0]} {key[1]} (no {kind} {dtype} calibration)"

    def bandwidth(self, kind: str, nbytes: float, dtype: str = "float32") -> float:
        """B/s an op of this kind (and dtype, where calibrated) attains with this working set."""
        stairs = (self.stairs.get((kind, dtype)) or self.stairs.get((kind, "float32"))
                  or self.stairs.get(("copy", "float32")) or next(iter(self.stairs.values()), None))
        if stairs is None:
            raise UsageError(f"the profile '{self.name}' has no bandwidth measurements; run infermeter calibrate again")
        return stairs.at(nbytes) * self.bw_scale

    def overhead(self, backend: str, threads: int | None = None) -> float:
        """Seconds to dispatch one op in ``backend`` (nearest calibrated thread count)."""
        cands = [(t, s) for (b, t), s in self.overheads.items() if b == backend]
        if not cands:
            cands = [(t, s) for (b, t), s in self.overheads.items() if b == "torch"]
        if not cands:
            return 0.0
        want = threads if threads is not None else (self.default_threads or max(t for t, _ in cands))
        return min(cands, key=lambda ts: (abs(ts[0] - want), ts[0]))[1]

    @property
    def best_rates(self) -> dict[str, float]:
        """dtype → best measured (scaled) GEMM FLOP/s: the roof of the roofline chart."""
        out: dict[str, float] = {}
        for (kind, dtype), t in self.rates.items():
            if kind == "gemm":
                out[dtype] = t.best * self.rate_scale.get(dtype, 1.0)
        return out

    def dram_bandwidth(self) -> float:
        stairs = self.stairs.get(("copy", "float32")) or next(iter(self.stairs.values()))
        return float(np.exp(stairs.log_bw[-1])) * self.bw_scale


def best_rate(profile: HardwareProfile, dtype: str) -> float | None:
    rates = [p.flops_per_s for p in profile.gemm if p.dtype == dtype]
    return max(rates) if rates else None


def machine_for_profile(profile: HardwareProfile) -> Machine:
    """A machine that answers from its own measurements."""
    m = Machine(
        name=profile.name,
        kind=profile.kind,
        source=profile.source,
        calibrated=True,
        default_threads=profile.threads,
    )
    groups: dict[tuple[str, str], list[RatePoint]] = {}
    for p in [*profile.gemm, *profile.conv]:
        if p.flops_per_s > 0:
            groups.setdefault((p.kind, p.dtype), []).append(p)
    m.rates = {key: _RateTable.of(pts) for key, pts in groups.items()}
    by_kind: dict[tuple[str, str], list[BandwidthPoint]] = {}
    for b in profile.bandwidth:
        if b.bytes_per_s > 0:
            by_kind.setdefault((b.kind, b.dtype), []).append(b)
    # a narrow dtype's staircase needs two points to be a curve; float32's is the fallback for every kind
    m.stairs = {(k, d): _Staircase.of(v) for (k, d), v in by_kind.items() if d == "float32" or len(v) >= 2}
    m.overheads = {(o.backend, o.threads): o.seconds for o in profile.overhead}
    from .sequence import SequenceFactor

    for dt in {p.dtype for p in profile.sequence}:
        m.sequence[dt] = SequenceFactor([p for p in profile.sequence if p.dtype == dt])
    return m


def machine_for_spec(spec: HardwareSpec, reference: HardwareProfile, reference_spec: HardwareSpec | None) -> Machine:
    """A spec-sheet machine: the reference's efficiency per shape times the target's peaks.

    The reference's own peak is its spec sheet's when known (``reference_spec``),
    else its best measured rate, which makes the target's efficiency curve top
    out at 100% of its peak: an optimistic assumption, stated in the notes.
    """
    base = machine_for_profile(reference)
    notes = [
        f"spec-sheet target: rates are {spec.name}'s peaks times the efficiency that the calibrated "
        f"machine '{reference.name}' reaches for each shape; bandwidth is its measured curve scaled by "
        f"DRAM bandwidth {spec.memory_bandwidth / 1e9:.0f} GB/s over the reference's"
    ]
    scale: dict[str, float] = {}
    for dtype in base.dtypes():
        target_peak = spec.peak_flops.get(dtype)
        if target_peak is None:
            notes.append(f"{spec.name} lists no {dtype} peak: {dtype} ops use its float32 peak")
            target_peak = spec.peak_flops.get("float32")
        if target_peak is None:
            continue
        ref_peak = reference_spec.peak_flops.get(dtype) if reference_spec is not None else None
        if ref_peak is None:
            ref_peak = best_rate(reference, dtype)
            notes.append(
                f"the reference's {dtype} peak is taken as its best measured GEMM rate "
                f"({(ref_peak or 0) / 1e12:.2f} TFLOP/s): efficiencies are relative to it, an upper bound"
            )
        if ref_peak:
            scale[dtype] = target_peak / ref_peak
    ref_dram = base.dram_bandwidth()
    bw_scale = spec.memory_bandwidth / ref_dram if ref_dram > 0 else 1.0
    return Machine(
        name=spec.name,
        kind=spec.kind,
        source=f"spec sheet ({spec.source}); efficiency curves from calibrated '{reference.name}'",
        calibrated=False,
        rates=base.rates,
        stairs=base.stairs,
        overheads=base.overheads,
        sequence=base.sequence,
        rate_scale=scale,
        bw_scale=bw_scale,
        default_threads=None,
        notes=notes,
    )
