"""Console rendering of predictions: per batch size, per op type, per op class."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from ..predict.schema import Prediction

__all__ = ["render_predictions", "aggregate_ops"]


def _ms(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s * 1e3:.4g} ms" if s >= 1e-4 else f"{s * 1e6:.3g} µs"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def aggregate_ops(pred: Prediction) -> list[dict[str, Any]]:
    """Per op type: calls, time, share, flops, and the bound most of its time has."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for o in pred.ops:
        r = rows.setdefault((o.op, o.op_class), {"op": o.op, "op_class": o.op_class, "calls": 0, "time_s": 0.0,
                                                 "flops": 0.0, "bytes": 0, "bounds": Counter()})
        r["calls"] += 1
        r["time_s"] += o.time_s
        r["flops"] += o.flops
        r["bytes"] += o.bytes
        r["bounds"][o.bound] += o.time_s
    total = pred.latency_s or 1.0
    out = []
    for r in rows.values():
        r["share"] = r["time_s"] / total
        r["bound"] = r["bounds"].most_common(1)[0][0] if r["bounds"] else "unknown"
        del r["bounds"]
        out.append(r)
    return sorted(out, key=lambda r: -r["time_s"])


def render_predictions(preds: Sequence[Prediction], console: Console, *, top: int = 12) -> None:
    if not preds:
        return
    first = preds[0]
    console.print(f"[bold]{first.spec}[/bold] on [bold]{first.hardware}[/bold]")
    console.print(f"machine: {first.hardware_source}")
    measured = any(p.measured_latency_s is not None for p in preds)
    t = Table(title="predicted latency per batch (roofline per op, ops summed)")
    t.add_column("batch", justify="right")
    t.add_column("predicted latency", justify="right")
    t.add_column("throughput (samples/s)", justify="right")
    t.add_column("GFLOP/batch", justify="right")
    t.add_column("ops", justify="right")
    if measured:
        t.add_column("measured p50", justify="right")
        t.add_column("error", justify="right")
    for p in preds:
        row = [str(p.batch_size), _ms(p.latency_s), f"{p.throughput_samples_per_s:,.1f}", f"{p.flops / 1e9:.3f}", str(len(p.ops))]
        if measured:
            row += [_ms(p.measured_latency_s), _pct(p.error)]
        t.add_row(*row)
    console.print(t)
    for p in preds:
        ops = Table(title=f"batch {p.batch_size}: top op types by predicted time")
        for col in ("op", "class", "calls", "time", "share", "bound", "GFLOP"):
            ops.add_column(col, justify="left" if col in ("op", "class", "bound") else "right")
        for r in aggregate_ops(p)[:top]:
            ops.add_row(r["op"], r["op_class"], str(r["calls"]), _ms(r["time_s"]), f"{r['share'] * 100:.1f}%", r["bound"],
                        f"{r['flops'] / 1e9:.3f}")
        console.print(ops)
        if p.measured_by_class:
            c = Table(title=f"batch {p.batch_size}: per op class, predicted vs profiler (self time per iteration)")
            for col in ("class", "predicted", "profiled", "error"):
                c.add_column(col, justify="left" if col == "class" else "right")
            prof_total = sum(p.measured_by_class.values())
            scale = (p.measured_latency_s / prof_total) if (p.measured_latency_s and prof_total) else 1.0
            for cls in sorted(set(p.by_class) | set(p.measured_by_class), key=lambda k: -p.by_class.get(k, 0.0)):
                pr, me = p.by_class.get(cls), p.measured_by_class.get(cls)
                err = (pr - me * scale) / (me * scale) if pr is not None and me else None
                c.add_row(cls, _ms(pr), _ms(me * scale if me is not None else None), _pct(err))
            console.print(c)
            console.print("profiled class times are scaled to the measured p50 (the profiler's own overhead removed pro rata)")
    for note in dict.fromkeys(n for p in preds for n in p.notes):
        console.print(f"note: {note}")


def html_section(r: Any, top: int = 15) -> str:
    """The prediction of one run for the HTML report: the figure, the top op types."""
    from . import html_tables as T

    p: Prediction | None = r.prediction
    if p is None:
        return ""
    head = [f'<div class="prediction" id="prediction-{T.esc(r.id)}"><h4>Predicted</h4>',
            f'<p class="muted">On {T.esc(p.hardware)} — {T.esc(p.hardware_source)}. {T.esc(p.method)}.</p>']
    summary = [["predicted latency", _ms(p.latency_s)], ["predicted throughput", f"{p.throughput_samples_per_s:,.1f} samples/s"],
               ["FLOPs per batch", f"{p.flops / 1e9:.4g} GFLOP (2 x MACs)"], ["ops", str(len(p.ops))]]
    if p.measured_latency_s is not None:
        summary += [["measured p50 here", _ms(p.measured_latency_s)], ["prediction error", _pct(p.error)]]
    head.append(T.table(["figure", "value"], summary))
    rows = []
    for row in aggregate_ops(p)[:top]:
        rows.append([
            T.Cell(f'<span class="mono">{T.esc(row["op"])}</span>', sort=row["op"]),
            row["op_class"],
            T.Cell(str(row["calls"]), sort=row["calls"], num=True),
            T.Cell(T.esc(f"{row['time_s'] * 1e3:.4g}"), sort=row["time_s"], num=True),
            T.Cell(T.esc(f"{row['share']:.1%}"), sort=row["share"], num=True),
            row["bound"],
        ])
    head.append(T.table(["op type", "class", "calls", "predicted ms", "share", "bound"], rows, id=f"prediction-ops-{r.id}"))
    if p.notes:
        head.append("<ul>" + "".join(f'<li class="muted">{T.esc(n)}</li>' for n in p.notes) + "</ul>")
    head.append("</div>")
    return "\n".join(head)
