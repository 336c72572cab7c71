"""The report of an optimize run, from an OptimizeReport built by hand: the console table, the
HTML section (escaped), the JSON, and the Pareto chart."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from rich.console import Console

from infermeter.optimize.evaluate import Evaluation
from infermeter.optimize.pareto import Choice
from infermeter.optimize.schema import CandidateRecord, OptimizeReport, Row, Step
from infermeter.report.optimize_table import html_section, optimize_json, render_optimize

EVIL_NAME = "fp16<script>&"
_FIXED = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _record(name, family, kind, *, status="ok", reason="", accuracy=None, steps=(), size=None, rows=360):
    return CandidateRecord(
        session="sess01", name=name, family=family, kind=kind, steps=list(steps),
        lineage=[s.text() for s in steps], status=status, reason=reason, objective="latency-p50",
        evaluation=Evaluation(metric="accuracy", value=accuracy, higher_is_better=True, metric_source="given",
                              rows=rows, labels=True) if accuracy is not None else None,
        accuracy=accuracy, accuracy_name="accuracy", size_bytes=size, max_drop=0.01,
    )


def _report(**over) -> OptimizeReport:
    onnx = Step(op="export-onnx", params={"opset": 17})
    rows = [
        Row(record=_record("baseline", "baseline", "baseline", accuracy=0.9722, size=4_200_000),
            objective_value_s=0.00250, speedup=1.0, accuracy_delta=0.0, peak_memory_bytes=150_000_000,
            verdict="baseline", on_front=True),
        Row(record=_record("onnx-int8-dynamic", "quantize", "quantize-dynamic", accuracy=0.9694, size=1_100_000,
                           steps=[onnx, Step(op="quantize-dynamic", params={"weight_type": "int8", "per_channel": False})]),
            objective_value_s=0.00108, speedup=2.31, speedup_ci_low=2.20, speedup_ci_high=2.43,
            accuracy_delta=-0.0028, peak_memory_bytes=120_000_000, verdict="faster within budget",
            on_front=True, chosen=True),
        Row(record=_record(EVIL_NAME, "precision", "float16", accuracy=0.9300, size=2_100_000,
                           steps=[Step(op="cast", params={"dtype": "float16"})]),
            objective_value_s=0.00080, speedup=3.12, speedup_ci_low=2.95, speedup_ci_high=3.30,
            accuracy_delta=-0.0422, peak_memory_bytes=90_000_000, verdict="accuracy budget exceeded", on_front=True),
        Row(record=_record("prune-unstructured-50", "prune", "prune-unstructured", accuracy=0.9700, size=4_200_000,
                           steps=[Step(op="prune-unstructured", params={"amount": 0.5})]),
            objective_value_s=0.00251, speedup=0.996, speedup_ci_low=0.97, speedup_ci_high=1.02,
            accuracy_delta=-0.0022, peak_memory_bytes=151_000_000,
            verdict="not faster: dense kernels ignore unstructured sparsity (zeros are still multiplied)"),
        Row(record=_record("compile-max-autotune", "compile", "compile", status="failed",
                           reason="inductor needs a C++ compiler; none found"),
            verdict="failed: inductor needs a C++ compiler; none found"),
        Row(record=_record("tensorrt-fp16", "runtime", "tensorrt", status="skipped", reason="no CUDA device here"),
            verdict="skipped"),
    ]
    data = dict(
        session="sess01", model="zoo:digits-mlp", objective="latency-p50", batch_size=1, accuracy_name="accuracy",
        higher_is_better=True, max_drop=0.01, rows=rows, confidence=0.95,
        choice=Choice(chosen="onnx-int8-dynamic", within_budget=True,
                      message="onnx-int8-dynamic: 2.31x faster, accuracy drop +0.0028 (budget 0.01)"),
        notes=["unstructured pruning keeps dense shapes"], model_path="out/onnx-int8-dynamic.onnx",
        recipe_path="out/onnx-int8-dynamic.recipe.yaml", budget_s=600.0, elapsed_s=612.0, budget_exhausted=True,
    )
    data.update(over)
    return OptimizeReport(**data)


def _console_text(report: OptimizeReport) -> str:
    console = Console(record=True, width=200)
    render_optimize(report, console)
    return console.export_text()


def test_console_table_shows_every_candidate_with_units_and_verdicts():
    text = _console_text(_report())
    for name in ("baseline", "onnx-int8-dynamic", EVIL_NAME, "prune-unstructured-50", "compile-max-autotune",
                 "tensorrt-fp16"):
        assert name in text
    assert "2.31× [2.20, 2.43]" in text
    assert "3.12× [2.95, 3.30]" in text
    assert "1.00×" in text
    assert "✓★ onnx-int8-dynamic" in text
    assert " ★ " + EVIL_NAME in text and "✓★ " + EVIL_NAME not in text
    # units: latency in ms, sizes in MB, accuracy in %, deltas in points
    assert "1.08 ms" in text and "2.5 ms" in text
    assert "1.1 MB" in text and "120.0 MB" in text
    assert "96.94%" in text and "-0.28 pt" in text and "-4.22 pt" in text
    assert "export-onnx(opset=17) →" in text and "quantize-dynamic(weight_type=int8," in text  # wrapped
    # verdicts and reasons
    assert "faster within budget" in text
    assert "accuracy budget exceeded" in text
    assert "not faster: dense kernels ignore" in text  # the verdict column wraps
    assert "failed: inductor needs a C++ compiler;" in text
    assert "skipped: no CUDA device here" in text
    # title, footnote and the lines under the table
    assert "zoo:digits-mlp" in text and "latency-p50" in text and "batch 1" in text and "95% CI" in text
    assert "speed-up = baseline / candidate p50 latency, 95% CI: bootstrap" in text
    assert "360 eval rows" in text
    assert "choice: onnx-int8-dynamic: 2.31x faster" in text
    assert "note: unstructured pruning keeps dense shapes" in text
    assert "time budget of 600 s exhausted after 612 s" in text
    assert "model written to out/onnx-int8-dynamic.onnx" in text
    assert "recipe written to out/onnx-int8-dynamic.recipe.yaml" in text


def test_console_failed_and_skipped_rows_have_no_numbers():
    text = _console_text(_report())
    failed = next(line for line in text.splitlines() if "compile-max-autotune" in line)
    assert "×" not in failed and " ms" not in failed and "pt" not in failed.split("failed:")[0]


def test_console_throughput_and_error_metric_units():
    rep = _report(objective="throughput", accuracy_name="mse", higher_is_better=False, max_drop=0.5,
                  budget_exhausted=False, model_path=None, recipe_path=None)
    rep.rows[1].throughput, rep.rows[1].accuracy_delta, rep.rows[1].record.accuracy = 925.9, 0.0123, 1.2345
    text = _console_text(rep)
    assert "925.9 samples/s" in text
    assert "speed-up = candidate / baseline throughput" in text
    assert "+0.0123" in text and "1.234" in text and " pt" not in text
    assert "exhausted" not in text and "written to" not in text


def test_html_section_escapes_and_holds_the_rows():
    html = html_section(_report())
    assert "fp16&lt;script&gt;&amp;" in html
    assert "<script>" not in html
    assert 'id="optimize-table-sess01"' in html and 'class="sortable"' in html
    for name in ("onnx-int8-dynamic", "prune-unstructured-50", "compile-max-autotune", "tensorrt-fp16"):
        assert name in html
    assert html.count("<tr>") == 1 + 6
    assert "2.31×" in html and "[2.20, 2.43]" in html
    assert "export-onnx(opset=17) → quantize-dynamic(weight_type=int8, per_channel=False)" in html
    assert '<span class="badge bad">failed</span> inductor needs a C++ compiler' in html
    assert "skipped: no CUDA device here" in html
    assert "onnx-int8-dynamic: 2.31x faster" in html
    assert "unstructured pruning keeps dense shapes" in html


def test_optimize_json_round_trips():
    rep = _report()
    data = optimize_json(rep)
    assert data["rows"][1]["record"]["name"] == "onnx-int8-dynamic"
    assert OptimizeReport.model_validate(data) == rep


def test_pareto_chart_renders_to_svg():
    pytest.importorskip("matplotlib")
    from infermeter.report.plots import svg_of
    from infermeter.report.plots_optimize import charts

    rep = _report()
    (chart,) = charts(rep)
    assert chart.slug == "pareto-sess01" and chart.section == "optimize"
    assert "Failed (not drawn): compile-max-autotune" in chart.caption
    assert "Skipped (not drawn): tensorrt-fp16" in chart.caption
    svg = svg_of(chart)
    assert svg.startswith("<svg")
    assert "onnx-int8-dynamic" in svg
    assert "fp16&lt;script&gt;&amp;" in svg
    assert "accuracy budget: -1 pt" in svg


def test_pareto_chart_lower_is_better_and_nothing_chosen():
    pytest.importorskip("matplotlib")
    from infermeter.report.plots import svg_of
    from infermeter.report.plots_optimize import charts

    rep = _report(accuracy_name="mse", higher_is_better=False, max_drop=0.05,
                  choice=Choice(chosen=None, within_budget=False, message="keep the baseline"))
    for r in rep.rows:
        r.chosen = False
    (chart,) = charts(rep)
    svg = svg_of(chart)
    assert "accuracy budget: +0.05" in svg
    assert "below it" not in chart.caption and "above it" in chart.caption


def _optimize_results(real_results):
    """Real measurements dressed as one optimize session: batch 1 the baseline, batch 4 a
    runtime candidate (so the speed-up is real, from real samples)."""
    from infermeter.optimize.schema import CandidateRecord

    out = []
    for r, name, fam in ((real_results[0], "baseline", "baseline"), (real_results[2], "batch-<4>", "runtime")):
        c = r.model_copy(deep=True)
        rec = CandidateRecord(session="sess02", name=name, family=fam, kind=fam, objective="throughput",
                              batch_size=c.batch_size, accuracy=1.0, accuracy_name="fidelity: cosine", max_drop=0.01)
        c.scenario_details = {**c.scenario_details, "optimize": rec.model_dump(mode="json")}
        out.append(c)
    return out


def test_html_page_has_an_optimize_section_with_the_chart(real_results):
    from infermeter.report.html import render_html

    page = render_html(_optimize_results(real_results), title="t")
    assert '<a href="#optimize">Optimize</a>' in page
    assert page.index('<section id="across">') < page.index('<section id="optimize">') < page.index('<section id="runs">')
    assert 'id="optimize-table-sess02"' in page
    assert 'id="chart-pareto-sess02"' in page
    assert '"pareto-sess02"' in page  # listed for the page's self-check
    assert "batch-<4>" not in page and "batch-&lt;4&gt;" in page


def test_html_page_without_optimize_runs_has_no_optimize_section(real_results):
    from infermeter.report.html import render_html

    page = render_html(real_results[:1], title="t", generated=_FIXED)
    assert 'id="optimize"' not in page and "#optimize" not in page
