"""Console rendering of load runs: one row per run (a find-max search gives one per step),
corrected latency from the intended send time beside the uncorrected service time."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..result import Estimate, Result

__all__ = ["render_load"]


def _ms(s: Any) -> str:
    if s is None:
        return "n/a"
    s = float(s)
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} µs"


def _est(e: Estimate | None) -> str:
    if e is None:
        return "n/a"
    lo, hi = e.ci_low, e.ci_high
    ci = f" [{_ms(lo) if lo is not None else 'n/a'}, {_ms(hi) if hi is not None else 'n/a'}]"
    return _ms(e.value) + ci


def _rate(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):,.1f}/s"


def _get(d: Mapping[str, Any], *path: str) -> Any:
    cur: Any = d
    for p in path:
        if not isinstance(cur, Mapping) or p not in cur:
            return None
        cur = cur[p]
    return cur


def render_load(results: Sequence[Result], console: Console, *, slo: str | None = None) -> None:
    if not results:
        return
    d0 = results[0].scenario_details
    mode = d0.get("mode", "open")
    title = (f"load {results[0].model.spec} — {'open loop (latency from the intended send time)' if mode == 'open' else 'CLOSED LOOP (latency from the actual send: queueing before the send is not seen)'}"
             f", protocol {d0.get('protocol', '?')}, {d0.get('processes', 1)} generator process(es)")
    t = Table(title=title, caption="corrected = from the intended send time; service = from the actual send; lag = actual − "
              "intended send; \\[low, high] 95% CI; goodput = successful requests/s", caption_justify="left")
    for col in ("offered", "achieved", "goodput", "requests", "errors", "p50", "p99", "p99.9", "service p50 / p99",
                "lag p99"):
        t.add_column(col, justify="right")
    if slo:
        t.add_column("SLO " + slo, justify="center")
    for r in results:
        d = r.scenario_details
        lat = r.latency
        errs = d.get("errors") or {}
        n_err = sum(int(v) for v in errs.values())
        err_text = f"{n_err:,}" + (f" ({', '.join(f'{k} {v}' for k, v in errs.items() if v)})" if n_err else "")
        row = [
            _rate(d.get("offered_rate")) if d.get("mode", "open") == "open" else f"c={d.get('concurrency', '?')}",
            _rate(d.get("achieved_rate")),
            _rate(d.get("goodput")),
            f"{int(d.get('requests') or 0):,}",
            err_text,
            _est(lat.p50) if lat else "n/a",
            _est(lat.p99) if lat else "n/a",
            _ms(lat.p999.value) if lat else "n/a",
            f"{_ms(_get(d, 'uncorrected', 'p50'))} / {_ms(_get(d, 'uncorrected', 'p99'))}",
            _ms(_get(d, "schedule_lag", "p99")),
        ]
        if slo:
            ok = _get(d, "search", "passed")
            row.append("–" if ok is None else ("pass" if ok else "fail"))
        t.add_row(*row)
    console.print(t)
    for r in results[-1:]:
        for w in r.warnings:
            console.print(Text(f"warning: {w}", style="yellow"))
    best = _get(results[-1].scenario_details, "search", "max_rate")
    if slo and best is not None:
        console.print(f"highest rate meeting {slo}: {float(best):,.1f} req/s ({len(results)} steps)")
    elif slo:
        console.print(f"no rate tried met {slo}")
