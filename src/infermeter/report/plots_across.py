"""Charts across runs: comparison, latency and throughput vs batch size and vs each swept
axis, and latency vs achieved throughput for server runs.

Runs are grouped into series by what they measured (model, scenario, device, dtype, the
invocation or sweep they came from, and sweep axes other than the one on the x axis); a
series is labelled only by the attributes that differ between series. Every point is a
stored estimate with its stored CI as the error bar.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..result import Result
from .plots import SERIES, Chart, count_label, plain_log, short, slugify, yerr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["charts", "server_qps", "BATCH_AXES"]

BATCH_AXES = {"batch", "batch_size", "batch_sizes", "bs"}  # sweep axes the batch-size chart already covers
_FIXED = ("model", "scenario", "device", "dtype", "source")


def charts(results: Sequence[Result]) -> list[Chart]:
    runs = _points([r for r in results if r.status == "ok" and r.latency is not None and r.latency.samples])
    out: list[Chart] = []
    if len(runs) >= 2:
        out.append(_comparison(runs))
    groups = _groups(runs, exclude={"batch"})
    if any(len({r.batch_size for r in g}) >= 2 for _, g in groups):
        out.append(_vs_batch(groups))
    for axis in _swept_axes(runs):  # plots.charts() makes slugs unique (two axes may slugify alike)
        chart = _vs_axis(runs, axis)
        if chart is not None:
            out.append(chart)
    server = [r for r in runs if server_qps(r)[1] is not None]
    if server:
        out.append(_server(server))
    return out


# ---------------------------------------------------------------- grouping


def _points(runs: list[Result]) -> list[Result]:
    """One result per sweep point: a merged result (repeat None) hides that point's per-process repeats."""
    merged = {(r.sweep.sweep_id, r.sweep.point_key) for r in runs if r.sweep and r.sweep.repeat is None}
    return [r for r in runs if not (r.sweep and r.sweep.repeat is not None and (r.sweep.sweep_id, r.sweep.point_key) in merged)]


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def _attrs(r: Result, exclude: Iterable[str] = ()) -> dict[str, str]:
    skip = set(exclude)
    a = {
        "model": r.model.spec,
        "scenario": r.scenario,
        "device": r.model.device,
        "dtype": r.model.dtype or "",
        "source": f"sweep {r.sweep.sweep_id}" if r.sweep else f"invocation {r.invocation}",
        "batch": str(r.batch_size),
    }
    for k, v in (r.sweep.axes if r.sweep else {}).items():
        if k not in BATCH_AXES and k not in a:
            a[k] = _text(v)
    return {k: v for k, v in a.items() if k not in skip}


def _labels(attrs: list[dict[str, str]]) -> list[str]:
    keys = list(dict.fromkeys(k for a in attrs for k in a))
    varying = [k for k in keys if len({a.get(k, "") for a in attrs}) > 1]
    out = []
    for a in attrs:
        parts = [a.get(k, "–") if k in _FIXED else f"{k}={a.get(k, '–')}" for k in varying]
        out.append(short(", ".join(parts) if parts else a["model"], 60))
    return out


def _groups(runs: list[Result], exclude: set[str]) -> list[tuple[str, list[Result]]]:
    by_key: dict[str, list[Result]] = {}
    attrs: dict[str, dict[str, str]] = {}
    for r in runs:
        a = _attrs(r, exclude)
        key = json.dumps(a, sort_keys=True)
        by_key.setdefault(key, []).append(r)
        attrs.setdefault(key, a)
    labels = _labels(list(attrs.values()))
    return list(zip(labels, by_key.values()))


def _swept_axes(runs: list[Result]) -> list[str]:
    axes: dict[str, set[str]] = {}
    for r in runs:
        for k, v in (r.sweep.axes if r.sweep else {}).items():
            if k not in BATCH_AXES:
                axes.setdefault(k, set()).add(_text(v))
    return [k for k, vals in axes.items() if len(vals) >= 2]


def _legend_below(fig: Figure, labels: list[str], extra: Sequence[tuple[Any, str]] = ()) -> None:
    """One entry per series (its colour) plus the marker styles: p50 solid circles, p99 dotted squares."""
    from matplotlib.lines import Line2D

    handles: list[Any] = [Line2D([], [], color=SERIES[i % len(SERIES)], lw=2) for i in range(len(labels))]
    names = list(labels)
    handles += [Line2D([], [], color="#333333", marker="o", ls="-", ms=4),
                Line2D([], [], color="#333333", marker="s", ls=":", ms=3.5)]
    names += ["p50 (solid, circles)", "p99 (dotted, squares)"]
    for h, n in extra:
        handles.append(h)
        names.append(n)
    fig.legend(handles, names, loc="outside lower center", ncols=2 if max(map(len, names)) > 45 else 3)


