"""The report of an ``infermeter optimize`` run: one table of candidates (console and HTML).

Each row is a candidate: its lineage (the transforms from the baseline), its speed-up over
the baseline with the confidence interval, the objective itself, its accuracy figure and the
change against the baseline, its size on disk and peak memory, and the verdict. ``★`` marks the
Pareto front (speed-up against accuracy), ``✓`` the chosen candidate. Failed and skipped
candidates keep their row, with the reason in the verdict column.

Accuracy deltas of a fraction-valued, higher-is-better figure (accuracy, top-5, F1, fidelity as
agreement or cosine) read in points (×100: ``-0.42 pt``); an error such as MSE or MAE reads in
its own units. The chart (``plots_optimize``) uses the same units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ..optimize.schema import OptimizeReport, Row

__all__ = [
    "render_optimize", "html_section", "optimize_json", "in_points", "delta_scale", "delta_text", "speedup_text",
    "objective_label", "is_baseline", "footnote",
]

_FRACTION_NAMES = ("accuracy", "top5", "top-5", "top1", "top-1", "f1", "fidelity", "agreement", "cosine")


# --------------------------------------------------------------------------- figures and their units


def is_baseline(row: "Row") -> bool:
    return row.record.kind == "baseline" or row.record.family == "baseline"


def in_points(report: "OptimizeReport") -> bool:
    """Whether the accuracy figure is a fraction read in points (×100): a higher-is-better
    accuracy, top-5, F1 or fidelity (agreement, cosine) whose values all lie in [-1, 1]
    (cosine may be negative). Errors (MSE, MAE) and other metrics stay in their own units."""
    if not report.higher_is_better:
        return False
    name = report.accuracy_name.lower()
    if not any(k in name for k in _FRACTION_NAMES):
        return False
    values = [r.record.accuracy for r in report.rows if r.record.accuracy is not None]
    return all(-1.0 <= v <= 1.0 for v in values)


def delta_scale(report: "OptimizeReport") -> float:
    """The factor from the figure's units to the units the table and chart show."""
    return 100.0 if in_points(report) else 1.0


def delta_text(report: "OptimizeReport", delta: float | None) -> str:
    """``-0.42 pt`` (fractions) or ``+0.0012`` (errors in their own units); ``–`` when unknown."""
    if delta is None:
        return "–"
    if in_points(report):
        return f"{delta * 100:+.2f} pt"
    return f"{delta:+.4g}"


def budget_text(report: "OptimizeReport") -> str:
    """The budget as a limit on the delta: ``≥ -1.00 pt`` (higher is better) or ``≤ +0.01``."""
    limit = -report.max_drop if report.higher_is_better else report.max_drop
    sign = "≥" if report.higher_is_better else "≤"
    return f"{sign} {delta_text(report, limit)}"


def accuracy_text(report: "OptimizeReport", value: float | None) -> str:
    if value is None:
        return "–"
    if in_points(report):
        return f"{value * 100:.2f}%"
    return f"{value:.4g}"


def _drop(report: "OptimizeReport", delta: float | None) -> float | None:
    """How much worse than the baseline, in the figure's units (negative: better)."""
    if delta is None:
        return None
    return -delta if report.higher_is_better else delta


def over_budget(report: "OptimizeReport", row: "Row") -> bool:
    d = _drop(report, row.accuracy_delta)
    return d is not None and d > report.max_drop + 1e-12


