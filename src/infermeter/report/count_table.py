"""Terminal rendering of counted work (:class:`WorkCount`). Reads, computes nothing new.

Every figure carries its unit (FLOP with a k/M/G/T prefix, bytes in decimal kB/MB/GB,
intensity in FLOP/B), and every table states the FLOPs convention under it, since
many tools report MACs instead.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from ..predict.schema import FLOPS_CONVENTION, OpCount, WorkCount

__all__ = ["flop_text", "byte_text", "intensity_text", "layer_of", "render_count", "render_counts", "counts_json",
           "BY_CHOICES"]

BY_CHOICES = ("op", "class", "layer")


def flop_text(x: float) -> str:
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.0f} FLOP"


def byte_text(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def intensity_text(flops: float, nbytes: float) -> str:
    return f"{flops / nbytes:.3g} FLOP/B" if nbytes else "–"


def _op(op: str) -> str:
    """``aten.linear.default`` → ``linear``; other overloads keep their name (``add.Tensor``)."""
    return op.removeprefix("aten.").removesuffix(".default")


def layer_of(op: OpCount, backend: str) -> str:
    """Per-layer key: the module path (torch), or the scope of an ONNX node name
    (``/layers.0/qkv/MatMul`` → ``layers.0.qkv``); other node names stand for themselves."""
    if backend == "onnx" and op.name.startswith("/"):
        parts = [p for p in op.name.strip("/").split("/")[:-1] if p]
        return ".".join(parts) or "(root)"
    return op.name


def _group(ops: Iterable[OpCount], key: Any) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for o in ops:
        k = key(o)
        r = rows.setdefault(k, {"key": k, "ops": 0, "flops": 0.0, "weight": 0, "act": 0})
        r["ops"] += 1
        r["flops"] += o.flops
        r["weight"] += o.weight_bytes
        r["act"] += o.read_bytes + o.write_bytes
    return sorted(rows.values(), key=lambda r: (-r["flops"], -(r["weight"] + r["act"]), r["key"]))


def _share(x: float, total: float) -> str:
    return f"{100 * x / total:.1f}%" if total else "–"


_OP_COLUMNS = ("#", "name", "op", "class", "FLOPs", "weights", "act read", "act write", "act bytes", "intensity",
               "shapes")
_RIGHT = {"#", "FLOPs", "weights", "act read", "act write", "act bytes", "intensity"}
# Figures are never cut: text columns give way (down to these widths, with an ellipsis), and
# on a narrower terminal whole columns go: shapes, then the op index, op name and read/write split.
_GIVES = {"shapes": 30, "op": 12, "name": 12, "class": 9}
_LAYOUTS = (
    ("#", "name", "op", "class", "FLOPs", "weights", "act read", "act write", "intensity", "shapes"),
    ("#", "name", "op", "class", "FLOPs", "weights", "act read", "act write", "intensity"),
    ("name", "class", "FLOPs", "weights", "act bytes", "intensity"),
)


def _op_table(wc: WorkCount, top: int, width: int = 200) -> Table:
    """Top ``top`` ops by FLOPs, in the widest layout the terminal has room for."""
    order = sorted(range(len(wc.ops)), key=lambda i: (-wc.ops[i].flops, -wc.ops[i].bytes, i))
    rows: list[list[str]] = []
    for i in order[:top]:
        o = wc.ops[i]
        cls = o.op_class if o.known else f"{o.op_class} (unknown)" if o.op_class != "unknown" else "unknown"
        rows.append([str(i), o.name, _op(o.op), cls, flop_text(o.flops), byte_text(o.weight_bytes),
                     byte_text(o.read_bytes), byte_text(o.write_bytes), byte_text(o.read_bytes + o.write_bytes),
                     intensity_text(o.flops, o.bytes), o.shapes])
    rest = [wc.ops[i] for i in order[top:]]
    if rest:
        read, write = sum(o.read_bytes for o in rest), sum(o.write_bytes for o in rest)
        rows.append(["", f"… {len(rest)} more", "", "", flop_text(sum(o.flops for o in rest)),
                     byte_text(sum(o.weight_bytes for o in rest)), byte_text(read), byte_text(write),
                     byte_text(read + write), "", ""])
    widths = {col: max([len(col), *(len(r[j]) for r in rows)]) for j, col in enumerate(_OP_COLUMNS)}
    shrunk = (lambda cols: sum(min(widths[c], _GIVES.get(c, widths[c])) + 3 for c in cols) + 1)
    layout = next((cols for cols in _LAYOUTS if shrunk(cols) <= width), _LAYOUTS[-1])
    # text columns are cut to an ellipsis by setting their widths: shapes, op, class, name last
    cap = dict(widths, shapes=min(widths["shapes"], 60))
    excess = sum(cap[c] + 3 for c in layout) + 1 - width
    for col in ("shapes", "op", "class", "name"):
        if excess > 0 and col in layout:
            cut = min(excess, cap[col] - _GIVES[col])
            cap[col] -= max(0, cut)
            excess -= max(0, cut)
    t = Table(title=f"top {min(top, len(wc.ops))} of {len(wc.ops)} ops by FLOPs", title_justify="left")
    for col in layout:
        t.add_column(col, justify="right" if col in _RIGHT else "left", overflow="ellipsis", no_wrap=True,
                     width=cap[col] if col in _GIVES else None, min_width=None if col in _GIVES else widths[col])
    index = [_OP_COLUMNS.index(c) for c in layout]
    for r in rows:
        t.add_row(*(r[j] for j in index))
    return t


def _group_table(wc: WorkCount, by: str, top: int) -> Table:
    """Ops summed per op class (all of them) or per layer (the top ``top`` by FLOPs)."""
    groups = _group(wc.ops, (lambda o: o.op_class) if by == "class" else (lambda o: layer_of(o, wc.backend)))
    shown = groups if by == "class" else groups[:top]
    rest = [] if by == "class" else groups[top:]
    title = f"{len(groups)} op classes" if by == "class" else f"top {len(shown)} of {len(groups)} layers by FLOPs"
    total = wc.flops
    rows = [[r["key"], str(r["ops"]), flop_text(r["flops"]), _share(r["flops"], total), byte_text(r["weight"]),
             byte_text(r["act"]), intensity_text(r["flops"], r["weight"] + r["act"])] for r in shown]
    if rest:
        fl = sum(r["flops"] for r in rest)
        rows.append([f"… {len(rest)} more", str(sum(r["ops"] for r in rest)), flop_text(fl), _share(fl, total),
                     byte_text(sum(r["weight"] for r in rest)), byte_text(sum(r["act"] for r in rest)), ""])
    t = Table(title=title, title_justify="left")
    for j, col in enumerate(("class" if by == "class" else "layer", "ops", "FLOPs", "share", "weights", "act bytes",
                             "intensity")):
        widest = max([len(col), *(len(r[j]) for r in rows)])
        t.add_column(col, justify="left" if j == 0 else "right", overflow="ellipsis", no_wrap=j > 0,
                     min_width=min(widest, 14) if j == 0 else widest)
    for r in rows:
        t.add_row(*r)
    return t


def _params(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return str(n)


def _totals(wc: WorkCount) -> list[str]:
    bs = max(1, wc.batch_size)
    weight = sum(o.weight_bytes for o in wc.ops)
    read = sum(o.read_bytes for o in wc.ops)
    write = sum(o.write_bytes for o in wc.ops)
    views = sum(1 for o in wc.ops if o.note.startswith(("view", "folded")))
    unknown = sum(1 for o in wc.ops if not o.known)
    return [
        f"params       {_params(wc.params)} ({byte_text(wc.param_bytes)})",
        f"FLOPs        {flop_text(wc.flops)} per batch of {bs}, {flop_text(wc.flops / bs)} per sample",
        f"bytes moved  {byte_text(wc.bytes)} per batch (weights {byte_text(weight)}, activations read "
        f"{byte_text(read)}, written {byte_text(write)}), {byte_text(wc.bytes / bs)} per sample",
        f"intensity    {intensity_text(wc.flops, wc.bytes)} (FLOPs / bytes moved, nothing kept in cache between ops)",
        f"ops          {len(wc.ops)} ({views} views or folded constants, {unknown} unknown)",
        wc.flops_convention or FLOPS_CONVENTION,
    ]


def unknown_line(wc: WorkCount) -> str | None:
    """One line naming the ops the counter does not know (their FLOPs are not counted)."""
    if not wc.unknown_ops:
        return None
    calls: dict[str, int] = {}
    for o in wc.ops:
        if not o.known:
            calls[o.op] = calls.get(o.op, 0) + 1
    names = ", ".join(f"{k.removesuffix('.default')} ×{v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
    names = names or ", ".join(wc.unknown_ops)
    return (f"warning: {len(wc.unknown_ops)} op type(s) the counter does not know; their FLOPs are not counted "
            f"(bytes are): {names}")


def render_count(wc: WorkCount, console: Console, *, by: str = "op", top: int = 20) -> None:
    """One batch size: the table (per op, class or layer), totals, and unknown ops."""
    dims = ", ".join(f"{k}={v}" for k, v in wc.dims.items())
    console.print(f"[bold]{wc.spec}[/bold]  batch {wc.batch_size}{'  ' + dims if dims else ''}  ({wc.backend})")
    console.print(f"counted by {wc.method}", style="dim", markup=False)
    console.print(_op_table(wc, top, console.width) if by == "op" else _group_table(wc, by, top))
    for line in _totals(wc):
        console.print(line, markup=False, highlight=False)
    warn = unknown_line(wc)
    if warn:
        console.print(warn, style="yellow", markup=False)


def render_counts(counts: Sequence[WorkCount], console: Console, *, by: str = "op", top: int = 20) -> None:
    """Several batch sizes: each in turn, then a summary across them."""
    for i, wc in enumerate(counts):
        if i:
            console.print()
        render_count(wc, console, by=by, top=top)
    if len(counts) > 1:
        console.print()
        t = Table(title="across batch sizes", title_justify="left")
        for col in ("batch", "FLOPs per batch", "FLOPs per sample", "bytes per batch", "bytes per sample", "intensity"):
            t.add_column(col, justify="right")
        for wc in counts:
            bs = max(1, wc.batch_size)
            t.add_row(str(wc.batch_size), flop_text(wc.flops), flop_text(wc.flops / bs), byte_text(wc.bytes),
                      byte_text(wc.bytes / bs), intensity_text(wc.flops, wc.bytes))
        console.print(t)


def counts_json(counts: Sequence[WorkCount]) -> str:
    """``{"schema": "infermeter.count/1", "counts": [WorkCount …], "totals": […]}``; each entry
    of ``counts`` loads back with ``WorkCount.model_validate``."""
    doc = {
        "schema": "infermeter.count/1",
        "flops_convention": FLOPS_CONVENTION,
        "counts": [wc.model_dump(mode="json") for wc in counts],
        "totals": [
            {"batch_size": wc.batch_size, "params": wc.params, "param_bytes": wc.param_bytes, "flops": wc.flops,
             "flops_per_sample": wc.flops_per_sample, "bytes": wc.bytes,
             "bytes_per_sample": wc.bytes / max(1, wc.batch_size), "by_class": wc.by_class(),
             "unknown_ops": list(wc.unknown_ops)}
            for wc in counts
        ],
    }
    return json.dumps(doc, indent=2)
