"""The HTML report: one self-contained file with charts (inline SVG), tables and the runs' data.

Self-contained means nothing is fetched when the page is viewed: charts are inline SVG,
the results are inline JSON (``<script type="application/json" id="im-data">``), the small
script (table sort and filter, and a self-check that every chart drew) is inline, and a
Content-Security-Policy forbids the page any network access. Everything user-controlled
(specs, tags, warnings, config values) is HTML-escaped.

matplotlib (the ``report`` extra) is needed to draw; it is imported on first use.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..result import SCHEMA, Result
from . import html_tables as T
from .export import check_writable, write_text
from .load_table import is_load, run_note_html
from .plots import Chart, charts, check_png_dir, render_pngs, require_matplotlib, svg_of

__all__ = ["render_html", "write_report", "render_pngs", "default_title"]

_SECTIONS = (
    ("summary", "Summary"), ("verdicts", "Verdicts"), ("across", "Across runs"), ("runs", "Per run"),
    ("warnings", "Warnings"), ("setup", "Setup & models"), ("config", "Configuration"), ("env", "Environment"),
)


def _nav(optimize: bool, load: bool = False) -> list[tuple[str, str]]:
    """The page's sections; "Optimize" and "Load" (after "Across runs") only when such runs are shown."""
    out = list(_SECTIONS)
    at = out.index(("across", "Across runs")) + 1
    if load:
        out.insert(at, ("load", "Load"))
    if optimize:
        out.insert(at, ("optimize", "Optimize"))
    return out


def default_title(results: Sequence[Result]) -> str:
    specs = list(dict.fromkeys(r.model.spec for r in results))
    shown = ", ".join(specs[:3]) + (f" and {len(specs) - 3} more" if len(specs) > 3 else "")
    return f"infermeter report: {shown}" if shown else "infermeter report"


def _finite(data: Any) -> Any:
    """NaN and infinities as null: JSON.parse rejects them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    return data


def _json_for_html(data: object) -> str:
    """JSON that cannot end the <script> element it sits in, nor start a comment or entity."""
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False, default=str)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _figure(chart: Chart, svg: str) -> str:
    return (
        f'<figure class="chart" id="chart-{T.esc(chart.slug)}" data-slug="{T.esc(chart.slug)}">\n{svg}\n'
        f"<figcaption><b>{T.esc(chart.title)}.</b> {T.esc(chart.caption)} "
        f'<span class="mono">[{T.esc(chart.slug)}]</span></figcaption>\n</figure>'
    )


def _run_section(r: Result, figures: list[str], profile: str = "") -> str:
    head = f'<span class="mono">{T.esc(r.id)}</span> — {T.esc(r.model.spec)}, batch {r.batch_size}, {T.esc(r.scenario)}'
    if r.verdict is not None:
        head += f' <span class="badge {"ok" if r.verdict.valid else "bad"}">{T.esc(r.verdict.label)}</span>'
    parts = [f'<section id="run-{T.esc(r.id)}" class="run">', f"<h3>{head}</h3>"]
    bits = [f"invocation <span class=\"mono\">{T.esc(r.invocation)}</span>", f"created {T.esc(r.created.isoformat(timespec='seconds'))}"]
    if r.sweep is not None:
        axes = ", ".join(f"{k}={v}" for k, v in r.sweep.axes.items())
        bits.append(f"sweep <span class=\"mono\">{T.esc(r.sweep.sweep_id)}</span> point {T.esc(axes)}")
    if r.latency is not None:
        bits.append(f"{r.latency.count:,} samples, stopped by {T.esc(r.stop_reason or '–')}")
    parts.append(f'<p class="muted">{"; ".join(bits)}</p>')
    if is_load(r):
        parts.append(run_note_html(r))
    if r.error:
        parts.append(f'<p><span class="badge bad">error</span> {T.esc(r.error)}</p>')
    if r.warnings:
        parts.append("<ul>" + "".join(f'<li class="warn">{T.esc(w)}</li>' for w in r.warnings) + "</ul>")
    parts += figures or ([] if profile else ['<p class="muted">No latency samples: nothing to draw for this run.</p>'])
    if profile:
        parts.append(profile)
    if r.prediction is not None:
        from .predict_table import html_section

        parts.append(html_section(r))
    parts.append("</section>")
    return "\n".join(parts)


def _is_profile_chart(c: Chart) -> bool:
    return c.slug.startswith("profile-")


def _profile_html(r: Result, figs: list[tuple[Chart, str]]) -> str:
    from .profile_table import html_section

    return html_section(r) + "".join(_figure(c, s) for c, s in figs)


def _optimize_reports(results: Sequence[Result]) -> list[Any]:
    """The optimize runs among ``results`` (none when the optimize summary is unavailable)."""
    try:
        from ..optimize.summary import reports_of
    except ImportError:
        return []
    return list(reports_of(results))


def _optimize_section(shown: Sequence[tuple[Any, list[tuple[Chart, str]]]]) -> str:
    """Each optimize run's table of candidates, then its Pareto chart."""
    from .optimize_table import html_section

    parts = ['<section id="optimize"><h2>Optimize</h2>']
    for rep, figs in shown:
        parts.append(html_section(rep))
        parts += [_figure(c, s) for c, s in figs]
    parts.append("</section>")
    return "\n".join(parts)


