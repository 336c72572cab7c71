"""Where the time goes, as text: the phases of a profiled run and its top operators.

:func:`top_rows` is the one place the table's figures are formed (per iteration,
share, running share, the rest folded into one row), so the terminal
(:func:`render_profile`), the HTML report (:func:`html_section`) and the chart
(``plots_profile``) show the same numbers. Reads a :class:`Result`; computes no
statistic (medians and CIs come stored in it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from rich import box
from rich.console import Console
from rich.table import Table

from ..predict.schema import OpProfile, OpTime
from ..result import Result
from .console import estimate, ms

__all__ = ["ProfileRow", "top_rows", "phase_rows", "render_profile", "html_section", "BY", "PHASE_LABELS"]

BY = ("type", "node")
PHASE_LABELS = {
    "load": "model load",
    "input_prep": "input preparation (prepare)",
    "h2d_copy": "host→device copy",
    "forward": "forward pass (unprofiled p50)",
    "output_copy": "output copy to host",
}


@dataclass(frozen=True)
class ProfileRow:
    """One line of the top-N table; ``rank`` 0 is the folded rest, -1 the total."""

    rank: int
    key: str
    op_class: str
    calls_per_iter: float
    per_iter_s: float
    share: float
    cumulative: float


def _entries(op: OpProfile, by: str) -> list[OpTime]:
    if by not in BY:
        from ..errors import UsageError

        raise UsageError(f"--by '{by}' is not a view of the profile; use one of {', '.join(BY)}")
    return op.by_type if by == "type" else op.by_node


def top_rows(op: OpProfile, by: Literal["type", "node"] | str = "type", top: int = 15) -> list[ProfileRow]:
    """The ``top`` keys by time, then one row for the rest (if any), then the total."""
    entries = _entries(op, by)
    n = max(1, op.iterations)
    rows: list[ProfileRow] = []
    cum = 0.0
    for i, t in enumerate(entries[: max(0, top)], 1):
        cum += t.share
        rows.append(ProfileRow(i, t.key, t.op_class or "–", t.calls / n, t.per_iter_s, t.share, min(cum, 1.0)))
    rest = entries[max(0, top):]
    if rest:
        rows.append(ProfileRow(
            0, f"({len(rest)} more)", "–", sum(t.calls for t in rest) / n, sum(t.per_iter_s for t in rest),
            sum(t.share for t in rest), 1.0,
        ))
    rows.append(ProfileRow(-1, "total", "", sum(t.calls for t in entries) / n, op.op_total_per_iter_s,
                           1.0 if entries else 0.0, 1.0 if entries else 0.0))
    return rows


def phase_rows(r: Result) -> list[tuple[str, str]]:
    """(label, value) for every phase measured, in the order a call goes through them."""
    op = r.op_profile
    out: list[tuple[str, str]] = []
    if r.phases.import_s is not None:
        out.append(("backend import", ms(r.phases.import_s)))
    phases = dict(op.phases) if op is not None else {}
    if r.phases.load_s is not None:
        phases.setdefault("load", r.phases.load_s)
    if "load" in phases:
        out.append((PHASE_LABELS["load"], ms(phases["load"])))
    if r.phases.first_inference_s is not None:
        out.append(("first inference (cold)", ms(r.phases.first_inference_s)))
    for key in ("input_prep", "h2d_copy", "forward", "output_copy"):
        if key not in phases:
            continue
        if key == "forward" and r.latency is not None:
            value = f"{estimate(r.latency.p50)} (n = {r.latency.count})"
        else:
            value = ms(phases[key]) + (" (median of 10)" if key != "forward" else "")
        out.append((PHASE_LABELS[key], value))
    for key, v in phases.items():
        if key not in PHASE_LABELS:
            out.append((key, ms(v)))
    return out


def _calls(x: float) -> str:
    return f"{x:,.0f}" if abs(x - round(x)) < 1e-9 else f"{x:,.2f}"


def _what(r: Result, by: str) -> str:
    return "op types" if by == "type" else ("layers (module paths)" if r.model.backend == "torch" else "nodes")


def render_profile(r: Result, console: Console, *, top: int = 15, by: str = "type") -> None:
    """The run's header, phases, top-``top`` table by op type or by layer, and notes."""
    m, op = r.model, r.op_profile
    bits = [m.backend, m.device] + ([m.dtype] if m.dtype else []) + ([f"{m.params:,} params"] if m.params else [])
    console.print(f"[bold]{m.spec}[/bold] ({', '.join(bits)})  batch {r.batch_size}  inputs: {'; '.join(m.inputs)}")
    phases = Table(title="phases", title_justify="left", show_header=False, box=None, padding=(0, 2))
    phases.add_column("phase", style="bold")
    phases.add_column("time", justify="right")
    for label, value in phase_rows(r):
        phases.add_row(label, value)
    console.print(phases)
    if op is None or (not op.by_type and not op.by_node):
        console.print("[dim]no operator profile: the model stopped before it was profiled[/dim]")
    else:
        entries = _entries(op, by)
        title = (f"top {min(top, len(entries))} of {len(entries)} {_what(r, by)} by self time — {op.profiler}, "
                 f"{op.iterations} iterations after {op.warmup} warm-up, {op.device}")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True)
        table.add_column("#", justify="right", no_wrap=True)
        longest = max((len(t.key) for t in entries[:top]), default=8)
        table.add_column("op type" if by == "type" else "layer", overflow="fold", min_width=min(longest, 20))
        for name in ("class", "calls/iter", "ms/iter", "share", "cum."):
            table.add_column(name, justify="left" if name == "class" else "right", no_wrap=True)
        rows = top_rows(op, by, top)
        for i, row in enumerate(rows):
            cells = [
                str(row.rank) if row.rank > 0 else "", row.key, row.op_class, _calls(row.calls_per_iter),
                f"{row.per_iter_s * 1e3:.4g}", f"{row.share:.1%}", f"{row.cumulative:.1%}" if row.rank >= 0 else "",
            ]
            table.add_row(*cells, style="bold" if row.rank < 0 else ("dim" if row.rank == 0 else None),
                          end_section=i == len(rows) - 2)  # a rule above the total
        console.print(table)
        console.print(f"summed op self time {ms(op.op_total_per_iter_s)} per iteration "
                      f"({len(op.by_type)} op types, {len(op.by_node)} {'layers' if m.backend == 'torch' else 'nodes'})")
        for note in op.notes:
            console.print(f"[dim]note[/dim] {note}")
    for w in r.warnings:
        console.print(f"[yellow]warning[/yellow] {w}")
    if r.error:
        console.print(f"[red]error[/red] {r.error}")


