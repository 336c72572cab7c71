"""``infermeter sweep``: a grid of points, each in fresh processes; resumable.

Exit codes: 0 when every point run now is ok (points done earlier are skipped),
1 when any point failed (each is saved with its reason; the last line says how
many), 2 for a bad sweep file or option, 130 on Ctrl-C (finished points kept).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, List, Mapping, Optional

import typer

from ._app import app, handle_errors, open_store
from .progress import NoteBars
from .options import DebugOpt, DimOpt, InputOpt, JsonOpt, QuietOpt, StoreOpt, TagOpt, parse_fraction, parse_tags


class SweepBars(NoteBars):
    """One bar over the points and, beneath it, one for each point running now (from its worker's progress)."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled)
        self._overall: Any = None
        self._bars: dict[Any, Any] = {}

    def update(self, event: str, payload: Mapping[str, Any]) -> None:
        p = self._progress
        if p is None:
            return
        if event == "sweep-start":
            skipped = payload["skipped"]
            note = f"{skipped} done earlier" if skipped else ""
            self._overall = p.add_task(f"sweep {payload['sweep_id']}", total=payload["todo"], note=note)
            return
        key = (payload["point"].index, payload.get("repeat")) if "point" in payload else None
        if event == "task-start":
            self._bars[key] = p.add_task(f"  {payload['label']}", total=100, note="starting")
        elif event == "task-progress" and key in self._bars:
            fraction = payload.get("fraction")
            note = f"{payload.get('phase', '')} {payload.get('n', '')}".strip() if "n" in payload else str(payload.get("event", ""))
            if fraction is not None:
                p.update(self._bars[key], completed=float(fraction) * 100, note=note)
            else:
                p.update(self._bars[key], note=note)
        elif event == "task-done" and key in self._bars:
            p.remove_task(self._bars.pop(key))
        elif event == "point-done" and self._overall is not None:
            p.update(self._overall, completed=payload["done"])


def _value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _settings(items: Optional[List[str]]) -> dict[str, Any]:
    from ..errors import UsageError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UsageError(f"cannot read --set '{item}'; expected NAME=VALUE with a bench() keyword, e.g. --set warmup=0")
        out[key.strip()] = _value(value.strip())
    return out


def render_sweep(outcome: Any, console: Any) -> None:
    """One row per point, in grid order: axis values, status, p50/p99 (and the headline), how it stopped."""
    from rich.table import Table

    from ..report.console import ms

    names = list(outcome.config.values)
    rows: dict[int, tuple[str, Any]] = {p.index: ("earlier", outcome.previous[p.key]) for p in outcome.skipped}
    rows.update({r.sweep.index: ("now", r) for r in outcome.results if r.sweep is not None})
    shown = [r for _, r in rows.values()]
    with_headline = any(r.headline is not None for r in shown)
    with_spread = any(r.scenario_details.get("process_spread") for r in shown)
    table = Table(title=f"sweep {outcome.sweep_id}", title_justify="left")
    columns = ["#", *names, "status", "p50", "p99"] + (["headline"] if with_headline else []) + (
        ["process spread"] if with_spread else []) + ["stopped by / error", "run"]
    for col in columns:
        table.add_column(col, justify="right" if col in ("#", "p50", "p99", "headline") else "left",
                         no_wrap=col in ("#", "p50", "p99", "run", "status"), overflow="fold")
    by_index = {p.index: p for p in outcome.points}
    for index in sorted(rows):
        when, r = rows[index]
        lat, head = r.latency, r.headline
        cells = [str(index), *[str(by_index[index].axes.get(n)) for n in names],
                 r.status + (" (earlier)" if when == "earlier" else ""),
                 ms(lat.p50.value) if lat else "–", ms(lat.p99.value) if lat else "–"]
        if with_headline:
            cells.append("–" if head is None else f"{head.metric} " + (ms(head.value) if head.unit == "s" else f"{head.value:.4g} {head.unit}"))
        if with_spread:
            sp = r.scenario_details.get("process_spread") or {}
            cells.append(f"medians range {sp['range_rel'] * 100:.2f}% over {sp['processes']}" + (" (significant)" if sp.get("significant") else "")
                         if sp else "–")
        cells += [(r.error if r.status != "ok" else r.stop_reason) or "–", r.id]
        table.add_row(*cells)
    console.print(table)
    console.print(
        f"sweep {outcome.sweep_id}: {len(outcome.results)} point(s) run, {len(outcome.failed)} failed, "
        f"{len(outcome.skipped)} done earlier (skipped); {outcome.launches} worker process(es), {outcome.wall_s:.1f} s",
        markup=False,
    )


@app.command()
@handle_errors
def sweep(
    target: Annotated[str, typer.Argument(help="sweep file (YAML); with --grid: the model spec, or a sweep file whose axes --grid extends")],
    grid: Annotated[Optional[str], typer.Option("--grid", help="axes: 'batch=1,8;threads=1,2;dims.seq=64..512:log2'")] = None,
    input: InputOpt = None,
    dim: DimOpt = None,
    set_: Annotated[Optional[List[str]], typer.Option("--set", help="any bench() keyword for every point: NAME=VALUE (repeatable)")] = None,
    max_time: Annotated[Optional[float], typer.Option("--max-time", min=0.001, help="seconds of measurement per point at most")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="stop a point when its median's 95% CI is within this: 1% or 0.01")] = None,
    sweep_id: Annotated[Optional[str], typer.Option("--id", help="sweep id, the resume key (default: from the config's hash)")] = None,
    processes: Annotated[Optional[int], typer.Option("--processes", min=1, help="run each point in N fresh processes and merge them")] = None,
    parallel: Annotated[Optional[int], typer.Option("--parallel", min=1, help="local executor: points at once (>1 means they disturb each other; recorded)")] = None,
    executor: Annotated[Optional[str], typer.Option("--executor", help="local (default) or ray")] = None,
    point_timeout: Annotated[Optional[float], typer.Option("--point-timeout", min=0.1, help="seconds before a point's process is killed and recorded as failed (default 600)")] = None,
    tag: TagOpt = None,
    json_path: JsonOpt = None,
    store: StoreOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run a sweep: every point in fresh processes, saved as it finishes; run again to resume."""
    from rich.console import Console

    from ..inputs import parse_dims
    from ..report.export import check_writable, to_json, write_text
    from ..sweep.axes import parse_grid
    from ..sweep.config import config_from_dict, load_config
    from ..sweep.run import SweepInterrupted, check_outcome, run_sweep

    settings = _settings(set_)
    if max_time is not None:
        settings["max_time_s"] = max_time
    if precision is not None:
        settings["precision"] = parse_fraction(precision, "--precision")
    dims = parse_dims(dim)
    if dims:
        settings["dims"] = dims
    overrides: dict[str, Any] = {
        "id": sweep_id, "processes": processes, "parallel": parallel, "executor": executor,
        "point_timeout_s": point_timeout, "inputs": list(input) if input else None,
        "settings": settings or None, "tags": parse_tags(tag) or None,
    }
    axes = parse_grid(grid) if grid is not None else None
    if axes is None or target.lower().endswith((".yaml", ".yml")):
        cfg = load_config(target, overrides=overrides, grid=axes)
    else:
        cfg = config_from_dict({"model": target}, source="command line", overrides=overrides, grid=axes)
    if json_path is not None:
        check_writable(json_path)
    console = Console(highlight=False)
    st = open_store(store)
    interrupted: Optional[SweepInterrupted] = None
    try:
        with SweepBars(enabled=not quiet and sys.stderr.isatty()) as bars:
            try:
                outcome = run_sweep(cfg, store=st, progress=bars.update)
            except SweepInterrupted as exc:
                interrupted, outcome = exc, exc.outcome
    finally:
        st.close()
    render_sweep(outcome, console)
    if json_path is not None and outcome.results:
        write_text(json_path, to_json(outcome.results))
        console.print(f"wrote {len(outcome.results)} result(s) to {json_path}", markup=False)
    if interrupted is not None:
        raise interrupted
    check_outcome(outcome)
