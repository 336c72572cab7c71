"""The Pareto chart of an optimize run: each candidate that ran at its speed-up over the
baseline (log scale, with the speed-up's confidence interval as bars) against its change in
the accuracy figure (in the table's units: points for fractions such as accuracy, the figure's
own units for errors such as MSE). The front is joined by a step line, the chosen candidate is
starred, the baseline sits at (1, 0) and the accuracy budget is a dashed line: at ``-max_drop``
for a higher-is-better figure, ``+max_drop`` for a lower-is-better one (there a rise is worse)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .optimize_table import delta_scale, in_points, is_baseline, objective_label, over_budget
from .plots import SERIES, Chart, plain_log, short

if TYPE_CHECKING:
    from typing import Any

    from matplotlib.figure import Figure

    from ..optimize.schema import OptimizeReport, Row

__all__ = ["charts"]


def _drawn(report: "OptimizeReport") -> list["Row"]:
    """Rows with a point: ran, with a speed-up and an accuracy delta (the baseline is drawn apart)."""
    return [r for r in report.rows if r.record.status == "ok" and not is_baseline(r)
            and r.speedup is not None and r.speedup > 0 and r.accuracy_delta is not None]


def _names(rows: list["Row"]) -> str:
    return ", ".join(r.record.name for r in rows)


def _caption(report: "OptimizeReport") -> str:
    stat = objective_label(report)
    ratio = ("candidate / baseline throughput" if report.objective == "throughput"
             else f"baseline / candidate {stat}")
    unit = "points (1 pt = 0.01)" if in_points(report) else f"{report.accuracy_name} units"
    worse = "below" if report.higher_is_better else "above"
    text = (
        f"Each point is a candidate that ran: its speed-up over the baseline ({ratio}; bars: "
        f"{report.confidence:.0%} bootstrap CI) against its change in {report.accuracy_name} vs the baseline, in {unit}. "
        f"The step line joins the Pareto front, the star marks the chosen candidate, the square is the baseline "
        f"at (1, 0); the dashed line is the accuracy budget (max drop {report.max_drop:g}), candidates {worse} it "
        f"exceed it."
    )
    drawn = {id(r) for r in _drawn(report)}
    failed = [r for r in report.rows if r.record.status == "failed"]
    skipped = [r for r in report.rows if r.record.status == "skipped"]
    missing = [r for r in report.rows if r.record.status == "ok" and not is_baseline(r) and id(r) not in drawn]
    if failed:
        text += f" Failed (not drawn): {_names(failed)}."
    if skipped:
        text += f" Skipped (not drawn): {_names(skipped)}."
    if missing:
        text += f" Ran without a speed-up or accuracy figure (not drawn): {_names(missing)}."
    return text


def charts(report: "OptimizeReport") -> list[Chart]:
    if not report.rows:
        return []
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", f"pareto-{report.session}").strip("_")
    return [
        Chart(
            slug=slug,
            title=f"Speed-up vs {short(report.accuracy_name, 30)} — {short(report.model, 40)}, "
            f"{objective_label(report)}, batch {report.batch_size}",
            caption=_caption(report),
            draw=lambda fig: _draw(fig, report),
            size=(9.0, 5.0),
            section="optimize",  # drawn in the page's Optimize section, not with the latency charts
        )
    ]


def _draw(fig: "Figure", report: "OptimizeReport") -> None:
    ax = fig.add_subplot(1, 1, 1)
    scale = delta_scale(report)
    rows = _drawn(report)
    front_c, other_c, over_c, chosen_c = SERIES[0], SERIES[7], SERIES[3], SERIES[4]

    xs_all = [1.0]
    ys_all = [0.0]
    for r in rows:
        x, y = float(r.speedup), float(r.accuracy_delta) * scale  # type: ignore[arg-type]
        lo = r.speedup_ci_low if r.speedup_ci_low is not None else x
        hi = r.speedup_ci_high if r.speedup_ci_high is not None else x
        xs_all += [lo, hi, x]
        ys_all.append(y)
        colour = over_c if over_budget(report, r) else (front_c if r.on_front else other_c)
        ax.errorbar([x], [y], xerr=[[max(x - lo, 0.0)], [max(hi - x, 0.0)]], fmt="o", color=colour,
                    markersize=6, capsize=3, linewidth=1, markeredgecolor="black", markeredgewidth=0.4,
                    label="over the accuracy budget" if colour == over_c else ("on the Pareto front" if r.on_front else "dominated"))
        ax.annotate(short(r.record.name, 28), (x, y), fontsize=7, xytext=(5, 5), textcoords="offset points")

    # the front: a staircase through its points in order of speed-up (the baseline counts when on it)
    base = next((r for r in report.rows if is_baseline(r)), None)
    front = [(float(r.speedup), float(r.accuracy_delta) * scale) for r in rows if r.on_front]  # type: ignore[arg-type]
    if base is None or base.on_front:
        front.append((1.0, 0.0))
    front.sort()
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="pre", color=front_c, linewidth=1.2,
                linestyle="-", alpha=0.8, label="Pareto front", zorder=1)

    ax.scatter([1.0], [0.0], marker="s", s=50, color="black", label="baseline", zorder=3)
    # left of its point: candidates that are not faster sit just right of the baseline
    ax.annotate(short(base.record.name, 28) if base is not None else "baseline", (1.0, 0.0), fontsize=7,
                xytext=(-6, 4), textcoords="offset points", ha="right")

    chosen = next((r for r in rows if r.chosen), None)
    if chosen is not None:
        ax.scatter([chosen.speedup], [float(chosen.accuracy_delta) * scale], marker="*", s=320,  # type: ignore[arg-type]
                   color=chosen_c, edgecolors="black", linewidths=0.6, label=f"chosen: {short(chosen.record.name, 28)}",
                   zorder=4)

    limit = (-report.max_drop if report.higher_is_better else report.max_drop) * scale
    unit = "pt" if in_points(report) else ""
    ys_all.append(limit)
    ax.axhline(limit, color=over_c, linestyle="--", linewidth=1,
               label=f"accuracy budget: {limit:+g}{' ' + unit if unit else ''}")
    ax.axvline(1.0, color="black", linestyle=":", linewidth=0.8, alpha=0.6)

    lo_x, hi_x = min(v for v in xs_all if v > 0), max(xs_all)
    ax.set_xscale("log")
    ax.set_xlim(lo_x / 1.25, hi_x * 1.25)
    lo_y, hi_y = min(ys_all), max(ys_all)
    pad = (hi_y - lo_y) * 0.15 or (abs(limit) or 1.0) * 0.5
    ax.set_ylim(lo_y - pad, hi_y + pad)
    # shade the side of the budget line where the figure is worse than allowed
    if report.higher_is_better:
        ax.axhspan(lo_y - pad, limit, color=over_c, alpha=0.06, zorder=0)
    else:
        ax.axhspan(limit, hi_y + pad, color=over_c, alpha=0.06, zorder=0)
    plain_log(ax.xaxis)
    _ticks(ax, lo_x / 1.25, hi_x * 1.25)
    stat = objective_label(report)
    ax.set_xlabel(f"speed-up over baseline (×, log scale; {'throughput ratio' if report.objective == 'throughput' else stat + ' ratio'})")
    ax.set_ylabel(f"Δ {report.accuracy_name} vs baseline ({'points' if in_points(report) else 'figure units'})"
                  + ("" if report.higher_is_better else ", lower is better"))
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


_NICE = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 50, 100, 200, 500, 1000)


def _ticks(ax: "Any", lo: float, hi: float) -> None:
    """Speed-ups span a decade or less: label 0.75, 1, 1.5, 2, 3 … rather than only the decades."""
    inside = [t for t in _NICE if lo <= t <= hi]
    if len(inside) > 8:
        inside = [t for t in inside if t in (0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, 1000)]
    if len(inside) >= 2:
        from matplotlib.ticker import FixedLocator, NullFormatter

        ax.xaxis.set_major_locator(FixedLocator(inside))
        ax.xaxis.set_minor_formatter(NullFormatter())
