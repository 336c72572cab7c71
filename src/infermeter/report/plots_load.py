"""Charts of load runs (``infermeter load``): the latency-throughput curve across runs against
one target, and per run its percentiles over time and its errors.

Every figure is read from the stored :class:`Result`: the corrected percentiles and their CIs
from ``Result.latency``, the rest from ``scenario_details`` (``uncorrected``, ``over_time``,
``errors``, ``search``), all computed by ``load.summary`` through ``stats``. Only unit
conversions (s to ms, a bucket's count to a rate) happen here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..result import Result
from .load_table import best_rate, error_counts, is_load, target_label, target_of
from .load_table import searches as find_max_searches
from .plots import PCT_COLOURS, Chart, plain_log, short, slugify, yerr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["charts", "curves", "run_charts"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_FAIL = "#d62728"
_RATE = "#9ecae1"


def charts(results: Sequence[Result]) -> list[Chart]:
    """The curves (one per target with at least two load runs), then each load run's charts."""
    out = curves(results)
    for r in results:
        out += run_charts(r)
    return out


# ---------------------------------------------------------------- reading the stored figures


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _search(r: Result) -> Mapping[str, Any] | None:
    s = r.scenario_details.get("search")
    return s if isinstance(s, Mapping) else None


def _slo_bound(text: Any) -> tuple[str, float] | None:
    """``'p99<=50ms'`` (a search step's ``slo``) -> ``('p99', 0.05)`` by the planner's parser (the
    one SLO parser); None when there is none or it is unreadable."""
    from ..errors import UsageError
    from ..load.plan import parse_slo

    try:
        return parse_slo(str(text)) if text else None
    except UsageError:
        return None


def _drawable(r: Result) -> bool:
    return r.status == "ok" and r.latency is not None and _num(r.scenario_details.get("goodput")) is not None


def _uncorrected_p99(r: Result) -> float | None:
    u = r.scenario_details.get("uncorrected")
    return _num(u.get("p99")) if isinstance(u, Mapping) else None


# ---------------------------------------------------------------- latency vs throughput, across runs


def curves(results: Sequence[Result]) -> list[Chart]:
    """One latency-throughput chart per target (endpoint, model, protocol) with >= 2 load runs."""
    groups: dict[tuple[str, str, str], list[Result]] = {}
    for r in results:
        if is_load(r):
            groups.setdefault(target_of(r), []).append(r)
    out = []
    for key, runs in groups.items():
        if len([r for r in runs if _drawable(r)]) >= 2:
            out.append(_curve(key, runs))
    return out


def _series(runs: list[Result]) -> list[tuple[str, list[Result]]]:
    """Open-loop --rate runs together; each find-max search its own; closed loops together."""
    plain = [r for r in runs if r.scenario == "load-open" and _search(r) is None]
    searches: dict[str, list[Result]] = {}
    for r in runs:
        if r.scenario == "load-open" and _search(r) is not None:
            searches.setdefault(r.invocation, []).append(r)
    closed = [r for r in runs if r.scenario == "load-closed"]
    out: list[tuple[str, list[Result]]] = []
    if plain:
        out.append(("open loop", sorted(plain, key=lambda r: _num(r.scenario_details.get("offered_rate")) or 0.0)))
    for inv, steps in searches.items():
        kind = "--rates steps" if all((_search(r) or {}).get("phase") == "curve" for r in steps) else "find-max steps"
        name = f"open loop, {kind}" + (f" ({inv})" if len(searches) > 1 else "")
        out.append((name, sorted(steps, key=lambda r: _num(r.scenario_details.get("offered_rate")) or 0.0)))
    if closed:
        closed.sort(key=lambda r: _num(r.scenario_details.get("concurrency")) or 0.0)
        ns = [str(r.scenario_details.get("concurrency", "?")) for r in closed]
        n = ns[0] if len(set(ns)) == 1 else f"{ns[0]}–{ns[-1]}"
        out.append((f"closed loop ({n} in flight)", closed))
    return out


