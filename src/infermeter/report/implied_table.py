"""Terminal rendering of :class:`Implied` (``infermeter implied``). Computes nothing.

Seconds in the object, ms on screen; rates in SI prefixes; utilisation as a
percentage. Every row shows the formula it came from, and flags come last,
worst first.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.table import Table

from ..predict.implied import Implied

__all__ = ["render_implied", "format_value"]

_STYLE = {"impossible": "bold red", "suspicious": "yellow", "info": "dim"}
_ORDER = {"impossible": 0, "suspicious": 1, "info": 2}


def _si(x: float, unit: str) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {prefix}{unit}"
    return f"{x:.4g} {unit}"


def format_value(value: float, unit: str) -> str:
    """A derived value as a person reads it: 2.133 ms, 675 TFLOP/s, 68.2%."""
    if unit == "s":
        if value >= 1:
            return f"{value:.4g} s"
        if value >= 1e-3:
            return f"{value * 1e3:.4g} ms"
        return f"{value * 1e6:.4g} µs"
    if unit == "ratio":
        return f"{value * 100:.3g}%"
    if unit == "samples/s":
        return f"{value:,.1f} samples/s" if value < 1e6 else _si(value, "samples/s")
    if unit == "samples":
        return f"{value:.4g} samples"
    return _si(value, unit)


def render_implied(result: Implied, console: Console, notes: Sequence[str] = ()) -> None:
    """Header (hardware, dtype), the figure | value | formula table, then flags and the verdict."""
    bits = []
    if result.hardware:
        bits.append(result.hardware)
    if result.dtype:
        bits.append(result.dtype)
    head = f"implied by the published figures{' on ' + ', '.join(bits) if bits else ''}"
    console.print(f"[bold]{head}[/bold]")
    table = Table(show_header=True)
    table.add_column("figure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("formula")
    for f in result.figures:
        table.add_row(f.name, format_value(f.value, f.unit), f.formula)
    console.print(table)
    for line in notes:
        console.print(line, style="dim", markup=False)
    for flag in sorted(result.flags, key=lambda x: _ORDER[x.level]):
        console.print(f"{flag.level}: {flag.message}", style=_STYLE[flag.level], markup=False)
    verdict = result.verdict
    style = _STYLE.get(verdict, "green")
    console.print(f"verdict: {verdict}", style=style)
    if result.hardware_source:
        console.print(f"hardware source: {result.hardware_source}", style="dim", markup=False)
