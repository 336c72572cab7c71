"""Markdown summaries for pull requests: the outcome of ``infermeter check`` and ``compare`` tables.

Reads ``CheckOutcome`` / ``ComparisonTable`` objects, computes nothing. Short on purpose:
a heading with PASS or FAIL, one table per checked pair, what differs between the
machines, and the rule that decided, so a reviewer can judge the verdict.
"""

from __future__ import annotations

from typing import Sequence

from ..compare import METRICS, CheckOutcome, ComparisonTable, MetricCheck, PairCheck
from ..result import Estimate

__all__ = ["check_markdown", "comparison_markdown"]


def _num(x: float | None, unit: str) -> str:
    if x is None:
        return "n/a"
    if unit == "s":
        return f"{x * 1e3:.4g}"
    if unit == "samples/s":
        return f"{x:,.1f}"
    return f"{x:.3f}"


def _est(e: Estimate | None, unit: str) -> str:
    if e is None:
        return "–"
    suffix = {"s": " ms", "samples/s": "/s"}.get(unit, "")
    return f"{_num(e.value, unit)}{suffix} [{_num(e.ci_low, unit)}, {_num(e.ci_high, unit)}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _metric_row(m: MetricCheck) -> str:
    verdict = f"**{m.verdict}**" if m.regressed else m.verdict
    label = "p99.9" if m.metric == "p999" else m.metric
    return (f"| {label} | {_est(m.baseline, m.unit)} | {_est(m.candidate, m.unit)} | "
            f"{_est(m.ratio, 'ratio')} | {_cell(verdict)} |")


def _pair(p: PairCheck, out: list[str]) -> None:
    mark = "FAIL" if p.regressed or p.failed else "PASS"
    out.append(f"### {mark}: `{_cell(p.spec)}` batch {p.batch_size}, {p.scenario}")
    out.append(f"candidate `{p.candidate_id}` vs baseline `{p.baseline_id}`"
               + (f" (Mann-Whitney U p = {p.p_value:.3g})" if p.p_value is not None else ""))
    out.append("")
    if p.failed:
        out.append(f"**{_cell(p.failed)}**")
    else:
        out.append("| metric | baseline | candidate | ratio [CI] | verdict |")
        out.append("|---|---:|---:|---:|---|")
        out += [_metric_row(m) for m in p.metrics]
    for note in p.notes:
        out.append(f"\n> note: {_cell(note)}")
    if p.environment:
        out.append("\nEnvironment differences: " + "; ".join(_cell(d) for d in p.environment))
    out.append("")


def check_markdown(outcome: CheckOutcome) -> str:
    """The summary ``check`` prints and ``--markdown`` writes."""
    regressed = [f"{'p99.9' if m.metric == 'p999' else m.metric} ({p.spec}, batch {p.batch_size})"
                 for p in outcome.pairs for m in p.metrics if m.regressed]
    failed = [p for p in outcome.pairs if p.failed]
    out = [f"## infermeter check: {'PASS' if outcome.passed else 'FAIL'}", ""]
    if outcome.passed:
        out.append(f"No metric regressed by more than {outcome.max_regression:.1%} "
                   f"({len(outcome.pairs)} pair(s) checked; metrics: {', '.join(outcome.metrics)}).")
    else:
        bits = []
        if regressed:
            bits.append(f"regressed beyond {outcome.max_regression:.1%}: {', '.join(regressed)}")
        if failed:
            bits.append(f"{len(failed)} candidate run(s) without samples")
        text = _cell("; ".join(bits))
        out.append(text[:1].upper() + text[1:] + ".")
    out.append("")
    for p in outcome.pairs:
        _pair(p, out)
    for note in outcome.unpaired:
        out.append(f"> not checked: {_cell(note)}")
    if outcome.unpaired:
        out.append("")
    out.append(
        f"<sub>Ratios are candidate / baseline with {outcome.confidence:.0%} bootstrap CIs; latencies in ms, "
        f"percentiles nearest-rank. Max regression {outcome.max_regression:.1%}, min effect "
        f"{outcome.min_effect:.1%}. Rule: {outcome.rule}. Pairing: {outcome.pairing}.</sub>"
    )
    return "\n".join(out) + "\n"


def comparison_markdown(table: ComparisonTable, columns: Sequence[str] = ("count", "p50", "p99", "throughput")) -> str:
    """A ``compare`` table as Markdown: value and ratio [CI] per metric, one row per run."""
    head = ["run", *table.axes]
    for c in columns:
        head += [c, f"{c} ratio"] if c in METRICS else [c]
    out = [f"Runs against baseline `{table.baseline}` (ratio = run / baseline, {table.confidence:.0%} CI; "
           f"min effect {table.min_effect:.0%})", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        cells = [f"`{r.id}`" + (" (baseline)" if r.baseline else "")] + [_cell(str(r.axes.get(a, "–"))) for a in table.axes]
        for c in columns:
            cell = r.cells.get(c)
            if c not in METRICS:
                cells.append(_cell(str({"count": r.count, "batch": r.batch_size}.get(c, getattr(r, c, "–")))))
            elif cell is None:
                cells += ["–", "–"]
            else:
                ratio = cell.label if cell.ratio is None else f"{_est(cell.ratio, 'ratio')} {cell.label}"
                cells += [_est(cell.value, cell.unit), _cell(ratio)]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
