"""``infermeter optimize``: candidates made from a model (export, int8, bf16, pruning,
distillation, compile, runtime settings), each measured and evaluated in its own
process, in one table with the Pareto front and the choice within an accuracy budget.

Exit codes: 0 when the run finished (whether or not a candidate met the budget:
the last lines say which), 1 when the baseline itself could not be measured,
2 for a bad option, eval file, metric or --out, 130 on Ctrl-C (finished
candidates stay in the store).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer

from ._app import app, handle_errors, open_store
from .progress import NoteBars
from .options import BatchOpt, DebugOpt, DeviceOpt, DimOpt, InputOpt, NoSaveOpt, QuietOpt, SeedOpt, StoreOpt, TagOpt, parse_tags


class OptimizeBars(NoteBars):
    """A bar over the candidates, its note saying what the current one is doing."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled)
        self._task: Any = None

    def update(self, event: str, payload: Mapping[str, Any]) -> None:
        p = self._progress
        if p is None:
            return
        if self._task is None:
            self._task = p.add_task("optimize", total=None, note="baseline")
        name = payload.get("name", "")
        if event == "candidate-start":
            p.update(self._task, description=f"optimize: {name}", note="starting")
        elif event == "candidate-progress":
            stage = payload.get("stage") or payload.get("phase") or payload.get("event") or ""
            p.update(self._task, note=f"{stage}")
        elif event == "candidate-done":
            total = payload.get("total")
            p.update(self._task, total=(total or 0) + 1 if total else None, completed=(payload.get("index") or 0) + 1,
                     note=str(payload.get("status", "")))


@app.command()
@handle_errors
def optimize(
    spec: Annotated[str, typer.Argument(help="model: FILE.onnx | FILE.pt | FILE.pt2 | module:attr | zoo:NAME")],
    eval_path: Annotated[Optional[Path], typer.Option("--eval", help=".npz of input rows (keyed by input name) and optional 'labels'")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="accuracy | top5 | f1 | mse | mae | module:function (needs labels)")] = None,
    train: Annotated[Optional[Path], typer.Option("--train", help=".npz of input rows to distil students on (labels optional)")] = None,
    max_drop: Annotated[str, typer.Option("--max-accuracy-drop", help="accuracy budget: 1% (points of accuracy/fidelity; relative for mse/mae) or 0.01")] = "1%",
    objective: Annotated[str, typer.Option("--objective", help="latency-p50 | latency-p99 | throughput")] = "latency-p50",
    batch: BatchOpt = "1",
    only: Annotated[Optional[str], typer.Option("--only", help="families: export,quantize,precision,prune,distill,compile,runtime")] = None,
    budget: Annotated[Optional[str], typer.Option("--budget", help="time for the whole run: 10m, 90s, 1h (finished candidates are kept)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="folder for the chosen model, recipe.yaml and report.json")] = None,
    recipe: Annotated[Optional[Path], typer.Option("--recipe", help="rebuild and measure only the candidate of this recipe.yaml")] = None,
    input: InputOpt = None,
    dim: DimOpt = None,
    device: DeviceOpt = "cpu",
    max_time: Annotated[float, typer.Option("--max-time", min=0.1, help="seconds of measurement per candidate at most")] = 10.0,
    distill_time: Annotated[float, typer.Option("--distill-time", min=0.5, help="seconds of training per distilled student")] = 30.0,
    candidate_timeout: Annotated[float, typer.Option("--candidate-timeout", min=1.0, help="seconds before a candidate that hangs is killed (a failed row)")] = 900.0,
    eval_rows: Annotated[int, typer.Option("--eval-rows", min=1, help="generated rows when there is no --eval (fidelity only)")] = 64,
    seed: SeedOpt = 0,
    tag: TagOpt = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write the report (candidates, speed-ups, verdicts) as JSON")] = None,
    store: StoreOpt = None,
    no_save: NoSaveOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make faster variants of a model and show what each costs in accuracy: speed-up
    with its CI, accuracy (or fidelity) and its change, size, memory, a verdict that
    says why a change did not help, and the Pareto front. Saves the best candidate
    within --max-accuracy-drop (and its recipe) to --out."""
    import sys

    from rich.console import Console

    from ..errors import OutputError
    from ..inputs import parse_batch_sizes, parse_dims
    from ..optimize.run import OptimizeOptions, optimize as run_optimize, parse_budget
    from ..report.optimize_table import render_optimize

    opts = OptimizeOptions(
        model=spec, eval=str(eval_path) if eval_path else None, metric=metric, train=str(train) if train else None,
        max_drop=max_drop, objective=objective, batch_sizes=parse_batch_sizes(batch), only=only, budget_s=parse_budget(budget),
        out=str(out) if out else None, inputs=list(input or []), dims=parse_dims(dim), device=device, max_time_s=max_time,
        distill_seconds=distill_time, eval_rows=eval_rows, candidate_timeout_s=candidate_timeout, recipe=str(recipe) if recipe else None, seed=seed,
        tags=parse_tags(tag),
    )
    st = None if no_save else open_store(store)
    with OptimizeBars(enabled=not quiet and sys.stderr.isatty()) as bars:
        report = run_optimize(opts, store=st, progress=bars.update)
    console = Console(highlight=False)
    render_optimize(report, console)
    if st is not None:
        console.print(f"saved {len(report.rows)} runs as invocation {report.session}; "
                      f"`infermeter report --invocation {report.session}` draws the Pareto chart")
    if json_path is not None:
        try:
            json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2))
        except OSError as exc:
            raise OutputError(f"cannot write {json_path}: {exc.strerror or exc}; choose a writable path") from None
