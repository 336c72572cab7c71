"""Console rendering of load runs: one row per run (a find-max search gives one per step),
corrected latency from the intended send time beside the uncorrected service time."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..result import Estimate, Result

__all__ = ["render_load", "html_section", "run_note_html", "is_load", "target_of", "LOAD_SCENARIOS"]


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


# ---------------------------------------------------------------- the HTML report's Load section

LOAD_SCENARIOS = ("load-open", "load-closed")


def is_load(r: Result) -> bool:
    return r.scenario in LOAD_SCENARIOS


def target_of(r: Result) -> tuple[str, str, str]:
    """(endpoint, model, protocol): runs that share it measured the same thing at different loads."""
    d = r.scenario_details or {}
    return (str(d.get("endpoint") or r.model.spec), str(d.get("model") or ""), str(d.get("protocol") or ""))


def target_label(key: tuple[str, str, str]) -> str:
    endpoint, model, protocol = key
    return endpoint + (f", model {model}" if model else "") + (f", protocol {protocol}" if protocol else "")


def error_counts(r: Result) -> dict[str, int]:
    """The kinds that occurred, with their counts (as stored: ``scenario_details.errors``)."""
    errs = r.scenario_details.get("errors") or {}
    out = {}
    for k, v in errs.items() if isinstance(errs, Mapping) else ():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v:
            out[str(k)] = int(v)
    return out


def mode_text(d: Mapping[str, Any]) -> str:
    if d.get("mode") == "closed":
        return f"closed loop ({d.get('concurrency', '?')} in flight)"
    how = "trace" if d.get("trace") else (d.get("arrival") or "")
    return "open loop" + (f" ({how})" if how else "")


def errors_text(r: Result) -> str:
    """``0 errors of 94 requests`` or ``47 errors of 94 requests (50.0%): http-5xx 47``."""
    d = r.scenario_details
    n = int(d.get("requests") or 0)
    errs = error_counts(r)
    total = sum(errs.values())
    text = f"{total:,} error{'s' if total != 1 else ''} of {n:,} request{'s' if n != 1 else ''}"
    if total:
        share = f" ({total / n:.1%})" if n else ""
        text += share + ": " + ", ".join(f"{k} {v:,}" for k, v in errs.items())
    return text


def _cpu_text(cpu: Any) -> tuple[str, float | None]:
    """The busiest generator process's busy share (CPU less pacing spin, over wall time)."""
    if not isinstance(cpu, list) or not cpu:
        return "–", None
    busy = [float(c["busy"]) for c in cpu if isinstance(c, Mapping) and isinstance(c.get("busy"), (int, float))]
    if not busy:
        return "–", None
    top = max(busy)
    return f"{top:.0%} busy" + (f" (busiest of {len(cpu)} processes)" if len(cpu) > 1 else ""), top


def _ms_cell(s: Any) -> Any:
    from .console import ms
    from .html_tables import Cell, esc

    if not isinstance(s, (int, float)) or isinstance(s, bool):
        return Cell("–")
    return Cell(esc(ms(float(s))), sort=float(s), num=True)


def _rate_cell(x: Any) -> Any:
    from .html_tables import Cell, esc

    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return Cell("–")
    return Cell(esc(f"{float(x):,.1f}/s"), sort=float(x), num=True)


