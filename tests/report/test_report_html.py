"""The HTML report and PNG charts without a browser: self-contained, escaped, complete."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

from infermeter.errors import OutputError, UsageError  # noqa: E402
from infermeter.report.html import render_html, write_report  # noqa: E402
from infermeter.report.plots import charts, render_pngs  # noqa: E402
from infermeter.report.plots_across import server_qps  # noqa: E402
from infermeter.report.plots_run import MARKED  # noqa: E402

URL_ATTR = re.compile(r"""\b(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def embedded(html: str, element_id: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1))


def svgs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="chart" id="chart-([^"]+)"[^>]*>\s*(<svg .*?</svg>)', html, re.S))


def test_page_is_self_contained(full_html):
    html = full_html
    assert not URL_ATTR.search(html)
    assert "<link" not in html and "@import" not in html and not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert not re.search(r"<script[^>]*\bsrc=", html) and not re.search(r"<img[^>]*\bsrc=[\"'](?!data:)", html)
    assert "default-src 'none'" in html  # the browser itself refuses any fetch
    assert len(re.findall(r"<script>", html)) == 2  # the error hook and the page script; data is JSON


def test_embedded_data_round_trips_every_result_with_raw_samples(real_results, variety, full_html):
    from infermeter.result import load_result

    results = [*real_results, *variety]
    data = embedded(full_html, "im-data")
    assert data["schema"] == "infermeter.result/1"
    assert data["charts"] == [c.slug for c in charts(results)]
    loaded = [load_result(d) for d in data["results"]]
    assert [r.id for r in loaded] == [r.id for r in results]
    assert loaded[0].latency.samples == real_results[0].latency.samples
    assert loaded[0].phases.warmup_samples == real_results[0].phases.warmup_samples


def test_user_strings_are_escaped_everywhere(full_html, evil):
    html = full_html
    assert "<script>alert" not in html
    assert "</svg> " not in html.replace("</svg>\n", "")  # the spec's "</svg>" never closes a chart early
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") >= 5  # title, tables, warnings …
    assert "\\u003cscript\\u003ealert" in html  # inside the embedded JSON
    data = embedded(html, "im-data")
    assert any(r["model"]["spec"] == evil for r in data["results"])
    # '$' is text, not mathtext: the legend naming the evil run's series carries it verbatim (XML-escaped).
    chart = svgs(html)["vs-batch"]
    assert "$\\frac{a}{b}$" in chart and "&lt;script&gt;" in chart


def test_charts_cover_each_kind_and_show_counts_and_stored_percentiles(real_results, variety, full_html):
    from infermeter.report.plots import est_label

    results = [*real_results, *variety]
    drawn = svgs(full_html)
    ok = [r for r in results if r.status == "ok"]
    expected = {"compare", "vs-batch", "vs-threads", "vs-engine", "server-latency-vs-qps"}
    expected |= {f"{kind}-{r.id}" for r in ok for kind in ("latency", "timeline")}
    assert set(drawn) == expected  # the failed run has no charts
    for slug, svg in drawn.items():
        assert re.search(r"n ?= ?[\d,]+", svg), f"{slug} shows no sample count"
        assert "latency (ms)" in svg, f"{slug} has no latency axis in ms"
    r = real_results[0]
    dist = drawn[f"latency-{r.id}"]
    for key in MARKED:  # markers are labelled with the stored estimates and CIs, as stored
        assert est_label(getattr(r.latency, key)) in dist
    assert f"{len(r.phases.warmup_samples):,} warm-up" in drawn[f"timeline-{r.id}"]


def test_single_run_has_no_cross_run_charts_and_failed_runs_are_listed(real_results, variety):
    html = render_html(real_results[:1])
    assert set(svgs(html)) == {f"latency-{real_results[0].id}", f"timeline-{real_results[0].id}"}
    assert "nothing to compare across runs" in html
    failed = next(r for r in variety if r.status == "failed")
    html = render_html([failed])
    assert svgs(html) == {} and "No latency samples" in html and "failed" in html


def test_server_qps_keys_are_read_defensively(real_results):
    r = real_results[0].model_copy(deep=True)
    r.scenario = "server"
    for details, expected in [
        ({"offered_qps": 100, "achieved_qps": 95.5}, (100.0, 95.5)),
        ({"qps": {"offered": 50, "achieved": 49}}, (50.0, 49.0)),
        ({"target_qps": 10, "qps_achieved": 9}, (10.0, 9.0)),
        ({"queries": 10}, (None, None)),
    ]:
        r.scenario_details = details
        assert server_qps(r) == expected


def test_pngs_have_stable_names_and_are_written_atomically(tmp_path, real_results):
    paths = render_pngs(real_results, tmp_path / "new" / "figs", dpi=60)
    names = [p.name for p in paths]
    assert names == [f"{c.slug}.png" for c in charts(real_results)]
    assert "vs-batch.png" in names and "compare.png" in names
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    again = render_pngs(real_results, tmp_path / "new" / "figs", dpi=60)
    assert again == paths and sorted(p.name for p in (tmp_path / "new" / "figs").iterdir()) == sorted(names)


def test_write_report_checks_both_paths_before_drawing(tmp_path, real_results):
    out = tmp_path / "report.html"
    out.write_text("previous report")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        write_report(real_results, out, png_dir=blocker)
    assert out.read_text() == "previous report"  # nothing lost
    with pytest.raises(OutputError, match="does not exist"):
        write_report(real_results, tmp_path / "missing" / "r.html")
    with pytest.raises(OutputError, match="is a directory"):
        write_report(real_results, tmp_path)
    with pytest.raises(UsageError, match="no runs"):
        render_html([])
    p = write_report(real_results, out, png_dir=tmp_path / "png")
    assert p == out and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert len(list((tmp_path / "png").glob("*.png"))) == len(charts(real_results))


def test_rendering_leaves_no_matplotlib_global_state(real_results):
    import matplotlib

    before = dict(matplotlib.rcParams)
    render_html(real_results[:1])
    assert dict(matplotlib.rcParams) == before
    code = (
        "import sys, json; from infermeter.result import load_result; from infermeter.report.html import render_html;"
        "render_html([load_result(json.loads(sys.stdin.read()))]);"
        "print('matplotlib.pyplot' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], input=json.dumps(real_results[0].to_json_dict()),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_heavy_tails_get_log_axes_with_plain_labels_and_odd_ids_safe_names(tmp_path, real_results):
    import numpy as np

    from infermeter.report.plots import svg_of
    from infermeter.stats import describe_latency

    r = real_results[0].model_copy(deep=True)
    x = np.array(r.latency.samples)
    x[::50] *= 40  # a tail 40 times the body: log axes on the CDF and the timeline
    r.latency = describe_latency(x)
    r.id = "../odd id/<x>"
    made = charts([r])
    assert [c.slug for c in made] == ["latency-_odd_id_x", "timeline-_odd_id_x"]
    for c in made:
        svg = svg_of(c)
        assert "mathdefault" not in svg and "$" not in svg  # tick labels are plain numbers, not raw mathtext
    paths = render_pngs([r], tmp_path / "png", dpi=40)
    assert all(p.parent == tmp_path / "png" for p in paths)
