"""The HTML report rendered by headless Chromium (Debian package ``chromium``).

``--dump-dom`` returns the DOM after the page's load event: the page's own self-check
(inline script) has by then measured every chart's SVG and recorded any script error in
``#im-selfcheck-result``. Chromium's own log (stderr) is scanned for console messages as
well: the page logs nothing when all is well, so any CONSOLE line is a failure.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian package chromium)")


def chromium(tmp_path, *args, timeout=120):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        "--hide-scrollbars", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def console_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]


def self_check(dom: str) -> dict:
    m = re.search(r'<script type="application/json" id="im-selfcheck-result">(.*?)</script>', dom, re.S)
    assert m, "self-check result element missing from the dumped DOM"
    return json.loads(m.group(1))


def test_report_renders_without_errors_and_every_chart_draws(tmp_path, real_results, variety, full_html):
    from infermeter.report.plots import charts

    results = [*real_results, *variety]
    page = tmp_path / "report.html"
    page.write_text(full_html, encoding="utf-8")
    expected = [c.slug for c in charts(results)]
    kinds = {s.split("-")[0] for s in expected}
    assert {"compare", "vs", "server", "latency", "timeline"} <= kinds  # every kind of chart is exercised

    p = chromium(tmp_path, "--window-size=1280,1600", "--dump-dom", page.as_uri())
    assert console_lines(p.stderr) == []
    check = self_check(p.stdout)
    assert check["errors"] == [] and check["problems"] == [], check
    assert check["status"] == "ok"
    assert check["runs"] == len(results)
    assert [c["slug"] for c in check["charts"]] == expected
    for c in check["charts"]:
        assert c["found"] and c["width"] > 100 and c["height"] > 50, c
    assert p.stdout.count('<figure class="chart"') == len(expected)
    assert 'data-status="ok"' in p.stdout


def test_self_check_catches_script_errors_and_charts_that_did_not_draw(tmp_path, real_results):
    """The harness is not vacuous: a thrown error and a zero-size chart are both reported."""
    from infermeter.report.html import render_html

    html = render_html(real_results[:2])
    first_svg = re.search(r"<svg .*?</svg>", html, re.S)
    assert first_svg
    html = html.replace(first_svg.group(0), '<svg width="0" height="0"></svg>', 1)
    html = html.replace("</body>", "<script>notDefinedAnywhere();</script></body>")
    page = tmp_path / "broken.html"
    page.write_text(html, encoding="utf-8")

    p = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert any("notDefinedAnywhere" in ln for ln in console_lines(p.stderr)), p.stderr[-2000:]
    check = self_check(p.stdout)
    assert check["status"] == "fail"
    assert any("did not draw" in x for x in check["problems"]), check


def test_screenshot_shows_a_drawn_page(tmp_path, real_results):
    """A screenshot of the top of the page: not blank, and wide enough to hold the charts."""
    from PIL import Image

    from infermeter.report.html import write_report

    page = write_report(real_results, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri())
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2000)
    colours = img.resize((320, 500)).getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # charts and tables, not an empty or error page
