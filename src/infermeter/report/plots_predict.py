"""The roofline chart of a prediction: each op type at its arithmetic intensity and
its predicted attained FLOP/s, under the machine's roof (best calibrated GEMM
rate) and slope (DRAM bandwidth); the measured whole-model point beside the
predicted one when the run was measured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..result import Result
from .plots import SERIES, Chart, short

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["charts"]


def charts(r: Result) -> list[Chart]:
    p = r.prediction
    if p is None or not p.ops:
        return []
    return [
        Chart(
            slug=f"roofline-{r.id}",
            title=f"Roofline — {short(p.spec, 40)}, batch {p.batch_size}, on {short(p.hardware, 40)}",
            caption=(
                "Each marker is one op type (area ∝ its share of predicted time) at its arithmetic intensity "
                "(FLOP per byte moved, FLOPs = 2 × MACs) and the FLOP/s it attains in the prediction. The roof is the "
                "machine's best calibrated GEMM rate per dtype, the slope its DRAM bandwidth. Stars: the whole model, "
                "predicted and (when measured here) measured at its p50."
            ),
            draw=lambda fig: _draw(fig, r),
            size=(8.0, 5.0),
            section=r.id,
        )
    ]


def _draw(fig: "Figure", r: Result) -> None:
    from ..report.predict_table import aggregate_ops

    p = r.prediction
    assert p is not None
    ax = fig.add_subplot(1, 1, 1)
    rows = [row for row in aggregate_ops(p) if row["flops"] > 0 and row["bytes"] > 0 and row["time_s"] > 0]
    classes = sorted({row["op_class"] for row in rows})
    colour = {c: SERIES[i % len(SERIES)] for i, c in enumerate(classes)}
    xs = [row["flops"] / row["bytes"] for row in rows]
    lo_x = min(xs + [0.1]) / 2
    hi_x = max(xs + [100.0]) * 2
    for row, x in zip(rows, xs):
        y = row["flops"] / row["time_s"]
        ax.scatter([x], [y], s=20 + 600 * row["share"], color=colour[row["op_class"]], alpha=0.7, edgecolors="black",
                   linewidths=0.4, label=row["op_class"])
        if row["share"] >= 0.05:
            ax.annotate(short(row["op"], 24), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    import numpy as np

    grid = np.logspace(np.log10(lo_x), np.log10(hi_x), 200)
    bw = p.roof_bytes_per_s
    for i, (dtype, roof) in enumerate(sorted(p.roof_flops_per_s.items())):
        y = np.minimum(roof, bw * grid) if bw else np.full_like(grid, roof)
        ax.plot(grid, y, color="black", linestyle=["-", "--", ":"][i % 3], linewidth=1.2,
                label=f"roof {dtype}: {roof / 1e9:,.0f} GFLOP/s" + (f", {bw / 1e9:,.0f} GB/s" if bw else ""))
    if p.bytes > 0 and p.latency_s > 0:
        xi = p.flops / p.bytes
        ax.scatter([xi], [p.flops / p.latency_s], marker="*", s=220, color="#9467bd", edgecolors="black", label="model, predicted")
        if p.measured_latency_s:
            ax.scatter([xi], [p.flops / p.measured_latency_s], marker="*", s=220, color="#2ca02c", edgecolors="black",
                       label="model, measured p50")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("attained FLOP/s")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="lower right")
