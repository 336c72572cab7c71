"""Terminal tables for comparing N runs (``infermeter compare``). Reads a ``ComparisonTable``, computes nothing.

Rows are runs (or sweep points, their axis values leading); each chosen metric shows its
value with its CI and, beside it, the ratio to the baseline with its CI and a significance
mark: slower/faster (lower/higher for throughput) when significant, ``n.s.`` when not.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from ..compare import METRICS, ComparisonTable, MetricCell, RunRow
from .console import estimate

__all__ = ["INFO_COLUMNS", "COLUMNS", "render_comparison_table", "ratio_text"]

# Columns that describe a run (no ratio); metric columns (METRICS) get a value and a ratio.
INFO_COLUMNS: dict[str, Any] = {
    "spec": lambda r: r.spec,
    "backend": lambda r: r.backend,
    "device": lambda r: r.device,
    "batch": lambda r: str(r.batch_size),
    "scenario": lambda r: r.scenario,
    "status": lambda r: r.status if r.status == "ok" else f"[red]{r.status}[/red]",
    "count": lambda r: f"{r.count:,}",
    "created": lambda r: r.created.isoformat(timespec="seconds"),
    "tags": lambda r: ", ".join(f"{k}={v}" for k, v in r.tags.items()) or "–",
    "headline": lambda r: f"{r.headline.metric} {r.headline.value:.4g} {r.headline.unit}" if r.headline else "–",
    "p": lambda r: "–" if r.p_value is None else f"{r.p_value:.3g}",
}
COLUMNS: tuple[str, ...] = (*INFO_COLUMNS, *METRICS)
_LABELS = {"p999": "p99.9", "throughput": "throughput", "p": "p (Mann-Whitney)"}


def _value_text(cell: MetricCell | None) -> str:
    if cell is None or cell.value is None:
        return "–"
    if cell.unit == "samples/s":
        return estimate(cell.value, lambda x: f"{x:,.1f}")
    return estimate(cell.value, lambda x: f"{x * 1e3:.4g}")


def ratio_text(cell: MetricCell | None, markup: bool = True) -> str:
    """``1.203 [1.19, 1.22] 20.3% slower``; the baseline row says so, an untested row says why not."""
    if cell is None:
        return "–"
    if cell.ratio is None:
        return cell.label or "–"
    text = estimate(cell.ratio, lambda x: f"{x:.3f}")
    if not cell.significant:
        return f"{text} n.s."
    if not markup:
        return f"{text} {cell.label}"
    colour = "red" if cell.worse else "green"
    return f"{text} [{colour}]{cell.label}[/{colour}]"


def _row_id(r: RunRow) -> str:
    return f"{r.id} (baseline)" if r.baseline else r.id


def render_comparison_table(table: ComparisonTable, columns: Sequence[str], console: Console) -> None:
    title = (
        f"{len(table.rows)} runs against baseline {table.baseline} (ratio = run / baseline, "
        f"{table.confidence:.0%} CI in brackets; min effect {table.min_effect:.0%}; percentiles nearest-rank)"
    )
    t = Table(title=title, title_justify="left")
    t.add_column("run", no_wrap=True)
    for axis in table.axes:
        t.add_column(axis, justify="right")
    for c in columns:
        if c in METRICS:
            t.add_column(f"{_LABELS.get(c, c)} ({'samples/s' if c == 'throughput' else 'ms'})", justify="right")
            t.add_column(f"{_LABELS.get(c, c)} ratio", justify="right")
        else:
            t.add_column(_LABELS.get(c, c), justify="right" if c in ("batch", "count", "p") else "left")
    for r in table.rows:
        cells = [_row_id(r)] + [str(r.axes.get(a, "–")) for a in table.axes]
        for c in columns:
            if c in METRICS:
                cells += [_value_text(r.cells.get(c)), ratio_text(r.cells.get(c))]
            else:
                cells.append(INFO_COLUMNS[c](r))
        t.add_row(*cells)
    console.print(t)
    for r in table.rows:
        if r.note:
            console.print(f"[yellow]not tested[/yellow] {r.id}: {r.note}", highlight=False)
    summary = table.pair_summary()
    if summary is not None:
        console.print(f"Mann-Whitney U p = {summary['p_value']:.3g}; {summary['verdict']}", highlight=False)
    alpha = 1 - table.confidence
    console.print(
        f"[dim]significant: the ratio's CI excludes 1 and it differs from 1 by at least {table.min_effect:.0%} "
        f"(for p50 also Mann-Whitney U p < {alpha:.2g}); n.s. = not significant[/dim]",
        highlight=False,
    )
    if table.method:
        console.print(f"[dim]{table.method.split('; min effect')[0]}[/dim]", highlight=False)