def _point_label(r: Result) -> str:
    d = r.scenario_details
    if r.scenario == "load-closed":
        return f"c={d.get('concurrency', '?')}"
    offered = _num(d.get("offered_rate"))
    return f"{offered:,.4g}/s" if offered is not None else "trace"


def _curve(key: tuple[str, str, str], runs: list[Result]) -> Chart:
    drawn = [r for r in runs if _drawable(r)]
    missing = [r for r in runs if not _drawable(r)]
    series = _series(drawn)
    steps = [r for r in drawn if _search(r) is not None]
    searches = find_max_searches(runs)
    slos = {s["slo"] for r in steps if (s := _search(r)) and s.get("slo")}
    counts = sorted(r.latency.count for r in drawn if r.latency)
    n_text = (f"n = {counts[0]:,} successful requests per point" if counts[0] == counts[-1]
              else f"n = {counts[0]:,}–{counts[-1]:,} successful requests per point")
    caption = (
        f"{len(drawn)} load runs against {target_label(key)}. x: goodput (successful requests/s); y: corrected latency "
        "from the intended send time, p50 and p99 (nearest rank, bars: 95% CI from the stored estimates); the dashed "
        "line is the uncorrected p99 (service time from the actual send), which hides queueing before the send. "
        f"Labels give each point's offered rate (open loop) or users in flight (closed loop). {n_text}."
    )
    if steps:
        caption += (" Find-max steps that failed their check (SLO, achieved < 95% of offered, or ≥ 1% errors) are "
                    "hollow with a red cross; the star marks the highest passing offered rate.")
    if slos:
        caption += f" Red dashed line: the SLO ({', '.join(sorted(slos))})."
    for inv, rs in searches:
        known, best = best_rate(rs)
        if known and best is None:
            caption += f" Search {inv}: no step passed."
    if missing:
        caption += f" Not drawn (no successful request): {', '.join(r.id for r in missing)}."
    endpoint = key[0].split("://", 1)[-1]
    digest = hashlib.sha1("\x00".join(key).encode()).hexdigest()[:6]
    return Chart(
        slug=f"load-curve-{slugify(endpoint)[:24].strip('-')}-{digest}",
        title=f"Latency vs throughput — {short(target_label(key), 70)}",
        caption=caption,
        draw=lambda fig: _draw_curve(fig, series, searches, n_text),
        size=(10.0, 4.6 + 0.2 * len(series)),
        section="load",
    )