def speedup_text(row: "Row") -> str:
    """``2.31× [2.20, 2.43]``; the baseline ``1.00×``; ``–`` for a row that did not run."""
    if row.record.status != "ok" or row.speedup is None:
        return "–"
    if is_baseline(row):
        return f"{row.speedup:.2f}×"

    def b(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    return f"{row.speedup:.2f}× [{b(row.speedup_ci_low)}, {b(row.speedup_ci_high)}]"


def objective_label(report: "OptimizeReport") -> str:
    """The statistic the speed-up is a ratio of: ``p50 latency``, ``p99 latency``, ``throughput``."""
    obj = report.objective
    if obj.startswith("latency-"):
        return f"{obj.removeprefix('latency-')} latency"
    return obj


def _objective_value(report: "OptimizeReport", row: "Row") -> tuple[str, float | None]:
    if row.record.status != "ok":
        return "–", None
    if report.objective == "throughput":
        t = row.throughput
        return ("–", None) if t is None else (f"{t:,.1f} samples/s", t)
    s = row.objective_value_s
    if s is None:
        return "–", None
    return (f"{s * 1e3:.4g} ms" if s >= 1e-4 else f"{s * 1e6:.3g} µs"), s


def size_text(n: int | None) -> str:
    """Decimal bytes: ``12.3 MB``, ``45.6 kB``, ``800 B``."""
    if n is None:
        return "–"
    if abs(n) >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if abs(n) >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def _lineage(row: "Row") -> list[str]:
    rec = row.record
    return list(rec.lineage) or [s.text() for s in rec.steps]


def lineage_text(row: "Row") -> str:
    items = _lineage(row)
    if items:
        return " → ".join(items)
    return "original model" if is_baseline(row) else "–"


def _verdict(row: "Row") -> tuple[str, str]:
    """The verdict text and its console style."""
    rec = row.record
    if rec.status == "failed":
        return (f"failed: {rec.reason}" if rec.reason else (row.verdict or "failed")), "red"
    if rec.status == "skipped":
        return (f"skipped: {rec.reason}" if rec.reason else (row.verdict or "skipped")), "dim"
    v = row.verdict or ("baseline" if is_baseline(row) else "–")
    if row.chosen or v.startswith("faster within budget"):
        return v, "green"
    if "budget exceeded" in v:
        return v, "yellow"
    return v, ""


def _marks(row: "Row") -> str:
    return ("✓" if row.chosen else " ") + ("★" if row.on_front else " ")


def _eval_rows(report: "OptimizeReport") -> tuple[int | None, bool | None]:
    for r in sorted(report.rows, key=lambda r: not is_baseline(r)):
        ev = r.record.evaluation
        if ev is not None:
            return ev.rows, ev.labels
    return None, None


def footnote(report: "OptimizeReport") -> str:
    """How to read the table: the speed-up's definition and CI, the accuracy's basis and units."""
    stat = objective_label(report)
    ratio = ("speed-up = candidate / baseline throughput" if report.objective == "throughput"
             else f"speed-up = baseline / candidate {stat}")
    parts = [f"{ratio}, {report.confidence:.0%} CI: bootstrap"]
    n, labels = _eval_rows(report)
    if n is not None:
        basis = "labelled" if labels else "unlabelled, fidelity to the baseline"
        parts.append(f"{report.accuracy_name} on {n:,} eval rows ({basis})")
    unit = "points (1 pt = 0.01)" if in_points(report) else f"{report.accuracy_name} units"
    parts.append(f"Δ = candidate − baseline in {unit}, budget {budget_text(report)}")
    parts.append("★ Pareto front (speed-up vs accuracy), ✓ chosen")
    parts.append("size = model file on disk, memory = peak during the measurement")
    return "; ".join(parts)


def _title(report: "OptimizeReport") -> str:
    return (f"optimize {report.model}: objective {report.objective} ({objective_label(report)}), "
            f"batch {report.batch_size}, {report.confidence:.0%} CI")


def _trailer(report: "OptimizeReport") -> list[tuple[str, str]]:
    """The lines under the table, each with its console style."""
    out: list[tuple[str, str]] = []
    ch = report.choice
    out.append((f"choice: {ch.message}", "bold green" if ch.within_budget and ch.chosen else "bold yellow"))
    for n in report.notes:
        out.append((f"note: {n}", ""))
    if report.budget_exhausted:
        spent = f" after {report.elapsed_s:,.0f} s" if report.elapsed_s is not None else ""
        limit = f" of {report.budget_s:,.0f} s" if report.budget_s is not None else ""
        out.append((f"time budget{limit} exhausted{spent}: candidates not reached are skipped", "yellow"))
    if report.model_path:
        out.append((f"model written to {report.model_path}", ""))
    if report.recipe_path:
        out.append((f"recipe written to {report.recipe_path}", ""))
    return out


# --------------------------------------------------------------------------- console


def render_optimize(report: "OptimizeReport", console: Console) -> None:
    """Print the run's table of candidates and, under it, the choice, notes and outputs."""
    t = Table(title=_title(report), caption=footnote(report), caption_justify="left")
    wide = console.width >= 170  # a narrow terminal gets the lineage as lines under the table
    t.add_column("candidate", no_wrap=True)
    if wide:
        t.add_column("lineage", overflow="fold", max_width=44)
    t.add_column("speed-up [CI]", justify="right", no_wrap=True)
    t.add_column(objective_label(report), justify="right", no_wrap=True)
    t.add_column(report.accuracy_name, justify="right", no_wrap=True)
    t.add_column("Δ vs baseline", justify="right", no_wrap=True)
    t.add_column("size", justify="right", no_wrap=True)
    t.add_column("peak memory", justify="right", no_wrap=True)
    t.add_column("verdict", overflow="fold", max_width=48)
    for row in report.rows:
        rec = row.record
        ran = rec.status == "ok"
        verdict, vstyle = _verdict(row)
        dim = "" if ran else "dim"
        name = Text(_marks(row) + " ", style="bold green" if row.chosen else "")
        name.append(rec.name, style="bold" if row.chosen else dim)
        delta = Text(delta_text(report, row.accuracy_delta) if ran and not is_baseline(row) else "–",
                     style="red" if ran and over_budget(report, row) else dim)
        cells = [name] + ([Text(lineage_text(row), style=dim)] if wide else [])
        t.add_row(
            *cells,
            Text(speedup_text(row), style=dim),
            Text(_objective_value(report, row)[0], style=dim),
            Text(accuracy_text(report, rec.accuracy) if ran else "–", style=dim),
            delta,
            Text(size_text(rec.size_bytes), style=dim),
            Text(size_text(row.peak_memory_bytes) if ran else "–", style=dim),
            Text(verdict, style=vstyle),
        )
    console.print(t)
    if not wide:
        for row in report.rows:
            if not is_baseline(row):
                console.print(Text(f"  {row.record.name}: {lineage_text(row)}", style="dim"))
    for line, style in _trailer(report):
        console.print(Text(line, style=style))


# --------------------------------------------------------------------------- HTML and JSON


def html_section(report: "OptimizeReport") -> str:
    """The run's table for the HTML report, with the choice, notes and outputs under it."""
    from . import html_tables as T

    rows: list[list[Any]] = []
    for row in report.rows:
        rec = row.record
        ran = rec.status == "ok"
        marks = ("✓ " if row.chosen else "") + ("★ " if row.on_front else "")
        name = f'{T.esc(marks)}<span class="mono">{T.esc(rec.name)}</span>'
        if row.chosen:
            name = f"<b>{name}</b>"
        lineage = _lineage(row)
        lin = (T.esc(" → ".join(lineage)) if lineage else f'<span class="muted">{T.esc(lineage_text(row))}</span>')
        sp = speedup_text(row)
        value, _, ci = sp.partition(" [")
        sp_html = T.esc(value) + (f'<br><small class="muted">[{T.esc(ci)}</small>' if ci else "")
        obj_text, obj_raw = _objective_value(report, row)
        d_text = delta_text(report, row.accuracy_delta) if ran and not is_baseline(row) else "–"
        d_html = T.esc(d_text)
        if ran and over_budget(report, row):
            d_html = f'<span class="warn">{d_html}</span>'
        verdict, _ = _verdict(row)
        if rec.status == "failed":
            v_html = f'<span class="badge bad">failed</span> {T.esc(rec.reason or row.verdict)}'
        elif rec.status == "skipped":
            v_html = f'<span class="muted">skipped: {T.esc(rec.reason or row.verdict)}</span>'
        elif row.chosen:
            v_html = f'<span class="badge ok">chosen</span> {T.esc(verdict)}'
        elif "budget exceeded" in verdict:
            v_html = f'<span class="warn">{T.esc(verdict)}</span>'
        else:
            v_html = T.esc(verdict)
        rows.append([
            T.Cell(name, sort=rec.name),
            T.Cell(lin, sort=" → ".join(lineage)),
            T.Cell(sp_html, sort=row.speedup if ran and row.speedup is not None else "", num=True),
            T.Cell(T.esc(obj_text), sort=obj_raw if obj_raw is not None else "", num=True),
            T.Cell(T.esc(accuracy_text(report, rec.accuracy) if ran else "–"),
                   sort=rec.accuracy if ran and rec.accuracy is not None else "", num=True),
            T.Cell(d_html, sort=row.accuracy_delta if ran and row.accuracy_delta is not None else "", num=True),
            T.Cell(T.esc(size_text(rec.size_bytes)), sort=rec.size_bytes if rec.size_bytes is not None else "", num=True),
            T.Cell(T.esc(size_text(row.peak_memory_bytes) if ran else "–"),
                   sort=row.peak_memory_bytes if ran and row.peak_memory_bytes is not None else "", num=True),
            T.Cell(v_html, sort=verdict),
        ])
    headers = ["candidate", "lineage", "speed-up [CI]", objective_label(report), report.accuracy_name, "Δ vs baseline",
               "size", "peak memory", "verdict"]
    parts = [
        f'<div class="optimize" id="optimize-{T.esc(report.session)}">',
        f"<h3>{T.esc(_title(report))}</h3>",
        f'<p class="muted">{T.esc(footnote(report))}.</p>',
        T.table(headers, rows, id=f"optimize-table-{report.session}", cls="sortable"),
    ]
    ch = report.choice
    badge = "ok" if ch.within_budget and ch.chosen else "bad"
    parts.append(f'<p><span class="badge {badge}">{"chosen" if ch.chosen else "no choice"}</span> {T.esc(ch.message)}</p>')
    extra = [(line, style) for line, style in _trailer(report)[1:]]
    if extra:
        parts.append("<ul>" + "".join(
            f'<li class="{"warn" if style else "muted"}">{T.esc(line)}</li>' for line, style in extra) + "</ul>")
    parts.append("</div>")
    return "\n".join(parts)


def optimize_json(report: "OptimizeReport") -> dict[str, Any]:
    """The report as JSON-ready data (the schema's own dump)."""
    return report.model_dump(mode="json")
