"""Shapes for charts: histogram, ECDF and rolling median of latency samples."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from ._base import _as_samples, _Samples

# ---------------------------------------------------------------- shapes for charts
# The HTML/PNG report draws these; it computes no statistic itself.


class Histogram(BaseModel):
    """Bin counts over ``edges`` (len(counts) + 1 ascending edges, seconds); samples outside
    [edges[0], edges[-1]] are not binned but counted in ``below`` / ``above`` so a chart can say so."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: list[int]
    edges: list[float]
    below: int = 0
    above: int = 0

    @property
    def count(self) -> int:
        return sum(self.counts) + self.below + self.above


def histogram(
    samples: _Samples,
    *,
    lower: float | None = None,
    upper: float | None = None,
    min_bins: int = 10,
    max_bins: int = 120,
) -> Histogram:
    """Freedman-Diaconis bins (robust to the heavy tails latency has, unlike Sturges or
    Scott) over [lower, upper] (default: min and max), clamped to min_bins..max_bins so a
    tight distribution still shows a shape and a wide one stays readable."""
    if min_bins < 1 or max_bins < min_bins:
        raise ValueError(f"need 1 <= min_bins <= max_bins, got {min_bins}, {max_bins}")
    x = _as_samples(samples, "latency samples")
    lo = float(np.min(x)) if lower is None else float(lower)
    hi = float(np.max(x)) if upper is None else float(upper)
    if not hi >= lo:
        raise ValueError(f"histogram range is empty: lower {lo} > upper {hi}")
    inside = x[(x >= lo) & (x <= hi)]
    if hi == lo:  # all samples equal: one bin of nominal width
        half = abs(lo) * 1e-3 or 1e-9
        edges = np.array([lo - half, lo + half])
    else:
        n_bins = max_bins
        if inside.size >= 2:
            q1, q3 = np.percentile(inside, [25, 75])
            width = 2.0 * float(q3 - q1) / inside.size ** (1 / 3)
            if width > 0:
                n_bins = math.ceil((hi - lo) / width)
        edges = np.linspace(lo, hi, min(max(n_bins, min_bins), max_bins) + 1)
    counts, _ = np.histogram(inside, bins=edges)
    return Histogram(
        counts=[int(c) for c in counts],
        edges=[float(e) for e in edges],
        below=int(np.count_nonzero(x < lo)),
        above=int(np.count_nonzero(x > hi)),
    )


def ecdf(samples: _Samples, max_points: int | None = None) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Empirical CDF as steps: the i-th smallest sample x(i) and F = i/n, the share of samples
    <= it. Consistent with nearest rank: the p-th percentile is the first x(i) with F >= p/100.

    ``max_points`` keeps that many evenly spaced ranks (always the first and the last), so a
    chart of 10^6 samples stays small; every kept point is still an exact (x(i), i/n)."""
    x = np.sort(_as_samples(samples, "latency samples"))
    n = x.size
    ranks = np.arange(1, n + 1)
    if max_points is not None and n > max_points:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        ranks = np.unique(np.linspace(1, n, max_points).round().astype(np.intp))
    return x[ranks - 1], ranks / n


def rolling_window(n: int) -> int:
    """Default rolling-median window for n samples: about n/25 (so ~25 independent medians
    span the run), odd so it centres on a sample, within 5..201, never more than n."""
    if n < 1:
        raise ValueError("a rolling window needs at least one sample")
    w = min(max(n // 25, 5), 201)
    w -= 1 - w % 2
    return max(1, min(w, n if n % 2 else n - 1))


def rolling_median(samples: _Samples, window: int | None = None) -> npt.NDArray[np.float64]:
    """Centred rolling median, one value per sample: how the typical latency moved during a run
    (drift, throttling, warm-up), insensitive to single slow calls as a rolling mean is not.
    Near the ends the window is cut off by the end of the run (it keeps at least half a window
    of samples), so the line spans the whole run without a single-sample wobble at its ends.
    The median of an even-sized window is numpy's (the mean of the two middle samples)."""
    x = _as_samples(samples, "latency samples")
    n = x.size
    w = rolling_window(n) if window is None else int(window)
    if w < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    half = w // 2
    out = np.empty(n)
    if n > 2 * half:
        view = np.lib.stride_tricks.sliding_window_view(x, 2 * half + 1)
        chunk = max(1, 2_000_000 // (2 * half + 1))  # bounds memory for long runs
        for start in range(0, view.shape[0], chunk):
            med = np.median(view[start : start + chunk], axis=1)
            out[half + start : half + start + med.size] = med
    for i in list(range(min(half, n))) + list(range(max(n - half, half), n)):
        out[i] = float(np.median(x[max(0, i - half) : i + half + 1]))
    return out
