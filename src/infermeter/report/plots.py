"""The report's charts, drawn with matplotlib as SVG (inline in the HTML) and PNG (for papers).

Each chart is a :class:`Chart`: a stable slug (the PNG file stem and the HTML element id),
a title, a caption saying what it shows, and a function that draws it on a fresh
``matplotlib.figure.Figure``. pyplot is never imported, so no global figure state exists to
leak; rcParams are set only inside ``rc_context`` while a chart is drawn and saved.

matplotlib is the ``report`` extra and is imported here lazily, on first use. Charts read
:class:`Result` objects and ``stats``; they compute no statistic themselves. Seconds in the
data, milliseconds on the axes.
"""

from __future__ import annotations

import io
import os
import re
import secrets
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import OutputError, UsageError
from ..result import Estimate, Result

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Chart", "charts", "render_pngs", "check_png_dir", "svg_of", "png_of", "require_matplotlib"]

# Colours: matplotlib's tab10, fixed per percentile so every chart reads the same way.
PCT_COLOURS = {"p50": "#1f77b4", "p90": "#2ca02c", "p95": "#17becf", "p99": "#ff7f0e", "p999": "#d62728"}
PCT_LABELS = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p999": "p99.9"}
SERIES = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

_RC = {
    "svg.fonttype": "none",  # real text in the SVG: small, selectable, searchable
    "svg.hashsalt": "infermeter",  # deterministic clip-path ids
    "text.parse_math": False,  # a '$' in a model spec is text, not mathtext
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.85,
}


@dataclass(frozen=True)
class Chart:
    """One chart of the report. ``slug`` is stable across renders of the same results."""

    slug: str
    title: str
    caption: str
    draw: Callable[[Figure], None] = field(repr=False)
    size: tuple[float, float] = (10.0, 3.6)
    section: str = "across"  # "across" or the id of the run it belongs to