def _draw_curve(fig: Figure, series: list[tuple[str, list[Result]]], searches: list[tuple[str, list[Result]]],
                n_text: str) -> None:
    from matplotlib.lines import Line2D

    ax = fig.subplots()
    xs: list[float] = []
    ys: list[float] = []
    handles: list[Any] = []
    names: list[str] = []
    failed_any = False
    for i, (label, rs) in enumerate(series):
        mk = _MARKERS[i % len(_MARKERS)]
        x = [float(r.scenario_details["goodput"]) for r in rs]
        lat = [r.latency for r in rs if r.latency is not None]
        p50 = [l.p50.value * 1e3 for l in lat]
        p99 = [l.p99.value * 1e3 for l in lat]
        ax.plot(x, p50, "-", color=PCT_COLOURS["p50"], lw=1.4, zorder=2)
        ax.plot(x, p99, "-", color=PCT_COLOURS["p99"], lw=1.4, zorder=2)
        unc = [(xx, u * 1e3) for xx, r in zip(x, rs) if (u := _uncorrected_p99(r)) is not None]
        if unc:
            ax.plot([u[0] for u in unc], [u[1] for u in unc], "--", color=PCT_COLOURS["p99"], lw=1.1, alpha=0.8,
                    marker=mk, ms=3, mfc="white", zorder=2)
            ys += [u[1] for u in unc]
        for key, vals in (("p50", p50), ("p99", p99)):
            c = PCT_COLOURS[key]
            for xx, yy, r, l in zip(x, vals, rs, lat):
                s = _search(r)
                fail = s is not None and not s.get("passed", True)
                failed_any |= fail
                e = getattr(l, key)
                ax.errorbar([xx], [yy], yerr=yerr([e]), fmt=mk, color=c, ms=5, capsize=3, lw=1.0,
                            mfc="white" if fail else c, zorder=3)
                if fail:
                    ax.plot([xx], [yy], "x", color=_FAIL, ms=7, mew=1.6, zorder=4)
        for xx, yy, r in zip(x, p99, rs):
            ax.annotate(_point_label(r), (xx, yy), xytext=(4, 6), textcoords="offset points", fontsize=7,
                        color="#333333")
        xs += x
        ys += p50 + p99 + [(l.p99.ci_high or l.p99.value) * 1e3 for l in lat]
        handles.append(Line2D([], [], color="#555555", marker=mk, ls="", ms=5))
        names.append(label)

    # the SLO bound and the best passing rate of each search
    for inv, rs in searches:
        bounds = {b for r in rs if (s := _search(r)) and (b := _slo_bound(s.get("slo")))}
        for stat, bound in sorted(bounds):
            ax.axhline(bound * 1e3, color=_FAIL, ls="--", lw=1.0, zorder=1)
            ys.append(bound * 1e3)
            handles.append(Line2D([], [], color=_FAIL, ls="--", lw=1.0))
            names.append(f"SLO: {stat} ≤ {bound * 1e3:g} ms" + (f" ({inv})" if len(searches) > 1 else ""))
        known, best = best_rate(rs)
        top = next((r for r in rs if best is not None and _num(r.scenario_details.get("offered_rate")) == best
                    and _drawable(r)), None)
        if top is not None and top.latency is not None:
            gx = float(top.scenario_details["goodput"])
            ax.axvline(gx, color="#9467bd", ls=":", lw=1.2, zorder=1)
            ax.plot([gx], [top.latency.p99.value * 1e3], "*", color="#9467bd", ms=14, mec="black", mew=0.5, zorder=5)
            handles.append(Line2D([], [], color="#9467bd", marker="*", ls=":", ms=10))
            names.append(f"best passing: offered {best:,.4g}/s (goodput {gx:,.4g}/s)")
    handles += [Line2D([], [], color=PCT_COLOURS["p50"], lw=1.6), Line2D([], [], color=PCT_COLOURS["p99"], lw=1.6),
                Line2D([], [], color=PCT_COLOURS["p99"], lw=1.1, ls="--")]
    names += ["p50 corrected (95% CI)", "p99 corrected (95% CI)", "p99 uncorrected (service time)"]
    if failed_any:
        handles.append(Line2D([], [], color="#555555", marker="o", mfc="white", ls="", ms=5))
        handles[-1].set_markeredgecolor("#555555")
        handles.append(Line2D([], [], color=_FAIL, marker="x", ls="", ms=7, mew=1.6))
        names += ["passing step: filled; failing step: hollow", "failed step (SLO, rate, errors or stability)"]

    pos = [y for y in ys if y > 0]
    if pos and max(pos) / min(pos) > 20:
        ax.set_yscale("log")
        ax.set_ylim(min(pos) / 1.3, max(pos) * 1.3)
        plain_log(ax.yaxis)
        scale = "ms, log scale"
    else:
        ax.set_ylim(0, (max(ys) if ys else 1.0) * 1.12)
        scale = "ms"
    if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
        plain_log(ax.xaxis)
    ax.set_xlabel(f"goodput (successful requests/s; {n_text})")
    ax.set_ylabel(f"latency ({scale})")
    ax.set_title("latency vs throughput: corrected p50 and p99 from the intended send, uncorrected p99 dashed")
    fig.legend(handles, names, loc="outside lower center", ncols=3 if max(map(len, names)) < 40 else 2)


# ---------------------------------------------------------------- per run


def run_charts(r: Result) -> list[Chart]:
    """A load run's percentiles over time and, when any request failed, its errors."""
    if not is_load(r):
        return []
    out = []
    ot = r.scenario_details.get("over_time")
    if isinstance(ot, Mapping) and ot.get("count"):
        out.append(_over_time(r, ot))
    errs = error_counts(r)
    if errs:
        out.append(_errors(r, errs, ot if isinstance(ot, Mapping) else {}))
    return out