def _headroom(*axes: Axes) -> None:
    """From zero, with room above the top point and its error bar."""
    for ax in axes:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.08)


def _numeric_ticks(ax: Axes, values: Sequence[float]) -> None:
    """Ticks at the measured values when they are few (batch sizes, thread counts), else
    plain-number labels on a log axis."""
    vals = sorted(set(values))
    if len(vals) <= 12:
        ax.set_xticks(vals, [f"{v:g}" for v in vals])
        ax.minorticks_off()
    elif ax.get_xscale() == "log":
        plain_log(ax.xaxis)


# ---------------------------------------------------------------- latency / throughput vs x


def _series(ax_l: Axes, ax_t: Axes, groups: list[tuple[str, list[Result]]], xs: Any) -> None:
    """p50 (CI) and p99 (CI) latency on ax_l, throughput (CI) on ax_t, one colour per series."""
    for i, (label, rs) in enumerate(groups):
        c = SERIES[i % len(SERIES)]
        rs = sorted(rs, key=lambda r: xs(r))
        x = [xs(r) for r in rs]
        lat = [r.latency for r in rs]
        ax_l.errorbar(x, [l.p50.value * 1e3 for l in lat], yerr=yerr([l.p50 for l in lat]), fmt="o-", color=c,
                      capsize=3, ms=4, lw=1.4)
        ax_l.errorbar(x, [l.p99.value * 1e3 for l in lat], yerr=yerr([l.p99 for l in lat]), fmt="s:", color=c,
                      capsize=3, ms=3.5, lw=1.0, alpha=0.75)
        tp = [(xs(r), r.throughput.samples_per_s) for r in rs if r.throughput is not None]
        if tp:
            ax_t.errorbar([p[0] for p in tp], [p[1].value for p in tp], yerr=yerr([p[1] for p in tp], scale=1.0),
                          fmt="o-", color=c, capsize=3, ms=4, lw=1.4)
    ax_l.set_ylabel("latency (ms)")
    ax_t.set_ylabel("throughput (samples/s)")
    _headroom(ax_l, ax_t)


def _vs_batch(groups: list[tuple[str, list[Result]]]) -> Chart:
    runs = [r for _, g in groups for r in g]
    sizes = sorted({r.batch_size for r in runs})

    def draw(fig: Figure) -> None:
        ax_l, ax_t = fig.subplots(1, 2)
        _series(ax_l, ax_t, groups, lambda r: r.batch_size)
        for ax in (ax_l, ax_t):
            if sizes[-1] / sizes[0] >= 4:
                ax.set_xscale("log", base=2)
            _numeric_ticks(ax, sizes)
            ax.set_xlabel(f"batch size ({count_label(runs)})")
        ax_l.set_title("latency vs batch size (p50, p99; 95% CI bars)")
        ax_t.set_title("throughput vs batch size (95% CI bars)")
        _legend_below(fig, [label for label, _ in groups])

    return Chart(
        slug="vs-batch",
        title="Latency and throughput vs batch size",
        caption=(
            f"{len(runs)} runs in {len(groups)} series. Left: p50 (circles, solid) and p99 (squares, dotted) "
            "latency per call with their confidence intervals as error bars. Right: throughput in samples/s "
            "(batch size / mean latency) with its CI."
        ),
        draw=draw,
        size=(10.0, 3.9 + 0.22 * len(groups)),
    )


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _vs_axis(runs: list[Result], axis: str) -> Chart | None:
    swept = [r for r in runs if r.sweep and axis in r.sweep.axes]
    values = [r.sweep.axes[axis] for r in swept if r.sweep]
    if len({_text(v) for v in values}) < 2:
        return None
    numeric = all(_is_num(v) for v in values)
    if numeric:
        def xs(r: Result) -> Any:
            return float(r.sweep.axes[axis])  # type: ignore[union-attr]
        cats: list[str] = []
    else:
        cats = sorted({_text(v) for v in values})
        def xs(r: Result) -> Any:
            return cats.index(_text(r.sweep.axes[axis]))  # type: ignore[union-attr]
    groups = _groups(swept, exclude={axis})

    def draw(fig: Figure) -> None:
        ax_l, ax_t = fig.subplots(1, 2)
        _series(ax_l, ax_t, groups, xs)
        for ax in (ax_l, ax_t):
            if numeric:
                nums = sorted({xs(r) for r in swept})
                if nums[0] > 0 and nums[-1] / nums[0] >= 8:
                    ax.set_xscale("log")
                _numeric_ticks(ax, nums)
            else:
                ax.set_xticks(range(len(cats)), [short(c, 16) for c in cats], rotation=20 if len(cats) > 4 else 0)
                ax.set_xlim(-0.5, len(cats) - 0.5)
            ax.set_xlabel(f"{short(axis, 30)} ({count_label(swept)})")
        ax_l.set_title(f"latency vs {short(axis, 30)} (p50, p99; 95% CI bars)")
        ax_t.set_title(f"throughput vs {short(axis, 30)} (95% CI bars)")
        _legend_below(fig, [label for label, _ in groups])

    return Chart(
        slug=f"vs-{slugify(axis)}",
        title=f"Latency and throughput vs swept axis {axis}",
        caption=(
            f"{len(swept)} sweep points in {len(groups)} series, x = the swept value of {axis}. Left: p50 (solid) "
            "and p99 (dotted) latency with CI error bars. Right: throughput with its CI."
        ),
        draw=draw,
        size=(10.0, 3.9 + 0.22 * len(groups)),
    )