def require_matplotlib() -> None:
    """Fail with a fix, not a traceback, when the ``report`` extra is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(
            "the HTML/PNG report needs matplotlib, which is not installed; pip install 'infermeter[report]'"
        ) from None


@contextmanager
def _rc() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def _figure(chart: Chart) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=chart.size, layout="constrained")
    chart.draw(fig)
    return fig


_ID = re.compile(r'\bid="([^"]+)"')


def svg_of(chart: Chart) -> str:
    """The chart as an ``<svg>`` element for inline HTML: no XML prolog, no metadata, and
    every id prefixed with the slug so many charts can share one document."""
    require_matplotlib()
    buf = io.StringIO()
    with _rc():
        _figure(chart).savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    ids = set(_ID.findall(text))
    prefix = chart.slug + "-"
    text = _ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})" if m.group(1) in ids else m.group(0), text)
    text = re.sub(
        r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"' if m.group(1) in ids else m.group(0), text
    )
    return text.replace("<svg ", f'<svg role="img" aria-label="{_attr(chart.title)}" ', 1)


def _attr(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def png_of(chart: Chart, dpi: int = 200) -> bytes:
    require_matplotlib()
    buf = io.BytesIO()
    with _rc():
        _figure(chart).savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def charts(results: Sequence[Result]) -> list[Chart]:
    """Every chart the results support, in report order: across runs first, then per run."""
    from . import plots_across, plots_load, plots_predict, plots_profile, plots_run
    from .load_table import is_load

    # Load runs are compared by their own latency-throughput curve (plots_load), not by the
    # local-runner charts, whose server chart would read their achieved_rate as a QPS.
    out = plots_across.charts([r for r in results if not is_load(r)]) + plots_load.curves(results)
    for r in results:
        out += plots_run.charts(r) + plots_load.run_charts(r) + plots_profile.charts(r) + plots_predict.charts(r)
    if any("optimize" in r.scenario_details for r in results):  # Pareto charts of optimize runs (for --png too)
        from ..optimize.summary import reports_of
        from . import plots_optimize

        for rep in reports_of(results):
            out += plots_optimize.charts(rep)
    seen: set[str] = set()
    unique = []
    for c in out:  # slugs name files and element ids: safe characters only, never twice
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", c.slug).strip("_") or "chart"
        slug, k = base, 2
        while slug in seen:
            slug, k = f"{base}-{k}", k + 1
        seen.add(slug)
        unique.append(c if slug == c.slug else replace(c, slug=slug))
    return unique


def check_png_dir(directory: str | Path) -> Path:
    """Fail before rendering if PNGs cannot be written under ``directory`` (created if missing)."""
    d = Path(directory).expanduser()
    if d.exists() and not d.is_dir():
        raise OutputError(f"--png '{d}' is a file, not a directory; give a directory for the PNG files")
    probe = d
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create '{d}': '{probe}' is a file, not a directory; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write PNG files to '{d}': permission denied on '{probe}'; choose a writable directory")
    return d


def render_pngs(results: Sequence[Result], directory: str | Path, dpi: int = 200) -> list[Path]:
    """Write every chart as ``DIR/<slug>.png`` (stable names: rendering the same runs again
    replaces the same files, atomically); returns the paths in report order."""
    d = check_png_dir(directory)
    made = [(c, png_of(c, dpi)) for c in charts(results)]  # render all before touching the disk
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create '{d}': {exc.strerror or exc}; choose a writable directory") from None
    paths = []
    for chart, data in made:
        p = d / f"{chart.slug}.png"
        tmp = d / f".{p.name}.{secrets.token_hex(4)}.tmp"
        try:
            # os.open with 0o666, not mkstemp's 0o600: a figure for a paper is as readable as the umask allows.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write '{p}': {exc.strerror or exc}; choose a writable directory") from None
        paths.append(p)
    return paths


# ---------------------------------------------------------------- helpers shared by the chart kinds


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e3:.4g}"


def est_label(e: Estimate) -> str:
    """``0.101 ms [0.1, 0.102]``; a missing bound reads n/a."""
    return f"{fmt_ms(e.value)} ms [{fmt_ms(e.ci_low)}, {fmt_ms(e.ci_high)}]"


def yerr(estimates: Sequence[Estimate | None], scale: float = 1e3) -> Any:
    """Asymmetric error bars from stored CIs; a missing bound draws no bar on that side."""
    lows, highs = [], []
    for e in estimates:
        if e is None:
            lows.append(0.0)
            highs.append(0.0)
            continue
        lows.append((e.value - e.ci_low) * scale if e.ci_low is not None else 0.0)
        highs.append((e.ci_high - e.value) * scale if e.ci_high is not None else 0.0)
    return [lows, highs]


def short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def count_label(results: Sequence[Result]) -> str:
    """``n = 459`` or ``n = 459–1,200 per point``: the sample counts behind a chart."""
    counts = sorted(r.latency.count for r in results if r.latency)
    if not counts:
        return "n = 0"
    unit = "blocks" if any(r.latency and r.latency.per == "block" for r in results) else "samples"
    if counts[0] == counts[-1]:
        return f"n = {counts[0]:,} {unit}" + (" per point" if len(counts) > 1 else "")
    return f"n = {counts[0]:,}–{counts[-1]:,} {unit} per point"


def plain_log(axis: Any) -> None:
    """Tick labels of a log axis as plain numbers (0.5, 2, 10): matplotlib's default writes
    them as mathtext, which ``text.parse_math = False`` would show as raw ``$10^{1}$``.
    Call after the axis limits are set; minor ticks at 2 and 5 are labelled over < 2 decades."""
    import math

    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and hi / lo < 100:
        def minor(v: float, _: Any) -> str:
            return f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v)), 6) in (2.0, 5.0) else ""

        axis.set_minor_formatter(FuncFormatter(minor))
    else:
        axis.set_minor_formatter(NullFormatter())


def slugify(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:40] or "x"
