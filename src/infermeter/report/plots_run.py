"""Charts of one run: its latency distribution (histogram + ECDF) and its timeline.

Percentile markers and their CI bands come from the stored ``Estimate`` values; the
histogram bins, ECDF steps and rolling median come from ``stats``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import stats
from ..result import LatencyStats, Result
from .plots import PCT_COLOURS, PCT_LABELS, Chart, est_label, fmt_ms, plain_log, short

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["charts", "MARKED"]

MARKED = ("p50", "p90", "p99", "p999")  # percentiles marked on the distribution charts
_ECDF_POINTS = 4000
_RASTER_ABOVE = 3000  # scatter points beyond this many are embedded as an image inside the SVG


def charts(r: Result) -> list[Chart]:
    lat = r.latency
    if r.status != "ok" or lat is None or not lat.samples:
        return []
    what = f"{short(r.model.spec, 40)}, batch {r.batch_size}, {r.scenario}"
    unit = f"blocks of {lat.block_size} calls" if lat.per == "block" else "calls"
    out = [
        Chart(
            slug=f"latency-{r.id}",
            title=f"Latency distribution — {what}",
            caption=(
                "Histogram (left; its range ends at the larger of p99 and the outlier fence Q3 + 3 IQR, samples "
                "beyond are counted, not drawn) and empirical CDF on a logit axis (right, every sample) of "
                f"{lat.count:,} measured {unit}. "
                "Vertical lines mark the nearest-rank p50, p90, p99 and p99.9; shaded bands are their "
                f"{lat.confidence:.0%} confidence intervals (a band with a missing bound is open on that side)."
            ),
            draw=lambda fig: _draw_distribution(fig, r, lat),
            section=r.id,
        )
    ]
    n_warm = len(r.phases.warmup_samples)
    out.append(
        Chart(
            slug=f"timeline-{r.id}",
            title=f"Latency per iteration — {what}",
            caption=(
                f"Every sample in the order it was taken: {n_warm:,} warm-up calls (shaded) then {lat.count:,} "
                f"measured {unit}. The line is a centred rolling median (stats.rolling_median); "
                "a slope in it is drift, a step is interference."
            ),
            draw=lambda fig: _draw_timeline(fig, r, lat),
            size=(10.0, 3.5),
            section=r.id,
        )
    )
    return out


def _marks(ax: Axes, lat: LatencyStats, *, legend: bool) -> None:
    """Vertical percentile lines with their CI bands (an open band runs to the axis edge)."""
    lo_edge, hi_edge = ax.get_xlim()
    for key in MARKED:
        e = getattr(lat, key)
        c = PCT_COLOURS[key]
        lo = e.ci_low * 1e3 if e.ci_low is not None else lo_edge
        hi = e.ci_high * 1e3 if e.ci_high is not None else hi_edge
        ax.axvspan(lo, hi, color=c, alpha=0.10, lw=0)
        ax.axvline(e.value * 1e3, color=c, lw=1.2, ls="--", label=f"{PCT_LABELS[key]} {est_label(e)}" if legend else None)
    ax.set_xlim(lo_edge, hi_edge)


def _draw_distribution(fig: Figure, r: Result, lat: LatencyStats) -> None:
    from matplotlib.ticker import MaxNLocator, NullLocator

    ax_h, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    samples = lat.samples
    # Histogram of the body: samples beyond both the far-out fence Q3 + 3 IQR (the one the
    # outlier warning uses) and p99 are counted, not binned; the CDF beside it shows them all.
    q1, q3 = stats.percentile(samples, 25), stats.percentile(samples, 75)
    upper = min(lat.max, max(q3 + stats.OUTLIER_IQR_K * (q3 - q1), lat.p99.value))
    h = stats.histogram(samples, upper=upper)
    edges = [e * 1e3 for e in h.edges]
    ax_h.stairs(h.counts, edges, fill=True, color="#9ecae1", ec="#3182bd", lw=0.6)
    pad = (edges[-1] - edges[0]) * 0.02
    ax_h.set_xlim(edges[0] - pad, edges[-1] + pad)
    ax_h.xaxis.set_major_locator(MaxNLocator(7))
    _marks(ax_h, lat, legend=True)
    xlabel = "latency (ms)"
    if h.above:
        xlabel += f"; {h.above:,} samples above {fmt_ms(upper)} not shown (max {fmt_ms(lat.max)}, see CDF)"
    ax_h.set_xlabel(xlabel)
    ax_h.set_ylabel(f"samples per bin ({len(h.counts)} bins)")
    blocks = f" blocks of {lat.block_size} calls" if lat.per == "block" else ""
    ax_h.set_title(f"histogram, n = {lat.count:,}{blocks}")
    ax_h.legend(loc="upper right", title=f"nearest rank, {lat.confidence:.0%} CI (ms)", title_fontsize=7.5)

    # ECDF on a logit axis: the tail (p99, p99.9) gets as much room as the body.
    x, f = stats.ecdf(samples, max_points=_ECDF_POINTS)
    ax_c.step(x * 1e3, f, where="post", color="#333333", lw=1.0)
    ax_c.set_yscale("logit", nonpositive="clip")
    n = lat.count
    low = max(min(0.01, 1.0 / n), 1e-4)
    top = min(1.0 - 0.5 / n, 0.9999) if n > 1 else 0.99
    ax_c.set_ylim(low, max(top, 0.51))
    ticks = [t for t in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999) if low <= t <= max(top, 0.51)]
    ax_c.set_yticks(ticks, [f"p{t * 100:g}" for t in ticks])
    ax_c.yaxis.set_minor_locator(NullLocator())  # logit minor ticks: slow to lay out, unlabelled anyway
    if lat.max > 10 * lat.min > 0:  # a tail ten times the fastest call: log axis, margins as factors
        ax_c.set_xscale("log")
        ax_c.set_xlim(lat.min * 1e3 / 1.05, lat.max * 1e3 * 1.05)
        plain_log(ax_c.xaxis)
    else:
        span = (lat.max - lat.min) * 1e3 or lat.max * 1e3 * 0.01 or 1e-6
        ax_c.set_xlim(lat.min * 1e3 - 0.02 * span, lat.max * 1e3 + 0.02 * span)
        ax_c.xaxis.set_major_locator(MaxNLocator(6))  # long labels such as 0.1015 must not touch
    _marks(ax_c, lat, legend=False)
    for key in MARKED:
        e = getattr(lat, key)
        p = stats.PERCENTILES[key] / 100
        if low <= p <= top:
            ax_c.plot([e.value * 1e3], [p], "o", color=PCT_COLOURS[key], ms=4)
    ax_c.set_xlabel("latency (ms)")
    ax_c.set_ylabel("share of samples ≤ latency")
    ax_c.set_title(f"empirical CDF, n = {lat.count:,}")


def _draw_timeline(fig: Figure, r: Result, lat: LatencyStats) -> None:
    import numpy as np

    ax = fig.subplots()
    warm = np.asarray(r.phases.warmup_samples, dtype=float)
    meas = np.asarray(lat.samples, dtype=float)
    w, n = warm.size, meas.size
    raster = w + n > _RASTER_ABOVE
    size = 4 if w + n < 2000 else 1.5
    if w:
        ax.axvspan(-0.5, w - 0.5, color="#bbbbbb", alpha=0.3, lw=0, label=f"warm-up ({w:,} calls)")
        ax.scatter(np.arange(w), warm * 1e3, s=size, color="#7f7f7f", lw=0, rasterized=raster)
        ax.plot(np.arange(w), stats.rolling_median(warm) * 1e3, color="#444444", lw=1.4)
    idx = np.arange(w, w + n)
    ax.scatter(idx, meas * 1e3, s=size, color="#6baed6", lw=0, rasterized=raster,
               label=f"measured ({n:,} {'blocks' if lat.per == 'block' else 'calls'})")
    ax.plot(idx, stats.rolling_median(meas) * 1e3, color="#08519c", lw=1.6,
            label=f"rolling median (window {stats.rolling_window(n)})")
    e = lat.p50
    if e.ci_low is not None and e.ci_high is not None:
        ax.axhspan(e.ci_low * 1e3, e.ci_high * 1e3, xmin=0, xmax=1, color=PCT_COLOURS["p50"], alpha=0.12, lw=0)
    ax.axhline(e.value * 1e3, color=PCT_COLOURS["p50"], ls="--", lw=1.0, label=f"p50 {est_label(e)}")
    everything = np.concatenate([warm, meas]) if w else meas
    lo, hi = float(everything.min()), float(everything.max())
    ax.set_xlim(-0.5, w + n - 0.5)
    if lo > 0 and hi / lo > 20:
        ax.set_yscale("log")
        ax.set_ylim(lo * 1e3 / 1.1, hi * 1e3 * 1.1)
        plain_log(ax.yaxis)
    ax.set_xlabel("iteration (warm-up calls, then measured " + ("blocks)" if lat.per == "block" else "calls)"))
    ax.set_ylabel("latency (ms)")
    stop = f"; stopped by {r.stop_reason}" if r.stop_reason else ""
    ax.set_title(f"timeline, n = {w:,} warm-up + {n:,} measured samples{stop}")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=4)  # never over the data