def _what(r: Result) -> str:
    d = r.scenario_details
    return f"{short(str(d.get('endpoint') or r.model.spec), 48)}, {r.scenario}"


def _bucket(ot: Mapping[str, Any]) -> float:
    return _num(ot.get("bucket_s")) or 1.0


def _starts(ot: Mapping[str, Any]) -> list[float]:
    b = _bucket(ot)
    t = ot.get("t")
    count = list(ot.get("count") or [])
    if isinstance(t, list) and len(t) == len(count) and all(_num(x) is not None for x in t):
        return [float(x) for x in t]  # bucket starts, seconds from t0
    return [i * b for i in range(len(count))]


def _over_time(r: Result, ot: Mapping[str, Any]) -> Chart:
    count = [int(c or 0) for c in ot.get("count") or []]
    p50 = list(ot.get("p50") or [])
    b = _bucket(ot)
    errors = [int(e or 0) for e in ot.get("errors") or []]
    ok = [c - (errors[i] if i < len(errors) else 0) for i, c in enumerate(count)]
    with_p = [o for o, p in zip(ok, p50) if p is not None]
    have = bool(with_p)
    if have:
        span = f"{min(with_p):,}" if min(with_p) == max(with_p) else f"{min(with_p):,}–{max(with_p):,}"
        pct = (f"Top: p50 and p99 (nearest rank, no CI per bucket) of the corrected latency of the successful requests "
               f"sent in each {b:g}-s bucket, n = {span} per bucket (a p99 of fewer than 100 requests is their "
               "maximum); a bucket with no successful request has no point. ")
    else:
        pct = ("Per-bucket percentiles were not stored (the run was too large to keep per-request records); "
               "only the request rate is drawn. ")
    caption = (
        f"{pct}Bottom: requests per second in each bucket, by {ot.get('by') or 'intended send time'} "
        f"({sum(count):,} requests in {len(count)} buckets"
        + (f", {sum(errors):,} of them errors in red" if sum(errors) else "") + "; the last bucket may be partial)."
    )
    return Chart(
        slug=f"load-time-{r.id}",
        title=f"Percentiles over time — {_what(r)}",
        caption=caption,
        draw=lambda fig: _draw_over_time(fig, r, ot, have),
        size=(10.0, 4.6 if have else 3.0),
        section=r.id,
    )


def _draw_over_time(fig: Figure, r: Result, ot: Mapping[str, Any], have: bool) -> None:
    b = _bucket(ot)
    t = _starts(ot)
    count = [int(c or 0) for c in ot.get("count") or []]
    errors = [int(e or 0) for e in ot.get("errors") or []][: len(count)]
    if have:
        ax_l, ax_r = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.0, 1.0]})
        mids = [x + b / 2 for x in t]
        vals: list[float] = []
        for key in ("p50", "p99"):
            ys = list(ot.get(key) or [])
            pts = [(m, y * 1e3) for m, y in zip(mids, ys) if y is not None]
            if pts:
                ax_l.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=PCT_COLOURS[key], ms=3.5, lw=1.4,
                          label=f"{key} per bucket")
                vals += [p[1] for p in pts]
        lat = r.latency
        if lat is not None:
            ax_l.axhline(lat.p99.value * 1e3, color=PCT_COLOURS["p99"], ls=":", lw=1.0,
                         label=f"p99 of the whole run ({lat.p99.value * 1e3:.4g} ms, n = {lat.count:,})")
            vals.append(lat.p99.value * 1e3)
        pos = [v for v in vals if v > 0]
        if pos and max(pos) / min(pos) > 20:
            ax_l.set_yscale("log")
            ax_l.set_ylim(min(pos) / 1.3, max(pos) * 1.3)
            plain_log(ax_l.yaxis)
            ax_l.set_ylabel("latency (ms, log)")
        else:
            ax_l.set_ylim(0, (max(pos) if pos else 1.0) * 1.12)
            ax_l.set_ylabel("latency (ms)")
        ax_l.set_title(f"corrected latency per {b:g}-s bucket, n = {lat.count if lat else 0:,} successful requests")
        ax_l.legend(loc="upper left", ncols=3)
    else:
        ax_r = fig.subplots()
    _rate_bars(ax_r, t, count, errors, b, r)
    ax_r.set_xlabel(f"time from the start (s; buckets by {ot.get('by') or 'intended send time'})")
    if t:
        ax_r.set_xlim(t[0], t[-1] + b)