# ---------------------------------------------------------------- server runs


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out.setdefault(f"{k}_{k2}", v2)
                out.setdefault(f"{k2}_{k}", v2)
    return out


def _find(d: dict[str, Any], names: Sequence[str], must: Sequence[str]) -> float | None:
    for k in names:
        if _is_num(d.get(k)):
            return float(d[k])
    for k, v in d.items():
        if _is_num(v) and all(m in k.lower() for m in must):
            return float(v)
    return None


def server_qps(r: Result) -> tuple[float | None, float | None]:
    """(offered, achieved) queries per second from ``scenario_details``, read defensively:
    the server scenario's key names are matched by meaning (``achieved_qps``, ``qps.achieved`` …)."""
    d = _flat(r.scenario_details or {})
    achieved = _find(d, ("achieved_qps", "qps_achieved", "achieved_throughput_qps", "completed_qps"), ("achiev",))
    if achieved is None and r.scenario == "server":
        achieved = _find(d, ("qps_measured", "measured_qps"), ("measured", "qps"))
    offered = _find(d, ("offered_qps", "qps_offered", "target_qps", "qps_target", "qps"), ("offer",))
    if offered is None:
        offered = _find(d, (), ("target", "qps"))
    return offered, achieved


def _server(runs: list[Result]) -> Chart:
    groups = _groups(runs, exclude={k for r in runs for k in (r.sweep.axes if r.sweep else {}) if "qps" in k.lower()})
    have_offered = any(server_qps(r)[0] is not None for r in runs)

    def draw(fig: Figure) -> None:
        axes = fig.subplots(1, 2 if have_offered else 1, squeeze=False)[0]
        ax = axes[0]
        for i, (label, rs) in enumerate(groups):
            c = SERIES[i % len(SERIES)]
            rs = sorted(rs, key=lambda r: (server_qps(r)[0] or 0.0, server_qps(r)[1] or 0.0))
            x = [server_qps(r)[1] for r in rs]
            lat = [r.latency for r in rs]
            ax.errorbar(x, [l.p50.value * 1e3 for l in lat], yerr=yerr([l.p50 for l in lat]), fmt="o-", color=c,
                        capsize=3, ms=4)
            ax.errorbar(x, [l.p99.value * 1e3 for l in lat], yerr=yerr([l.p99 for l in lat]), fmt="s:", color=c,
                        capsize=3, ms=3.5, alpha=0.75)
            bad = [(xx, l.p99.value * 1e3) for xx, l, r in zip(x, lat, rs) if r.verdict is not None and not r.verdict.valid]
            if bad:
                ax.plot([b[0] for b in bad], [b[1] for b in bad], "x", color="#d62728", ms=9, mew=2)
            if have_offered:
                pts = [(server_qps(r)[0], server_qps(r)[1]) for r in rs if server_qps(r)[0] is not None]
                axes[1].plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=c, ms=4)
        ax.set_xlabel(f"achieved throughput (queries/s; {count_label(runs)})")
        ax.set_ylabel("latency (ms)")
        _headroom(ax)
        ax.set_title("latency vs achieved QPS (p50, p99; 95% CI bars)")
        if have_offered:
            ax2 = axes[1]
            hi = max(max(q for q in server_qps(r) if q is not None) for r in runs)
            ax2.plot([0, hi], [0, hi], color="#999999", ls="--", lw=1, label="achieved = offered")
            ax2.set_xlabel("offered load (queries/s)")
            ax2.set_ylabel("achieved throughput (queries/s)")
            ax2.set_title("achieved vs offered load")
            ax2.legend(loc="upper left")
        from matplotlib.lines import Line2D

        invalid = [(Line2D([], [], color="#d62728", marker="x", ls="", ms=8, mew=2), "INVALID run (its p99)")]
        _legend_below(fig, [label for label, _ in groups], invalid if any(r.verdict and not r.verdict.valid for r in runs) else ())

    return Chart(
        slug="server-latency-vs-qps",
        title="Server runs: latency vs throughput",
        caption=(
            f"{len(runs)} server runs. Latency (p50 solid, p99 dotted, CI error bars) against the achieved query "
            "rate; where a run's verdict is INVALID its p99 is crossed out."
            + (" Right: achieved against offered rate; falling below the diagonal is saturation." if have_offered else "")
        ),
        draw=draw,
        size=(10.0 if have_offered else 7.0, 3.9 + 0.22 * len(groups)),
    )


