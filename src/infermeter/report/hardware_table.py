"""Terminal rendering of the spec-sheet table (``infermeter hardware``). Computes nothing.

Peaks in TFLOP/s (TOP/s for int8), bandwidth in GB/s (decimal, as vendors
publish it), memory in GiB; every row names its source.
"""

from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.table import Table

from ..predict.hardware import DTYPES
from ..predict.schema import HardwareSpec

__all__ = ["render_hardware_table", "render_hardware_entry", "short_source"]

_SHORT = {"float64": "fp64", "float32": "fp32", "tf32": "tf32", "bfloat16": "bf16", "float16": "fp16", "float8": "fp8", "int8": "int8"}


def _tflops(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x / 1e12:,.1f}" if x >= 10e12 else f"{x / 1e12:.3g}"


def _gib(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**30:,.0f}"


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} B"


def short_source(source: str, width: int = 48) -> str:
    """The document's title without its URL, cut to ``width`` characters for a table cell."""
    title = source.split("(http")[0].strip().rstrip(",;")
    return title if len(title) <= width else title[: width - 1].rstrip() + "…"


def render_hardware_table(specs: Sequence[HardwareSpec], console: Console) -> None:
    """One row per entry: kind, dense peaks per dtype, bandwidth, memory, source."""
    table = Table(title="spec-sheet hardware (dense peaks, TFLOP/s; int8 TOP/s)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("kind")
    for d in DTYPES:
        table.add_column(_SHORT[d], justify="right")
    table.add_column("GB/s", justify="right")
    table.add_column("GiB", justify="right")
    table.add_column("source")
    for s in specs:
        table.add_row(
            s.name, s.kind, *(_tflops(s.peak_flops.get(d)) for d in DTYPES),
            f"{s.memory_bandwidth / 1e9:,.0f}", _gib(s.memory_bytes), short_source(s.source),
        )
    console.print(table)
    console.print(
        "– : not published (or not supported). CPU peaks are derived (cores x clock x FLOP/cycle): "
        "`infermeter hardware NAME` shows how, with each entry's notes and source URL."
    )


def render_hardware_entry(spec: HardwareSpec, console: Console) -> None:
    """Everything one entry says, notes and source in full."""
    console.print(f"[bold]{spec.name}[/bold] ({spec.kind}{', ' + spec.vendor if spec.vendor else ''})")
    if spec.aliases:
        console.print(f"aliases: {', '.join(spec.aliases)}")
    table = Table(show_header=True)
    table.add_column("dtype")
    table.add_column("dense peak", justify="right")
    for d, v in spec.peak_flops.items():
        unit = "TOP/s" if d.startswith("int") else "TFLOP/s"
        table.add_row(d, f"{_tflops(v)} {unit}")
    console.print(table)
    console.print(f"memory bandwidth: {spec.memory_bandwidth / 1e9:,.1f} GB/s")
    console.print(f"memory: {_gib(spec.memory_bytes)} GiB" if spec.memory_bytes else "memory: – (depends on the system)")
    if spec.caches:
        console.print("caches: " + ", ".join(f"{k} {_bytes(v)}" for k, v in spec.caches.items()))
    if spec.cores:
        console.print(f"cores/SMs/CUs: {spec.cores}")
    if spec.tdp_w:
        console.print(f"power: {spec.tdp_w:g} W")
    console.print(f"source: {spec.source}", markup=False)
    if spec.notes:
        console.print(f"notes: {spec.notes}", markup=False)
