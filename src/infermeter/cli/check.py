"""``infermeter check``: the regression gate for CI pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import app, handle_errors, open_store
from .options import DebugOpt, StoreOpt, parse_fraction


def _threshold(text: str, flag: str) -> float:
    """Like parse_fraction, but 0% is allowed: any significant regression fails."""
    t = str(text).strip().rstrip("%").strip()
    try:
        if float(t) == 0:
            return 0.0
    except ValueError:
        pass
    return parse_fraction(text, flag)


@app.command()
@handle_errors
def check(
    baseline: Annotated[str, typer.Option("--baseline", help="baseline: run id or NAME=VALUE tag (newest ok run carrying it)")],
    candidate: Annotated[
        Optional[str], typer.Option("--candidate", help="candidate: run id or NAME=VALUE tag (default: newest ok run not the baseline)")
    ] = None,
    max_regression: Annotated[str, typer.Option("--max-regression", help="largest tolerated slow-down: 5% or 0.05")] = "5%",
    metrics: Annotated[str, typer.Option("--metrics", help="comma-separated: p50,p90,p95,p99,p999,mean,throughput (default p50: tails of two runs on a shared machine vary more than one run's CI shows; add p99 on quiet runners)")] = "p50",
    min_effect: Annotated[str, typer.Option("--min-effect", help="smallest ratio change called a difference")] = "2%",
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="also write the Markdown summary here (for a pull request)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the outcome as JSON instead of Markdown")] = False,
    store: StoreOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Fail (exit 1) when a metric regressed significantly beyond --max-regression; exit 0 otherwise.

    A metric regressed when the difference is significant (bootstrap CI of the candidate/baseline
    ratio excludes 1, the change is at least --min-effect, and for p50 a Mann-Whitney U test
    rejects too) AND the ratio is worse than 1 + max regression (for throughput, lower is worse).
    Runs pair by (spec, batch size, scenario): a tag picks the newest ok run carrying it for each;
    without --candidate each baseline meets the newest other ok run of its key. A candidate run
    without samples fails the check. Prints a Markdown summary either way; usage errors exit 2.
    """
    from ..compare import check_regression, select_check_runs
    from ..report.export import check_writable, write_text
    from ..report.markdown import check_markdown

    threshold = _threshold(max_regression, "--max-regression")
    effect = parse_fraction(min_effect, "--min-effect")
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if markdown is not None:
        check_writable(markdown)
    with open_store(store) as st:
        bases, cands = select_check_runs(st, baseline, candidate)
    outcome = check_regression(bases, cands, threshold, names, effect)
    text = check_markdown(outcome)
    if markdown is not None:
        write_text(markdown, text)
    typer.echo(outcome.model_dump_json(indent=2) if json_out else text.rstrip("\n"))
    if not outcome.passed:
        raise typer.Exit(1)