def _load_section(results: Sequence[Result], figures: list[str]) -> str:
    """The load runs' table, then the latency-throughput curve of each target run at several loads."""
    from .load_table import html_section

    parts = ['<section id="load"><h2>Load</h2>', html_section(results)]
    parts += figures or ['<p class="muted">One load run per target: no latency-throughput curve (it needs two or '
                         "more runs against the same endpoint, model and protocol, such as find-max steps or "
                         "several --rate runs).</p>"]
    parts.append("</section>")
    return "\n".join(parts)


def render_html(results: Sequence[Result], title: str | None = None, *, generated: datetime | None = None) -> str:
    """The report page for ``results`` (in the order given), as one HTML string."""
    results = list(results)
    if not results:
        raise UsageError("no runs to report; give run ids, --invocation ID or --sweep ID")
    require_matplotlib()
    title = title or default_title(results)
    made = [(c, svg_of(c)) for c in charts(results)]
    # operator-profile charts sit beside the profile's tables, not with the latency charts
    profiles: dict[str, list[tuple[Chart, str]]] = {}
    for c, s in made:
        if _is_profile_chart(c):
            profiles.setdefault(c.section, []).append((c, s))
    made = [(c, s) for c, s in made if not _is_profile_chart(c) and c.section != "optimize"]  # optimize: its own section
    across = [_figure(c, s) for c, s in made if c.section == "across"]
    load_figs = [_figure(c, s) for c, s in made if c.section == "load"]  # the Load section's curves
    per_run: dict[str, list[str]] = {}
    for c, s in made:
        if c.section not in ("across", "load"):
            per_run.setdefault(c.section, []).append(_figure(c, s))
    load = any(is_load(r) for r in results)
    if not across:
        across = (['<p class="muted">Load runs are compared in the Load section; no other runs to compare here.</p>']
                  if load and sum(not is_load(r) for r in results) < 2
                  else ['<p class="muted">A single run: nothing to compare across runs.</p>'])
    reports = _optimize_reports(results)
    pareto: list[tuple[Any, list[tuple[Chart, str]]]] = []
    if reports:
        from .plots_optimize import charts as optimize_charts

        pareto = [(rep, [(c, svg_of(c)) for c in optimize_charts(rep)]) for rep in reports]

    body = [
        '<section id="summary"><h2>Summary</h2>',
        '<input class="filter" type="search" data-table="summary-table" placeholder="filter runs (any text in the row)" aria-label="filter runs">',
        T.summary_table(results),
        '<p class="muted">Click a column heading to sort. Milliseconds; [low, high] is the confidence interval.</p></section>',
        f'<section id="verdicts"><h2>Verdicts</h2>{T.verdict_table(results)}</section>',
        '<section id="across"><h2>Across runs</h2>',
        *across,
        "</section>",
        *([_optimize_section(pareto)] if pareto else []),
        *([_load_section(results, load_figs)] if load else []),
        '<section id="runs"><h2>Per run</h2>',
        *[_run_section(r, per_run.get(r.id, []), _profile_html(r, profiles.get(r.id, [])) if r.op_profile is not None else "")
          for r in results],
        "</section>",
        f'<section id="warnings"><h2>Warnings</h2>{T.warnings_table(results)}</section>',
        f'<section id="setup"><h2>Setup &amp; models</h2><h3>Phases, timer and memory</h3>{T.setup_table(results)}'
        f"<h3>Models</h3>{T.models_table(results)}</section>",
        f'<section id="config"><h2>Configuration</h2><p class="muted">The exact settings asked for.</p>{T.config_table(results)}</section>',
        f'<section id="env"><h2>Environment</h2>{T.env_table(results)}</section>',
    ]
    generated = generated or datetime.now(timezone.utc)
    scenarios = ", ".join(dict.fromkeys(r.scenario for r in results))
    failed = sum(r.status != "ok" for r in results)
    subtitle = f"{len(results)} run{'s' if len(results) != 1 else ''} ({scenarios})" + (f", {failed} failed" if failed else "")
    conf = next((r.latency.confidence for r in results if r.latency), 0.95)
    from .. import __version__

    values = {
        "title": T.esc(title),
        "subtitle": T.esc(subtitle),
        "confidence": f"{conf:.0%}",
        "version": T.esc(__version__),
        "generated": T.esc(generated.isoformat(timespec="seconds")),
        "schema": T.esc(SCHEMA),
        "nav": "".join(f'<a href="#{key}">{T.esc(label)}</a>' for key, label in _nav(bool(pareto), load)),
        "body": "\n".join(body),
        "data": _json_for_html({
            "schema": SCHEMA, "generated": generated.isoformat(),
            "charts": [c.slug for c, _ in made] + [c.slug for figs in profiles.values() for c, _ in figs]
            + [c.slug for _, figs in pareto for c, _ in figs],
            "results": [r.to_json_dict() for r in results],
        }),
    }
    template = resources.files("infermeter.report").joinpath("template.html").read_text(encoding="utf-8")
    # One pass: text substituted in is never scanned for placeholders again.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], template)


def write_report(
    results: Sequence[Result], path: str | Path, png_dir: str | Path | None = None, *, title: str | None = None
) -> Path:
    """Write the HTML report to ``path`` (atomically) and, with ``png_dir``, every chart as PNG.

    Both destinations are checked before anything is drawn, and nothing is written until
    everything is drawn, so a bad path or a failure costs no existing file."""
    p = check_writable(path)
    if png_dir is not None:
        check_png_dir(png_dir)
    text = render_html(results, title)
    if png_dir is not None:
        render_pngs(results, png_dir)
    return write_text(p, text)
