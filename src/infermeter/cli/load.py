"""``infermeter load URL``: latency under load, measured from the intended send time.

Open loop (``--rate`` with an arrival process, or ``--trace``) or closed loop
(``--concurrency``); ``--find-max --slo 'p99<50ms'`` searches the highest rate
meeting the SLO; ``--rates 100,200,400`` runs one step per rate (the
latency-vs-offered-load curve). Every run is bounded by ``--duration`` and ``--max-requests``.
Exit codes: 0 when the run finished (errors are counted, not fatal), 2 for a bad
option or an unreachable URL, 130 on Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Mapping, Optional

import typer

from ._app import app, handle_errors, open_store
from .progress import NoteBars
from .options import DebugOpt, DimOpt, InputOpt, JsonOpt, NoSaveOpt, QuietOpt, SeedOpt, StoreOpt, TagOpt, parse_tags


class LoadBars(NoteBars):
    """A bar over the run's seconds (one per find-max step), its note the requests sent and failed."""

    def __init__(self, enabled: bool) -> None:
        super().__init__(enabled)
        self._task: Any = None

    def update(self, phase: str, info: Mapping[str, Any]) -> None:
        p = self._progress
        if p is None:
            return
        if phase == "step" or self._task is None:
            label = f"load step {info.get('step')} at {info.get('rate', 0):,.0f}/s" if phase == "step" else "load"
            if self._task is not None:
                p.remove_task(self._task)
            self._task = p.add_task(label, total=None, note="connecting")
        if phase == "run":
            elapsed = max(0.0, float(info.get("elapsed_s") or 0.0))
            p.update(self._task, total=float(info.get("duration_s") or 0.0) or None, completed=elapsed,
                     note=f"sent {int(info.get('sent') or 0):,}, errors {int(info.get('errors') or 0):,}")