def html_section(r: Result, top: int = 15, by_views: Sequence[str] = BY) -> str:
    """The profile of one run for the HTML report: phases, then a table per view."""
    from . import html_tables as T

    op = r.op_profile
    if op is None:
        return ""
    parts = [f'<div class="profile" id="profile-{T.esc(r.id)}"><h4>Where the time goes</h4>',
             T.table(["phase", "time"], [[label, value] for label, value in phase_rows(r)])]
    for by in by_views:
        entries = _entries(op, by)
        if not entries:
            continue
        parts.append(
            f'<p class="muted">Top {min(top, len(entries))} of {len(entries)} {T.esc(_what(r, by))} by self time '
            f"({T.esc(op.profiler)}, {op.iterations} iterations after {op.warmup} warm-up, {T.esc(op.device)}); "
            f"summed op time {T.esc(ms(op.op_total_per_iter_s))} per iteration.</p>"
        )
        rows = []
        for row in top_rows(op, by, top):
            rows.append([
                T.Cell(str(row.rank) if row.rank > 0 else "", sort=row.rank, num=True),
                T.Cell(f'<span class="mono">{T.esc(row.key)}</span>' if row.rank > 0 else f"<b>{T.esc(row.key)}</b>",
                       sort=row.key),
                row.op_class,
                T.Cell(T.esc(_calls(row.calls_per_iter)), sort=row.calls_per_iter, num=True),
                T.Cell(T.esc(f"{row.per_iter_s * 1e3:.4g}"), sort=row.per_iter_s, num=True),
                T.Cell(T.esc(f"{row.share:.1%}"), sort=row.share, num=True),
                T.Cell(T.esc(f"{row.cumulative:.1%}") if row.rank >= 0 else "", sort=row.cumulative, num=True),
            ])
        head = "op type" if by == "type" else "layer"
        parts.append(T.table(["#", head, "class", "calls/iter", "ms/iter", "share", "cumulative"], rows,
                             id=f"profile-{by}-{r.id}"))
    if op.notes:
        parts.append("<ul>" + "".join(f'<li class="muted">{T.esc(n)}</li>' for n in op.notes) + "</ul>")
    parts.append("</div>")
    return "\n".join(parts)
