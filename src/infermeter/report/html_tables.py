"""The report's tables as HTML: per-run summary, verdicts, warnings, models, setup, configuration
and environment. Every user-controlled string is escaped here; numbers are formatted as the
console formats them (``report.console``), milliseconds with their CIs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..result import Estimate, Result
from .console import estimate, ms, size

__all__ = [
    "esc", "Cell", "table", "summary_table", "verdict_table", "warnings_table", "models_table", "setup_table",
    "config_table", "env_table",
]


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: ``html`` is already escaped; ``sort`` is the raw value the sort script uses."""

    html: str
    sort: float | str | None = None
    num: bool = False
    span: int = 1


def _cell(c: Cell | str) -> str:
    if isinstance(c, str):
        return f"<td>{esc(c)}</td>"
    attrs = ' class="num"' if c.num else ""
    if c.sort is not None:
        attrs += f' data-sort="{esc(c.sort)}"'
    if c.span > 1:
        attrs += f' colspan="{c.span}"'
    return f"<td{attrs}>{c.html}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]], *, id: str | None = None, cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    attrs = (f' id="{esc(id)}"' if id else "") + (f' class="{esc(cls)}"' if cls else "")
    return f'<div class="table-wrap"><table{attrs}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def _est(e: Estimate | None, fmt: Callable[[float], str] = ms) -> Cell:
    """Value on the first line, its CI below in small type: narrow columns, both visible."""
    if e is None:
        return Cell("–")
    value, _, ci = estimate(e, fmt).partition(" [")
    return Cell(f'{esc(value)}<br><small class="muted">[{esc(ci)}</small>', sort=e.value, num=True)


def _list(items: Sequence[str]) -> str:
    if not items:
        return "–"
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def _run_link(r: Result) -> Cell:
    return Cell(f'<a href="#run-{esc(r.id)}" class="mono">{esc(r.id)}</a>', sort=r.id)


def _text(v: Any) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def summary_table(results: Sequence[Result]) -> str:
    """One row per run; a run's sweep point and tags are small lines under its model."""
    headers = ["run", "model", "scenario", "batch", "samples", "mean", "p50", "p90", "p95", "p99", "p99.9", "max",
               "throughput (samples/s)", "stopped by"]
    rows = []
    for r in results:
        lat = r.latency
        count = (f"{lat.count:,}" + (f" blocks of {lat.block_size}" if lat.per == "block" else "")) if lat else "0"
        run = _run_link(r)
        if r.status != "ok":
            run = Cell(run.html + ' <span class="badge bad">failed</span>', sort=r.id)
        model = esc(r.model.spec)
        if r.sweep:
            axes = ", ".join(f"{k}={_text(v)}" for k, v in r.sweep.axes.items())
            model += f'<br><small class="muted">sweep point: {esc(axes)}</small>'
        if r.tags:
            model += f'<br><small class="muted">tags: {esc(", ".join(f"{k}={v}" for k, v in r.tags.items()))}</small>'
        row: list[Cell | str] = [
            run, Cell(model, sort=r.model.spec), Cell(esc(r.scenario), sort=r.scenario),
            Cell(str(r.batch_size), sort=r.batch_size, num=True),
            Cell(count, sort=lat.count if lat else 0, num=True),
            _est(lat.mean if lat else None),
            *[_est(getattr(lat, k) if lat else None) for k in ("p50", "p90", "p95", "p99", "p999")],
            Cell(esc(ms(lat.max)), sort=lat.max, num=True) if lat else Cell("–"),
            _est(r.throughput.samples_per_s if r.throughput else None, lambda x: f"{x:,.1f}"),
            r.stop_reason or (r.error and "error") or "–",
        ]
        rows.append(row)
    return table(headers, rows, id="summary-table", cls="sortable")


def _headline(r: Result) -> Cell:
    h = r.headline
    if h is None:
        return Cell("–")
    if h.unit == "s":
        text = estimate(Estimate(value=h.value, ci_low=h.ci_low, ci_high=h.ci_high))
    else:
        fmt = lambda x: f"{x:,.4g}"  # noqa: E731
        text = estimate(Estimate(value=h.value, ci_low=h.ci_low, ci_high=h.ci_high), fmt) + f" {h.unit}"
    return Cell(f"{esc(h.metric)}: {esc(text)}", sort=h.value)


def verdict_table(results: Sequence[Result]) -> str:
    judged = [r for r in results if r.verdict is not None or r.headline is not None]
    if not judged:
        return '<p class="muted">None of these runs carries a scenario headline or verdict.</p>'
    rows = []
    for r in judged:
        v = r.verdict
        badge = ("–" if v is None else
                 f'<span class="badge {"ok" if v.valid else "bad"}">{esc(v.label)}</span>')
        rows.append([_run_link(r), Cell(esc(r.model.spec)), r.scenario, Cell(str(r.batch_size), r.batch_size, True),
                     _headline(r), Cell(badge, sort=v.label if v else ""),
                     Cell(_list(v.reasons if v else [])), Cell(_list(v.recommendations if v else []))])
    return table(["run", "model", "scenario", "batch", "headline", "verdict", "reasons", "recommendations"], rows,
                 id="verdict-table", cls="sortable")