# ---------------------------------------------------------------- comparison


def run_labels(runs: Sequence[Result]) -> list[str]:
    """``id · spec · scenario · bN · axes (n=…)``, spec and scenario only when they differ between runs."""
    with_spec = len({r.model.spec for r in runs}) > 1
    with_scenario = len({r.scenario for r in runs}) > 1
    out = []
    for r in runs:
        parts = [r.id] + [short(r.model.spec, 28)] * with_spec + [r.scenario] * with_scenario + [f"b{r.batch_size}"]
        axes = ", ".join(f"{k}={_text(v)}" for k, v in (r.sweep.axes if r.sweep else {}).items() if k not in BATCH_AXES)
        n = f" (n={r.latency.count:,})" if r.latency else ""
        out.append(short(" · ".join(parts + ([axes] if axes else [])), 80) + n)
    return out


def _comparison(runs: list[Result]) -> Chart:
    def draw(fig: Figure) -> None:
        ax_l, ax_t = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.6, 1]})
        y = list(range(len(runs)))
        lat = [r.latency for r in runs]
        ax_l.barh(y, [l.p50.value * 1e3 for l in lat], xerr=yerr([l.p50 for l in lat]), color="#9ecae1",
                  ec="#3182bd", capsize=3, height=0.6, label="p50 (bar, 95% CI)")
        ax_l.errorbar([l.p99.value * 1e3 for l in lat], y, xerr=yerr([l.p99 for l in lat]), fmt="D", color="#ff7f0e",
                      ms=4, capsize=3, label="p99 (diamond, 95% CI)")
        ax_l.set_yticks(y, run_labels(runs))
        ax_l.invert_yaxis()
        ax_l.set_xlabel("latency (ms)")
        ax_l.set_xlim(left=0)
        ax_l.set_title("latency per run")
        fig.legend(*ax_l.get_legend_handles_labels(), loc="outside lower center", ncols=2)
        tp = [(i, r.throughput.samples_per_s) for i, r in enumerate(runs) if r.throughput is not None]
        ax_t.barh([p[0] for p in tp], [p[1].value for p in tp], xerr=yerr([p[1] for p in tp], scale=1.0),
                  color="#a1d99b", ec="#31a354", capsize=3, height=0.6)
        ax_t.set_xlabel("throughput (samples/s)")
        ax_t.set_title("throughput per run")

    return Chart(
        slug="compare",
        title="Comparison across runs",
        caption=(
            f"{len(runs)} runs, in report order. p50 latency as bars and p99 as diamonds, each with its stored "
            "confidence interval; throughput (samples/s) with its CI on the right. n is each run's sample count."
        ),
        draw=draw,
        size=(10.0, 1.6 + 0.34 * len(runs)),
    )
