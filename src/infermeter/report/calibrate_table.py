"""The summary of a hardware profile on the console (``infermeter calibrate``,
``infermeter calibrate --show``).

Reads :func:`infermeter.predict.profiles.profile_summary` (the figures, as
data) and only formats them: GFLOP/s, GB/s, µs, each with its unit.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..predict.schema import HardwareProfile
from .console import size

__all__ = ["render_profile", "gflops", "gbps", "us"]

_BW_KINDS = ("copy", "elementwise", "reduction", "normalization", "transpose", "activation", "pooling")
_BW_HEAD = {"copy": "copy", "elementwise": "add", "reduction": "sum", "normalization": "layer_norm", "transpose": "transpose",
            "activation": "gelu", "pooling": "max_pool"}


def gflops(x: float | None) -> str:
    return "–" if x is None else f"{x / 1e9:,.1f} GFLOP/s"


def gbps(x: float | None) -> str:
    return "–" if x is None else f"{x / 1e9:,.1f} GB/s"


def us(x: float | None) -> str:
    return "–" if x is None else f"{x * 1e6:.3g} µs"


def _time(x: float) -> str:
    return f"{x * 1e3:.4g} ms" if x >= 1e-3 else us(x)


def render_profile(p: HardwareProfile, console: Console) -> None:
    """Header, GEMM, conv/attention, bandwidth staircase, dispatch overhead, notes."""
    from ..predict.profiles import profile_summary

    s = profile_summary(p)
    console.print(
        f"[bold]{s['name']}[/bold]  {s['device_name'] or s['device']}  ·  {s['threads']} thread(s)  ·  "
        f"dtypes {', '.join(s['dtypes']) or '–'}  ·  {s['duration_s']:.1f} s  ·  {s['created']}"
    )
    console.print(f"source: {s['source']}")
    for dt, why in s["skipped_dtypes"].items():
        console.print(f"skipped {dt}: {why}")

    t = Table(title="GEMM (F.linear), attainable rate", title_justify="left")
    for col in ("dtype", "best", "at m×n×k", "best at M=1", "at m×n×k", "median at M=1", "points"):
        t.add_column(col, justify="right" if col not in ("dtype", "at m×n×k") else "left")
    for dt, g in s["gemm"].items():
        t.add_row(dt, gflops(g["best"]), g["best_shape"], gflops(g["m1_best"]), g["m1_shape"], gflops(g["m1_median"]), str(g["points"]))
    console.print(t)

    if s["conv"]:
        t = Table(title="convolution and attention, best rate", title_justify="left")
        for col in ("kind", "dtype", "best", "at"):
            t.add_column(col, justify="right" if col == "best" else "left")
        for key, c in s["conv"].items():
            kind, dt = key.rsplit(" ", 1)
            t.add_row(kind, dt, gflops(c["best"]), c["label"])
        console.print(t)

    if s["bandwidth"]:
        t = Table(title="memory bandwidth per level (working set ≤ half the level; bytes read + written)", title_justify="left")
        t.add_column("level")
        t.add_column("size", justify="right")
        t.add_column("working set", justify="right")
        for k in _BW_KINDS:
            t.add_column(_BW_HEAD[k], justify="right")
        for row in s["bandwidth"]:
            t.add_row(row["level"], size(row["cache_bytes"]), size(row["working_set"]), *(gbps(row.get(k)) for k in _BW_KINDS))
        console.print(t)

    if s["overhead"]:
        t = Table(title="dispatch overhead (median; spread = IQR / median)", title_justify="left")
        for col in ("backend", "threads", "per call", "spread"):
            t.add_column(col, justify="left" if col == "backend" else "right")
        for o in s["overhead"]:
            t.add_row(_backend_label(o["backend"]), str(o["threads"]), us(o["seconds"]), f"{o['spread']:.1%}")
        console.print(t)

    if p.sequence:
        t = Table(title="ops in sequence: synthetic chains measured whole vs the sum of their isolated points",
                  title_justify="left")
        for col in ("chain", "dtype", "ops", "isolated sum", "measured", "ratio"):
            t.add_column(col, justify="left" if col in ("chain", "dtype") else "right")
        for q in p.sequence:
            t.add_row(q.label, q.dtype, str(q.ops), _time(q.predicted_s), _time(q.measured_s), f"{q.ratio:.2f}x")
        console.print(t)

    for note in p.env.get("notes") or []:
        console.print(f"[yellow]note[/yellow] {note}")
    if s["skipped_count"]:
        console.print(f"{s['skipped_count']} point(s) left out (budget, memory, or a kernel this build lacks): see env.skipped in the profile")


def _backend_label(backend: str) -> str:
    return {"onnxruntime": "onnxruntime (per node)", "onnxruntime-run": "onnxruntime (per session.run)", "torch": "torch (per op)"}.get(backend, backend)
