"""Terminal rendering with rich. Reads :class:`Result` objects, computes nothing.

Seconds in the object, milliseconds on screen (4 significant digits), every
percentile with its confidence interval, every statistic with its sample count.
"""

from __future__ import annotations

from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from ..result import Estimate, Result

__all__ = [
    "ms", "estimate", "render_results", "render_scenario", "render_peak", "render_runs",
    "render_zoo", "render_env", "size",
]


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1e3:.4g} ms"


def size(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _bound(x: float | None, fmt: Any) -> str:
    return "n/a" if x is None else fmt(x)


def estimate(e: Estimate | None, fmt: Any = ms, ci: bool = True) -> str:
    """``value [low, high]``; a bound the sample is too small to give shows as n/a."""
    if e is None:
        return "–"
    text = fmt(e.value)
    if ci:
        strip = (lambda x: fmt(x).removesuffix(" ms")) if fmt is ms else fmt
        text += f" [{_bound(e.ci_low, strip)}, {_bound(e.ci_high, strip)}]"
    return text


def _count(x: float) -> str:
    return f"{x:,.1f}"


def render_results(results: Sequence[Result], console: Console) -> None:
    """One table per invocation: metrics down, batch sizes across; under it each
    result's headline and verdict. A ``--find-peak`` invocation shows its steps and
    the peak, then the table for the peak step."""
    if not results:
        console.print("no results")
        return
    steps = [r for r in results if "peak_search" in r.scenario_details]
    if steps:
        render_peak(steps, console)
        peak = _peak_step(steps)
        others = [r for r in results if r not in steps]
        results = [*others, peak]
    first = results[0]
    m = first.model
    bits = [m.backend, m.device]
    if m.dtype:
        bits.append(m.dtype)
    if m.params is not None:
        bits.append(f"{m.params:,} params")
    if m.file_size_bytes is not None:
        bits.append(f"file {size(m.file_size_bytes)}")
    console.print(f"[bold]{m.spec}[/bold] ({', '.join(bits)})  inputs: {'; '.join(m.inputs)}")
    console.print(
        f"model load {ms(first.phases.load_s)} (peak RSS {size(first.memory.load_peak_rss_bytes)})"
        + (f", backend import {ms(first.phases.import_s)}" if first.phases.import_s is not None else "")
        + "  "
        f"scenario {first.scenario}  clock {first.timer.clock}  timer overhead "
        f"{'–' if first.timer.overhead_s is None else f'{first.timer.overhead_s * 1e9:.0f} ns'}/call"
    )
    conf = next((r.latency.confidence for r in results if r.latency), 0.95)
    per = {"server": "query, from its scheduled arrival", "multi-stream": "query"}.get(first.scenario, "batch")
    table = Table(title=f"latency per {per} ({conf:.0%} CI in brackets; percentiles nearest-rank)", title_justify="left")
    table.add_column("metric", style="bold")
    for r in results:
        table.add_column(f"batch {r.batch_size}", justify="right")

    def row(label: str, fn: Any) -> None:
        table.add_row(label, *[fn(r) for r in results])

    def lat(attr: str) -> Any:
        return lambda r: estimate(getattr(r.latency, attr)) if r.latency else "–"

    row("status", lambda r: r.status if r.status == "ok" else f"[red]{r.status}[/red]")
    row("first inference (cold)", lambda r: ms(r.phases.first_inference_s))
    row("warm-up", lambda r: f"{r.phases.warmup_iters} iters, {r.phases.warmup_s:.2f} s")
    row("mean ± std", lambda r: f"{ms(r.latency.mean.value)} ± {ms(r.latency.std)}" if r.latency else "–")
    row("mean CI", lambda r: estimate(r.latency.mean).split(" ", 2)[-1] + " ms" if r.latency else "–")
    row("min", lambda r: ms(r.latency.min) if r.latency else "–")
    row("p50", lat("p50"))
    row("p90", lat("p90"))
    row("p95", lat("p95"))
    row("p99", lat("p99"))
    row("p99.9", lat("p999"))
    row("max", lambda r: ms(r.latency.max) if r.latency else "–")
    row("throughput (samples/s)", lambda r: estimate(r.throughput.samples_per_s, _count) if r.throughput else "–")
    row("peak RSS (inference)", lambda r: size(r.memory.inference_peak_rss_bytes))
    if any(r.memory.device_peak_bytes is not None for r in results):
        row("peak device memory", lambda r: size(r.memory.device_peak_bytes))
    row(
        "samples",
        lambda r: (
            f"{r.latency.count:,}" + (f" blocks of {r.latency.block_size}" if r.latency.per == "block" else "")
            if r.latency
            else "0"
        ),
    )
    row("stopped by", lambda r: r.stop_reason or "–")
    console.print(table)
    for r in results:
        render_scenario(r, console, label=f"batch {r.batch_size}" if len(results) > 1 else "")
    acc = first.memory.rss_accounting
    if acc:
        console.print(f"[dim]peak RSS: {acc}" + (f"; device: {first.memory.device_accounting}" if first.memory.device_accounting else "") + "[/dim]")
    for r in results:
        for w in r.warnings:
            console.print(f"[yellow]warning[/yellow] batch {r.batch_size}: {w}")
        if r.error:
            console.print(f"[red]error[/red] batch {r.batch_size}: {r.error}")
    ids = ", ".join(f"{r.batch_size}→{r.id}" for r in results)
    console.print(f"[dim]saved runs (batch→id): {ids}[/dim]" if results[0].id else "")


def _headline(r: Result) -> str:
    h = r.headline
    if h is None:
        return "–"
    e = Estimate(value=h.value, ci_low=h.ci_low, ci_high=h.ci_high)
    if h.unit == "s":
        return f"{h.metric} {estimate(e)}"
    return f"{h.metric} {estimate(e, _count)} {h.unit}"


def _label(v: Any) -> str:
    return "–" if v is None else ("[green]VALID[/green]" if v.valid else "[red]INVALID[/red]")


def render_scenario(r: Result, console: Console, label: str = "") -> None:
    """The headline, the verdict with its reasons and recommendations, and the
    scenario's own figures (server: QPS, schedule lag, queue vs compute, batches)."""
    if r.headline is None and r.verdict is None:
        return
    head = f"{label}: " if label else ""
    console.print(f"{head}[bold]{r.scenario}[/bold] headline {_headline(r)}  {_label(r.verdict)}")
    v = r.verdict
    if v is not None:
        es = v.checks.get("early_stopping") or {}
        if es.get("estimate") is not None:
            console.print(
                f"  early-stopping p{es['percentile']:g} estimate {ms(es['estimate'])} "
                f"({es['n']} queries, {es['confidence']:.0%} confidence)"
            )
        for reason in v.reasons:
            console.print(f"  [red]reason[/red] {reason}")
        for rec in v.recommendations:
            console.print(f"  [yellow]try[/yellow] {rec}")
    d = r.scenario_details
    if r.scenario == "server" and d:
        lag, queue, comp = d.get("schedule_lag_s") or {}, d.get("queue_s") or {}, d.get("compute_s") or {}
        console.print(
            f"  offered {d.get('offered_qps', 0):,.1f} QPS, achieved {d.get('achieved_qps', 0):,.1f} QPS; "
            f"{d.get('completed', 0):,} of {d.get('issued', 0):,} queries completed over {d.get('duration_s', 0):.2f} s"
            + (f", bound {ms(d['latency_bound_s'])} at p{d.get('target_percentile', 99):g}" if d.get("latency_bound_s") else "")
        )
        if lag:
            console.print(
                f"  schedule lag p50 {lag['p50'] * 1e6:.0f} µs, p99 {lag['p99'] * 1e6:.0f} µs; "
                f"queue p50 {ms(queue.get('p50'))} p99 {ms(queue.get('p99'))}; "
                f"compute p50 {ms(comp.get('p50'))} p99 {ms(comp.get('p99'))}"
            )
        hist = d.get("batch_histogram") or {}
        if hist:
            shown = ", ".join(f"{k}×{n:,}" for k, n in sorted(hist.items(), key=lambda kv: int(kv[0])))
            console.print(f"  batches formed (size×count): {shown} (max {d.get('max_batch')}, wait ≤ {ms(d.get('max_wait_s'))})")
    elif r.scenario == "offline" and d:
        console.print(
            f"  {d.get('samples', 0):,} samples in {d.get('batches', 0):,} batches of {d.get('batch_size')} "
            f"over {d.get('wall_s', 0):.2f} s"
        )


def _peak_step(steps: Sequence[Result]) -> Result:
    best = [r for r in steps if r.scenario_details["peak_search"].get("valid")]
    return max(best, key=lambda r: r.scenario_details["peak_search"]["qps"]) if best else steps[-1]


def render_peak(steps: Sequence[Result], console: Console) -> None:
    """One row per ``--find-peak`` step, then the peak."""
    table = Table(title="find-peak: server runs, highest VALID QPS under the bound", title_justify="left")
    for col in ("step", "phase", "offered QPS", "achieved QPS", "headline", "verdict", "stopped by"):
        table.add_column(col, justify="right" if "QPS" in col or col == "step" else "left")
    for r in steps:
        ps, d = r.scenario_details["peak_search"], r.scenario_details
        table.add_row(
            str(ps.get("step")), str(ps.get("phase")), f"{ps.get('qps', 0):,.1f}",
            f"{d.get('achieved_qps') or 0:,.1f}", _headline(r), _label(r.verdict), r.stop_reason or "–",
        )
    console.print(table)
    last = steps[-1].scenario_details["peak_search"]
    peak = last.get("peak_qps")
    bound = steps[-1].scenario_details.get("latency_bound_s")
    where = f" (p{steps[-1].scenario_details.get('target_percentile', 99):g} ≤ {ms(bound)})" if bound else ""
    if peak is None:
        console.print(f"[red]no VALID QPS found[/red]{where}; search stopped: {last.get('stop')}")
    else:
        console.print(f"[bold]peak {peak:,.1f} QPS[/bold]{where}; search stopped: {last.get('stop')} after {len(steps)} step(s)")


def render_runs(rows: Sequence[Any], console: Console) -> None:
    table = Table(title="runs (newest first)", title_justify="left")
    for col in ("id", "created", "status", "spec", "backend", "device", "batch", "p50", "p99", "stopped by"):
        table.add_column(col, justify="right" if col in ("batch", "p50", "p99") else "left", no_wrap=col in ("id", "created"))
    for s in rows:
        created = getattr(s, "created", "")
        created = created.isoformat(timespec="seconds") if hasattr(created, "isoformat") else str(created)[:19]
        table.add_row(
            s.id, created, s.status, s.spec, s.backend, s.device, str(s.batch_size),
            ms(s.p50_s), ms(s.p99_s), s.stop_reason or "–",
        )
    console.print(table)


def render_zoo(entries: Sequence[Any], console: Console) -> None:
    table = Table(title="built-in models (zoo:NAME; built in code: random weights, or trained here on scikit-learn's digits)", title_justify="left")
    for col in ("name", "params", "inputs", "default dims", "description"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for e in entries:
        dims = ", ".join(f"{k}={v}" for k, v in (e.dims or {}).items()) or "–"
        table.add_row(f"zoo:{e.name}", f"{e.params:,}", "; ".join(s.text() for s in e.inputs), dims, e.description)
    console.print(table)


def render_env(env: Any, console: Console) -> None:
    table = Table(title="environment", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    data = env.model_dump()
    for key, value in data.items():
        if key == "noise":
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or "–"
        elif isinstance(value, list):
            value = "; ".join(", ".join(f"{k}={v}" for k, v in g.items()) if isinstance(g, dict) else str(g) for g in value) or "–"
        elif key.endswith("_bytes"):
            value = size(value)
        table.add_row(key, "–" if value in (None, "") else str(value))
    console.print(table)
    if env.noise:
        for w in env.noise:
            console.print(f"[yellow]warning[/yellow] {w}")
    else:
        console.print("no noise warnings apply right now")