def _rate_bars(ax: Axes, t: list[float], count: list[int], errors: list[int], b: float, r: Result) -> None:
    ax.bar(t, [c / b for c in count], width=b, align="edge", color=_RATE, ec="#3182bd", lw=0.5, label="requests/s")
    if any(errors):
        ax.bar(t[: len(errors)], [e / b for e in errors], width=b, align="edge", color=_FAIL, alpha=0.8, lw=0,
               label="errors/s")
    offered = _num(r.scenario_details.get("offered_rate"))
    if r.scenario == "load-open" and offered is not None:
        ax.axhline(offered, color="#333333", ls="--", lw=1.0, label=f"offered {offered:,.4g}/s")
    ax.set_ylabel("requests/s")
    ax.set_ylim(0, max([c / b for c in count] + [offered or 0.0, 1.0]) * 1.2)
    ax.legend(loc="lower left", ncols=3, fontsize=7)


def _errors(r: Result, errs: dict[str, int], ot: Mapping[str, Any]) -> Chart:
    n = int(r.scenario_details.get("requests") or 0)
    total = sum(errs.values())
    kinds = ", ".join(f"{k} {v:,}" for k, v in errs.items())
    caption = (
        f"{total:,} errors of {n:,} requests ({kinds}). "
        + ("Left: errors per second in each bucket (by intended send time) beside all requests per second. "
           if ot.get("errors") else "")
        + "Right: the total of each kind of error, with its count and share of all requests."
    )
    return Chart(
        slug=f"load-errors-{r.id}",
        title=f"Errors — {_what(r)}",
        caption=caption,
        draw=lambda fig: _draw_errors(fig, r, errs, n, ot),
        size=(10.0, 3.2 + 0.15 * len(errs)),
        section=r.id,
    )


def _draw_errors(fig: Figure, r: Result, errs: dict[str, int], n: int, ot: Mapping[str, Any]) -> None:
    over = bool(ot.get("errors"))
    if over:
        ax_t, ax_k = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.5, 1.0]})
        b = _bucket(ot)
        t = _starts(ot)
        count = [int(c or 0) for c in ot.get("count") or []]
        errors = [int(e or 0) for e in ot.get("errors") or []]
        ax_t.bar(t, [c / b for c in count], width=b, align="edge", color="#dddddd", ec="#aaaaaa", lw=0.5,
                 label="all requests/s")
        ax_t.bar(t[: len(errors)], [e / b for e in errors[: len(t)]], width=b, align="edge", color=_FAIL, alpha=0.85,
                 lw=0, label="errors/s")
        ax_t.set_xlabel(f"time from the start (s; {b:g}-s buckets by {ot.get('by') or 'intended send time'})")
        ax_t.set_ylabel("per second")
        ax_t.set_title(f"errors over time, {sum(errors):,} of {sum(count):,} requests")
        ax_t.legend(loc="upper right", fontsize=7)
        if t:
            ax_t.set_xlim(t[0], t[-1] + b)
    else:
        ax_k = fig.subplots()
    kinds = list(errs)
    y = list(range(len(kinds)))
    ax_k.barh(y, [errs[k] for k in kinds], color=_FAIL, alpha=0.85, height=0.6)
    ax_k.set_yticks(y, [short(k, 20) for k in kinds])
    ax_k.set_ylim(max(len(kinds), 3) - 0.5, -0.5)  # top down; one kind is a bar, not a block
    top = max(errs.values())
    for yy, k in zip(y, kinds):
        share = f" ({errs[k] / n:.1%})" if n else ""
        ax_k.annotate(f"{errs[k]:,}{share}", (errs[k], yy), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=8)
    ax_k.set_xlim(0, top * 1.45)
    ax_k.set_xlabel(f"errors (of {n:,} requests)")
    ax_k.set_title(f"errors by kind, n = {n:,} requests")