def _slo_cell(search: Any) -> Any:
    from .html_tables import Cell, esc

    if not isinstance(search, Mapping) or "passed" not in search:
        return Cell("–")
    ok = bool(search.get("passed"))
    badge = f'<span class="badge {"ok" if ok else "bad"}">{"pass" if ok else "fail"}</span>'
    bits = []
    if search.get("slo"):
        bits.append(f'<small class="muted">{esc(search["slo"])}</small>')
    if "step" in search:
        bits.append(f'<small class="muted">step {esc(search["step"])}'
                    + (f" ({esc(search['phase'])})" if search.get("phase") else "") + "</small>")
    reasons = search.get("reasons") or []
    if reasons:
        bits.append("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in reasons) + "</ul>")
    return Cell(badge + "".join("<br>" + b if not b.startswith("<ul>") else b for b in bits), sort=int(ok))


def searches(runs: Sequence[Result]) -> list[tuple[str, list[Result]]]:
    """Find-max searches among ``runs``: their steps grouped by invocation, in order."""
    out: dict[str, list[Result]] = {}
    for r in runs:
        if isinstance(r.scenario_details.get("search"), Mapping):
            out.setdefault(r.invocation, []).append(r)
    return list(out.items())


def best_rate(steps: Sequence[Result]) -> tuple[bool, float | None]:
    """(known, rate): the search's stored highest passing offered rate (on its last step), if stored."""
    for r in reversed(steps):
        s = r.scenario_details.get("search")
        if isinstance(s, Mapping) and ("best_rate" in s or "max_rate" in s):
            v = s.get("best_rate", s.get("max_rate"))
            return True, float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    return False, None


def html_section(results: Sequence[Result]) -> str:
    """The load runs among ``results`` as one sortable table (one row per run; a find-max search
    gives one per step), with each search's verdict below it. Empty when there are none."""
    from .html_tables import Cell, esc, table
    from .html_tables import _est as _est_html  # the value over its CI, as every HTML table shows it

    runs = [r for r in results if is_load(r)]
    if not runs:
        return ""
    targets = list(dict.fromkeys(target_of(r) for r in runs))
    searched = any(isinstance(r.scenario_details.get("search"), Mapping) for r in runs)
    headers = ["run", *(["target"] if len(targets) > 1 else []), "mode", "offered", "achieved", "goodput", "requests",
               "errors", "p50 (corrected)", "p99 (corrected)", "p99 uncorrected", "p99 schedule lag", "generator CPU",
               *(["SLO (find-max step)"] if searched else [])]
    rows = []
    for r in runs:
        d = r.scenario_details
        lat = r.latency
        run = Cell(f'<a href="#run-{esc(r.id)}" class="mono">{esc(r.id)}</a>'
                   + (' <span class="badge bad">failed</span>' if r.status != "ok" else ""), sort=r.id)
        errs = error_counts(r)
        n_err = sum(errs.values())
        err_html = f"{n_err:,}" + ("".join(f'<br><small>{esc(k)} {v:,}</small>' for k, v in errs.items()))
        cpu, busy = _cpu_text(d.get("generator_cpu"))
        uncorrected = d.get("uncorrected")
        lag = d.get("schedule_lag")
        row: list[Any] = [
            run,
            *([Cell(esc(target_label(target_of(r))), sort=target_label(target_of(r)))] if len(targets) > 1 else []),
            Cell(esc(mode_text(d)), sort=mode_text(d)),
            _rate_cell(d.get("offered_rate")) if d.get("mode") != "closed" else Cell("–"),
            _rate_cell(d.get("achieved_rate")),
            _rate_cell(d.get("goodput")),
            Cell(f"{int(d.get('requests') or 0):,}", sort=int(d.get("requests") or 0), num=True),
            Cell(err_html, sort=n_err, num=True),
            _est_html(lat.p50 if lat else None),
            _est_html(lat.p99 if lat else None),
            _ms_cell(uncorrected.get("p99") if isinstance(uncorrected, Mapping) else None),
            _ms_cell(lag.get("p99") if isinstance(lag, Mapping) and d.get("mode") != "closed" else None),
            Cell(esc(cpu), sort=busy, num=busy is not None),
        ]
        if searched:
            row.append(_slo_cell(d.get("search")))
        rows.append(row)
    parts = [table(headers, rows, id="load-table", cls="sortable")]
    if len(targets) == 1:
        parts.insert(0, f'<p>Target: <span class="mono">{esc(target_label(targets[0]))}</span></p>')
    parts.append(
        '<p class="muted">Corrected latency runs from the intended send time (open loop: queueing behind a slow '
        "server is counted), uncorrected from the actual send (the service time); closed loops have no schedule, so "
        "both run from the send. Percentiles are nearest-rank of the successful requests, [low, high] their 95% "
        "confidence interval. Goodput is successful requests per second; schedule lag is actual − intended send; "
        "generator CPU is the busiest generator process's CPU time (less pacing spin) over wall time.</p>")
    for inv, steps in searches(runs):
        known, best = best_rate(steps)
        slo = next((s.scenario_details["search"].get("slo") for s in steps if s.scenario_details["search"].get("slo")), None)
        passed = sum(bool(s.scenario_details["search"].get("passed")) for s in steps)
        head = f'find-max <span class="mono">{esc(inv)}</span>' + (f" ({esc(slo)})" if slo else "")
        if known:
            verdict = (f"highest passing offered rate <b>{best:,.1f}/s</b>" if best is not None
                       else '<span class="badge bad">no step passed</span>')
        else:
            verdict = "no best rate stored (search incomplete)"
        parts.append(f"<p>{head}: {verdict}; {passed} of {len(steps)} steps passed.</p>")
    return "\n".join(parts)


def run_note_html(r: Result) -> str:
    """The line a load run's own section opens with: requests, errors by kind, rates."""
    from .html_tables import esc

    d = r.scenario_details
    bits = [esc(mode_text(d))]
    if d.get("mode") != "closed" and isinstance(d.get("offered_rate"), (int, float)):
        bits.append(f"offered {float(d['offered_rate']):,.1f}/s")
    for key, name in (("achieved_rate", "achieved"), ("goodput", "goodput")):
        if isinstance(d.get(key), (int, float)):
            bits.append(f"{name} {float(d[key]):,.1f}/s")
    bits.append(esc(errors_text(r)))
    return f'<p class="load-note">Load: {"; ".join(bits)}.</p>'