@app.command()
@handle_errors
def load(
    url: Annotated[str, typer.Argument(help="the server's base URL, e.g. http://127.0.0.1:8000")],
    protocol: Annotated[str, typer.Option("--protocol", help="oip | oip-binary | openai-completions | openai-chat | http-json")] = "oip",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="model name (OIP, OpenAI)")] = None,
    rate: Annotated[Optional[float], typer.Option("--rate", "-r", min=0.0, help="open loop: requests per second")] = None,
    arrival: Annotated[str, typer.Option("--arrival", help="open loop: constant | poisson | gamma:K")] = "poisson",
    trace: Annotated[Optional[Path], typer.Option("--trace", help="open loop: file of send times (s), one per line")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", min=1, help="closed loop: requests in flight")] = None,
    think_ms: Annotated[float, typer.Option("--think-ms", min=0.0, help="closed loop: pause between a response and the next request")] = 0.0,
    duration: Annotated[float, typer.Option("--duration", "-d", min=0.1, help="seconds the run lasts at most")] = 10.0,
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="requests at most")] = 1_000_000,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="seconds before a request counts as timed out")] = 30.0,
    connect_timeout: Annotated[float, typer.Option("--connect-timeout", min=0.001, help="seconds to connect")] = 3.0,
    processes: Annotated[int, typer.Option("--processes", "-P", min=1, help="generator processes, each with its own event loop")] = 1,
    connections: Annotated[Optional[int], typer.Option("--connections", min=1, help="cap on open connections (default: one per request in flight)")] = None,
    client: Annotated[str, typer.Option("--client", help="HTTP client: auto (lean for plain http://, aiohttp for https and streams) | lean | aiohttp")] = "auto",
    body: Annotated[Optional[str], typer.Option("--body", help="http-json: request template (JSON, or @FILE); {{payload}} is replaced")] = None,
    payload: Annotated[Optional[List[str]], typer.Option("--payload", help="http-json: payload file(s), cycled (repeatable)")] = None,
    header: Annotated[Optional[List[str]], typer.Option("--header", "-H", help="extra header 'Name: value' (repeatable)")] = None,
    input: InputOpt = None,
    dim: DimOpt = None,
    batch: Annotated[int, typer.Option("--batch", "-b", min=1, help="OIP: rows per request")] = 1,
    output: Annotated[Optional[List[str]], typer.Option("--output", help="OIP: ask only for this output (repeatable; default: all)")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="OpenAI: the prompt")] = "Hello",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="OpenAI: tokens to generate")] = 16,
    repeat: Annotated[float, typer.Option("--repeat", min=0.0, max=0.999999, help="OIP: share of requests repeating an earlier body (a cache's hit ratio)")] = 0.0,
    find_max: Annotated[bool, typer.Option("--find-max", help="search the highest open-loop rate meeting --slo")] = False,
    rates: Annotated[Optional[str], typer.Option("--rates", help="latency-vs-load curve: one open-loop run per rate, e.g. 100,200,400")] = None,
    slo: Annotated[Optional[str], typer.Option("--slo", help="service-level objective, e.g. 'p99<50ms'")] = None,
    max_trials: Annotated[int, typer.Option("--max-trials", min=1, help="find-max/--rates: runs per rate while latency keeps rising")] = 2,
    seed: SeedOpt = 0,
    tag: TagOpt = None,
    json_path: JsonOpt = None,
    store: StoreOpt = None,
    no_save: NoSaveOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Drive URL with requests and report latency from the intended send time (no coordinated
    omission), service time from the actual send, schedule lag, errors by kind and goodput."""
    from rich.console import Console

    from ..errors import OutputError, UsageError
    from ..inputs import parse_dims
    from ..load.config import LoadConfig
    from ..load.generator import run_load, to_result
    from ..report.load_table import render_load
    from ..result import results_to_json

    rate_list: list[float] = []
    if rates is not None:
        try:
            rate_list = [float(x) for x in rates.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"cannot read --rates '{rates}'; give requests/s separated by commas, e.g. 100,200,400") from None
        if find_max or rate is not None or trace is not None or concurrency is not None:
            raise UsageError("--rates runs its own open-loop steps; drop --rate, --trace, --concurrency and --find-max")
        rate = rate_list[0] if rate_list else None
    modes = sum(x is not None for x in (rate, concurrency)) + (trace is not None)
    if modes > 1:
        raise UsageError("give one of --rate (open loop), --trace (open loop) or --concurrency (closed loop)")
    if modes == 0 and not find_max:
        raise UsageError("give --rate R (open loop), --trace FILE or --concurrency N (closed loop), or --find-max --slo ...")
    if find_max and slo is None:
        raise UsageError("--find-max needs --slo, e.g. --slo 'p99<50ms'")
    headers = {}
    for h in header or []:
        key, sep, value = h.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--header '{h}' is not 'Name: value'")
        headers[key.strip()] = value.strip()
    if find_max and rate is None:
        rate = 10.0  # the search's first step
    cfg = LoadConfig(
        url=url, protocol=protocol, model=model, mode="closed" if concurrency is not None else "open", rate=rate, arrival=arrival,
        trace=str(trace) if trace else None, concurrency=concurrency, think_s=think_ms / 1e3, duration_s=duration,
        max_requests=max_requests, timeout_s=timeout, connect_timeout_s=connect_timeout, processes=processes, seed=seed,
        body=body, payload_files=list(payload or []), headers=headers, inputs=list(input or []), dims=parse_dims(dim),
        batch=batch, prompt=prompt, max_tokens=max_tokens, repeat=repeat, client=client, outputs=list(output or []), connections=connections,
    )
    import sys

    console = Console(highlight=False)
    tags = parse_tags(tag)
    with LoadBars(enabled=not quiet and sys.stderr.isatty()) as bars:
        if find_max:
            from ..load.search import find_max as search

            outcomes = search(cfg, slo, start_rate=rate or 10.0, step_duration_s=min(duration, 10.0),  # type: ignore[arg-type]
                              max_trials=max_trials, progress=bars.update)
        elif rate_list:
            from ..load.search import rate_curve

            outcomes = rate_curve(cfg, rate_list, slo=slo, step_duration_s=duration, max_trials=max_trials,
                                  progress=bars.update)
        else:
            outcomes = [run_load(cfg, progress=bars.update)]
    results = [to_result(o) for o in outcomes]
    for r in results:
        r.tags.update(tags)
        r.invocation = results[0].invocation
    render_load(results, console, slo=slo)
    if not no_save:
        st = open_store(store)
        ids = [st.save(r) for r in results]
        console.print(f"saved {len(ids)} run(s) as invocation {results[0].invocation}")
    if json_path is not None:
        try:
            json_path.write_text(results_to_json(results))
        except OSError as exc:
            raise OutputError(f"cannot write {json_path}: {exc.strerror or exc}; choose a writable path") from None