def warnings_table(results: Sequence[Result]) -> str:
    rows: list[list[Cell | str]] = []
    for r in results:
        if r.error:
            rows.append([_run_link(r), str(r.batch_size), Cell('<span class="badge bad">error</span>'), r.error])
        for w in r.warnings:
            rows.append([_run_link(r), str(r.batch_size), Cell('<span class="warn">warning</span>'), w])
    told = {w for r in results for w in r.warnings}
    noise = list(dict.fromkeys(w for r in results if r.env for w in r.env.noise if w not in told))
    for w in noise:
        rows.append(["all", "–", Cell('<span class="warn">machine</span>'), w])
    if not rows:
        return '<p class="muted">No warnings: the runs passed every noise check.</p>'
    return table(["run", "batch", "kind", "message"], rows, id="warnings-table")


def _columns(results: Sequence[Result], value: Callable[[Result], Any]) -> list[tuple[str, Any]]:
    """Distinct values (by their JSON) in first-seen order, each headed by the runs that share it."""
    seen: dict[str, tuple[list[str], Any]] = {}
    for r in results:
        v = value(r)
        key = json.dumps(v, sort_keys=True, default=str)
        seen.setdefault(key, ([], v))[0].append(r.id)
    out = []
    for ids, v in seen.values():
        head = ids[0] if len(ids) == 1 else (f"{len(ids)} runs: " + (", ".join(ids) if len(ids) <= 4 else f"{ids[0]} … {ids[-1]}"))
        out.append((head, v))
    return out


_MAX_COLUMNS = 6


def _kv_table(columns: list[tuple[str, dict[str, Any]]], fmt: Callable[[str, Any], str], id: str) -> str:
    """Settings down, distinct values across; a setting every column shares spans them all."""
    more = len(columns) - _MAX_COLUMNS
    shown = columns[:_MAX_COLUMNS]
    keys = list(dict.fromkeys(k for _, d in shown for k in d))
    rows: list[list[Cell | str]] = []
    for k in keys:
        values = [fmt(k, d.get(k)) for _, d in shown]
        if len(shown) > 1 and len(set(values)) == 1:
            rows.append([k, Cell(esc(values[0]), span=len(shown))])
        else:
            rows.append([k, *values])
    out = table(["setting", *[h for h, _ in shown]], rows, id=id, cls="kv")
    if more > 0:
        out += f'<p class="muted">… and {more} more distinct values (all of them are in the embedded JSON).</p>'
    return out


def models_table(results: Sequence[Result]) -> str:
    cols = _columns(results, lambda r: r.model.model_dump(mode="json"))
    return _kv_table(cols, lambda k, v: size(v) if k.endswith("_bytes") and isinstance(v, int) else _text(v), "models-table")


def setup_table(results: Sequence[Result]) -> str:
    headers = ["run", "backend import", "model load", "first inference (cold)", "warm-up", "clock", "timer overhead",
               "block size", "GC off", "peak RSS (load)", "peak RSS (inference)", "peak device memory"]
    rows = []
    for r in results:
        p, t, m = r.phases, r.timer, r.memory
        rows.append([
            _run_link(r), Cell(esc(ms(p.import_s)), p.import_s, True), Cell(esc(ms(p.load_s)), p.load_s, True),
            Cell(esc(ms(p.first_inference_s)), p.first_inference_s, True),
            Cell(esc(f"{p.warmup_iters:,} calls, {p.warmup_s:.3g} s"), p.warmup_iters, True), t.clock,
            Cell("–" if t.overhead_s is None else esc(f"{t.overhead_s * 1e9:.0f} ns"), t.overhead_s, True),
            Cell(str(t.block_size), t.block_size, True), "yes" if t.gc_disabled else "no",
            Cell(esc(size(m.load_peak_rss_bytes)), m.load_peak_rss_bytes, True),
            Cell(esc(size(m.inference_peak_rss_bytes)), m.inference_peak_rss_bytes, True),
            Cell(esc(size(m.device_peak_bytes)), m.device_peak_bytes, True),
        ])
    return table(headers, rows, id="setup-table", cls="sortable")


def config_table(results: Sequence[Result]) -> str:
    return _kv_table(_columns(results, lambda r: r.config), lambda k, v: _text(v), "config-table")


def _env_value(key: str, v: Any) -> str:
    if v is None or v == "" or v == [] or v == {}:
        return "–"
    if key.endswith("_bytes") and isinstance(v, int):
        return size(v)
    if key == "cpu_flags" and isinstance(v, dict):
        return ", ".join(k for k, on in v.items() if on) or "none of those checked"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "; ".join(", ".join(f"{k}={_text(x)}" for k, x in g.items()) if isinstance(g, dict) else _text(g) for g in v)
    return _text(v)


def env_table(results: Sequence[Result]) -> str:
    with_env = [r for r in results if r.env is not None]
    if not with_env:
        return '<p class="muted">No environment was captured with these runs.</p>'
    cols = _columns(with_env, lambda r: r.env.model_dump(mode="json", exclude={"noise"}))  # type: ignore[union-attr]
    return _kv_table(cols, _env_value, "env-table")
