"""Chart of a profiled run: its top operators by self time, by op type and by layer.

Bars are milliseconds per iteration, labelled with their share of the summed op
time and coloured by op class (one colour per class in every chart). The figures
come from ``profile_table.top_rows``, the same rows the tables show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..predict.schema import OP_CLASSES, OpProfile
from ..result import Result
from .plots import SERIES, Chart, short
from .profile_table import top_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["charts", "CLASS_COLOURS", "TOP"]

TOP = 15
CLASS_COLOURS = {c: SERIES[i % len(SERIES)] for i, c in enumerate(OP_CLASSES)}
CLASS_COLOURS["unknown"] = "#bbbbbb"


def charts(r: Result, top: int = TOP) -> list[Chart]:
    op = r.op_profile
    if op is None or not op.by_type:
        return []
    views = [v for v in ("type", "node") if (op.by_type if v == "type" else op.by_node)]
    layer = "layer" if r.model.backend == "torch" else "node"
    return [Chart(
        slug=f"profile-{r.id}",
        title=f"Top operators by self time — {short(r.model.spec, 40)}, batch {r.batch_size}",
        caption=(
            f"Self time per iteration of the {top} costliest op types (left) and {layer}s (right) from {op.profiler}, "
            f"{op.iterations} iterations after {op.warmup} warm-up on {op.device}; bars are labelled with their share "
            f"of the summed op time ({op.op_total_per_iter_s * 1e3:.4g} ms per iteration) and coloured by op class. "
            "Profiled times include the profiler's overhead."
        ),
        draw=lambda fig: _draw(fig, op, views, top, layer),
        size=(11.0, max(3.2, 0.26 * min(top, max(len(op.by_type), len(op.by_node))) + 1.4)),
        section=r.id,
    )]


def _draw(fig: Figure, op: OpProfile, views: list[str], top: int, layer: str) -> None:
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    used: dict[str, str] = {}
    for ax, by in zip(axes, views):
        _bars(ax, op, by, top, used)
        ax.set_title("by op type" if by == "type" else f"by {layer}")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=cls) for cls, c in used.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), title="op class")


def _bars(ax: Axes, op: OpProfile, by: str, top: int, used: dict[str, str]) -> None:
    rows = [r for r in top_rows(op, by, top) if r.rank > 0]
    labels = [short(r.key, 44) for r in rows]
    values = [r.per_iter_s * 1e3 for r in rows]
    colours = []
    for r in rows:
        c = CLASS_COLOURS.get(r.op_class, CLASS_COLOURS["unknown"])
        used.setdefault(r.op_class if r.op_class in CLASS_COLOURS else "unknown", c)
        colours.append(c)
    y = list(range(len(rows)))
    ax.barh(y, values, color=colours)
    ax.set_yticks(y, labels, fontsize=7.5, family="monospace")
    ax.invert_yaxis()  # the costliest on top
    hi = max(values, default=1.0) or 1.0
    for yi, v, r in zip(y, values, rows):
        ax.text(v + hi * 0.01, yi, f"{r.share:.1%}", va="center", fontsize=7.5)
    ax.set_xlim(0, hi * 1.15)
    ax.set_xlabel("self time per iteration (ms)")
    ax.grid(axis="y", visible=False)
