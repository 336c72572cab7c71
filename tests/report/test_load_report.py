"""The report's views of load runs, from REAL load runs against a loopback server
(tests/load/_servers.py in its own process): the latency-throughput curve across runs against
one target, each run's percentiles over time and errors, the Load section's table, PNG export,
a page mixing a bench run and load runs, and find-max steps marked pass/fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("aiohttp")
pytest.importorskip("hdrh")

from infermeter.load import LoadConfig, run_load, to_result  # noqa: E402
from infermeter.report.html import render_html  # noqa: E402
from infermeter.report.load_table import html_section  # noqa: E402
from infermeter.report.plots import charts, render_pngs, svg_of  # noqa: E402

SERVERS = Path(__file__).resolve().parents[1] / "load" / "_servers.py"
EVIL = "<script>alert('x')</script>&"


@pytest.fixture(scope="module")
def loads():
    """Three open-loop runs and a closed loop: /fast at 60/s and 180/s, a closed loop of 2 users
    on /fast, and /flaky (every other request a 500) at 80/s; {name: (outcome, result)}."""
    proc = subprocess.Popen([sys.executable, str(SERVERS), "general"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip().isdigit(), f"test server did not start (printed {line!r})"
        url = f"http://127.0.0.1:{int(line)}"
        cfgs = {
            "slow": LoadConfig(url + "/fast", rate=60, arrival="constant", duration_s=1.5),
            "quick": LoadConfig(url + "/fast", rate=180, arrival="constant", duration_s=1.5),
            "closed": LoadConfig(url + "/fast", concurrency=2, duration_s=0.5),
            "flaky": LoadConfig(url + "/flaky", rate=80, arrival="constant", duration_s=1.5),
        }
        out = {}
        for name, cfg in cfgs.items():
            o = run_load(cfg)
            out[name] = (o, to_result(o))
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _res(loads, *names):
    return [loads[n][1] for n in names]


def _svgs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="chart" id="chart-([^"]+)"[^>]*>\s*(<svg .*?</svg>)', html, re.S))


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}"')
    return html[start:html.index("</section>", start)]


@pytest.fixture(scope="module")
def page(loads, real_results):
    """One bench run and every load run, rendered once."""
    return render_html([real_results[0], *_res(loads, "slow", "quick", "closed", "flaky")], title="mixed")


def test_chart_slugs_curve_only_with_two_runs_per_target_and_errors_only_when_any(loads):
    slow, quick, closed, flaky = _res(loads, "slow", "quick", "closed", "flaky")
    assert flaky.scenario_details["errors"]["http-5xx"] > 0 and not any(slow.scenario_details["errors"].values())
    slugs = [c.slug for c in charts([slow, quick, closed, flaky])]
    curves = [s for s in slugs if s.startswith("load-curve-")]
    assert len(curves) == 1  # /fast has three runs; /flaky one, so no curve of its own
    for r in (slow, quick, closed, flaky):
        assert f"load-time-{r.id}" in slugs
    assert [s for s in slugs if s.startswith("load-errors-")] == [f"load-errors-{flaky.id}"]
    assert "server-latency-vs-qps" not in slugs and "compare" not in slugs  # load runs have their own curve
    one = [c.slug for c in charts([slow])]
    assert not any(s.startswith("load-curve") for s in one) and f"load-time-{slow.id}" in one
    # the curve's caption states what is drawn and the counts behind it
    curve = next(c for c in charts([slow, quick, closed]) if c.slug.startswith("load-curve-"))
    assert curve.section == "load" and "successful requests per point" in curve.caption
    lo, hi = sorted(r.latency.count for r in (slow, quick, closed))[::2]
    assert f"n = {lo:,}–{hi:,}" in curve.caption


def test_curve_draws_corrected_and_uncorrected_percentiles_and_offered_rates(loads):
    slow, quick, closed = _res(loads, "slow", "quick", "closed")
    (curve,) = [c for c in charts([slow, quick, closed]) if c.slug.startswith("load-curve-")]
    svg = svg_of(curve)
    for text in ("60/s", "180/s", "c=2", "closed loop (2 in flight)", "p99 uncorrected", "p50 corrected",
                 "goodput (successful requests/s", "latency (ms"):
        assert text in svg, text


def test_page_has_a_load_section_with_the_table_and_the_runs_numbers(loads, page):
    results = _res(loads, "slow", "quick", "closed", "flaky")
    assert '<a href="#load">Load</a>' in page
    assert page.index('<section id="across"') < page.index('<section id="load"') < page.index('<section id="runs"')
    load = _section(page, "load")
    assert 'id="load-table"' in load
    table = load[load.index('id="load-table"'):load.index("</table>", load.index('id="load-table"'))]
    assert table.count("<tr>") == 1 + len(results)  # heading + one row per load run, the bench run not among them
    flaky_out, flaky = loads["flaky"]
    n5 = flaky_out.counts["http-5xx"]
    assert n5 == sum(flaky_out.errors.values()) > 0
    row = next(tr for tr in table.split("<tr>") if flaky.id in tr)
    assert f'data-sort="{n5}">{n5:,}<br><small>http-5xx {n5:,}</small>' in row
    assert f"{flaky_out.requests:,}</td>" in row and "80.0/s" in row
    slow_out, slow = loads["slow"]
    row = next(tr for tr in table.split("<tr>") if slow.id in tr)
    assert "60.0/s" in row and f">{slow_out.requests:,}</td>" in row and "busy" in row
    p99 = slow.latency.p99
    assert f"{p99.value * 1e3:.4g} ms" in row  # the stored corrected p99, as the console formats it
    assert f"{slow.scenario_details['uncorrected']['p99'] * 1e3:.4g} ms" in row
    assert "closed loop (2 in flight)" in table
    # the across-runs curve sits in the Load section; per-run charts in each run's section
    drawn = _svgs(page)
    curve = next(s for s in drawn if s.startswith("load-curve-"))
    assert f'id="chart-{curve}"' in load
    run = _section(page, f"run-{flaky.id}")
    assert f'id="chart-load-time-{flaky.id}"' in run and f'id="chart-load-errors-{flaky.id}"' in run
    assert f"{n5:,} errors of {flaky_out.requests:,} requests" in run
    run = _section(page, f"run-{slow.id}")
    assert f"0 errors of {slow_out.requests:,} requests" in run and "load-errors-" not in run


def test_mixed_page_keeps_the_bench_run_and_lists_every_chart_for_the_self_check(loads, real_results, page):
    bench = real_results[0]
    results = [bench, *_res(loads, "slow", "quick", "closed", "flaky")]
    data = json.loads(re.search(r'<script type="application/json" id="im-data">(.*?)</script>', page, re.S).group(1))
    expected = [c.slug for c in charts(results)]
    assert sorted(data["charts"]) == sorted(expected) and sorted(_svgs(page)) == sorted(expected)
    assert f"latency-{bench.id}" in expected and f"timeline-{bench.id}" in expected
    assert len(data["results"]) == len(results)
    summary = _section(page, "summary")
    assert all(f"run-{r.id}" in summary for r in results)
    assert "load-note" not in _section(page, f"run-{bench.id}")


def test_png_export_writes_the_load_charts(loads, tmp_path):
    slow, quick, flaky = _res(loads, "slow", "quick", "flaky")
    paths = render_pngs([slow, quick, flaky], tmp_path, dpi=40)
    names = {p.name for p in paths}
    assert any(n.startswith("load-curve-") for n in names)
    assert {f"load-time-{r.id}.png" for r in (slow, quick, flaky)} <= names
    assert f"load-errors-{flaky.id}.png" in names and f"load-errors-{slow.id}.png" not in names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _find_max_like(loads):
    """The /fast runs dressed as one find-max search: 60/s passes, 180/s fails; extra keys
    (stability, env) as newer searches store them; a reason and the endpoint try to break out."""
    steps = []
    for i, (name, passed) in enumerate((("slow", True), ("quick", False))):
        r = loads[name][1].model_copy(deep=True)
        r.id, r.invocation = f"fmstep{i}", "fminv01"
        d = r.scenario_details
        d["endpoint"] = d["endpoint"] + EVIL
        d["env"] = {"anything": 1}
        d["search"] = {
            "offered": d["offered_rate"], "achieved": d["achieved_rate"], "p50": r.latency.p50.value,
            "p99": r.latency.p99.value, "passed": passed, "reasons": [] if passed else [f"p99 over {EVIL}"],
            "slo": "p99<=500ms", "step": i, "phase": "double", "stability": {"cv": 0.1},
        }
        steps.append(r)
    steps[-1].scenario_details["search"]["best_rate"] = steps[0].scenario_details["offered_rate"]
    return steps


def test_find_max_steps_are_marked_pass_and_fail_with_the_slo_and_best_rate(loads):
    steps = _find_max_like(loads)
    html = html_section(steps)
    assert html.count('<span class="badge ok">pass</span>') == 1 and html.count('<span class="badge bad">fail</span>') == 1
    assert "p99&lt;=500ms" in html and "step 1 (double)" in html
    assert "<script>" not in html and "p99 over &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;" in html
    assert "highest passing offered rate <b>60.0/s</b>" in html and "1 of 2 steps passed" in html
    (curve,) = [c for c in charts(steps) if c.slug.startswith("load-curve-")]
    assert "hollow" in curve.caption and "p99<=500ms" in curve.caption
    assert re.fullmatch(r"load-curve-[A-Za-z0-9_-]+", curve.slug)
    svg = svg_of(curve)
    assert "SLO: p99 ≤ 500 ms" in svg and "best passing: offered 60/s" in svg and "failed step (SLO, rate, errors or stability)" in svg
    assert "<script>alert" not in svg and "open loop, find-max steps" in svg
    # a search where nothing passed says so
    for s in steps:
        s.scenario_details["search"]["passed"] = False
    steps[-1].scenario_details["search"]["best_rate"] = None
    assert '<span class="badge bad">no step passed</span>' in html_section(steps)
    (curve,) = [c for c in charts(steps) if c.slug.startswith("load-curve-")]
    assert "no step passed" in curve.caption
    svg_of(curve)


CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package chromium)")
def test_page_with_load_runs_passes_the_browser_self_check(loads, page, tmp_path):
    f = tmp_path / "report.html"
    f.write_text(page, encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1600", "--dump-dom", f.as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r'<script type="application/json" id="im-selfcheck-result">(.*?)</script>', p.stdout, re.S)
    assert m
    check = json.loads(m.group(1))
    assert check["status"] == "ok" and check["problems"] == [] and check["errors"] == [], check
    assert any(c["slug"].startswith("load-curve-") for c in check["charts"])


def test_runs_without_records_or_successes_still_report(loads):
    """A run too big for per-request records has no per-bucket percentiles (its chart shows the
    request rate only); a run where nothing succeeded is in the table but not on the curve."""
    slow, quick = (r.model_copy(deep=True) for r in _res(loads, "slow", "quick"))
    for key in ("p50", "p99"):
        slow.scenario_details["over_time"].pop(key)
    slow.latency.samples = []
    dead = quick.model_copy(deep=True)
    dead.id, dead.status, dead.latency, dead.throughput = "deadrun1", "failed", None, None
    runs = [slow, quick, dead]
    by_slug = {c.slug: c for c in charts(runs)}
    assert f"latency-{slow.id}" not in by_slug  # no samples to draw a distribution from
    time_chart = by_slug[f"load-time-{slow.id}"]
    assert "not stored" in time_chart.caption
    svg_of(time_chart)
    (curve,) = [c for s, c in by_slug.items() if s.startswith("load-curve-")]
    assert "Not drawn (no successful request): deadrun1" in curve.caption
    svg_of(curve)
    html = html_section(runs)
    row = next(tr for tr in html.split("<tr>") if "deadrun1" in tr)
    assert '<span class="badge bad">failed</span>' in row and row.count("<td>–</td>") >= 2
