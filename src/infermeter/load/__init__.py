"""Load generation against a remote inference endpoint: ``infermeter load URL``.

``run_load(LoadConfig(...))`` drives the endpoint in an open loop (requests at
scheduled times; latency from the intended send time, so nothing hides behind
coordinated omission) or a closed loop (N users), over the Open Inference
Protocol (JSON or binary tensors), OpenAI-compatible streaming completions, or
any JSON endpoint, from one or more processes; ``to_result`` turns what it
measured into a :class:`~infermeter.result.Result`; ``find_max`` searches the
highest rate that meets a latency objective, ``rate_curve`` runs one step per
offered rate (the latency-vs-load curve).

Modules: ``config`` (LoadConfig), ``arrivals`` (schedules, traces), ``protocols``
(bodies, response checks), ``pacing`` (sub-millisecond send times),
``engine`` (one process's event loop), ``outcome`` (LoadOutcome, merging),
``generator`` (run_load), ``summary`` (to_result), ``search`` (find_max, rate_curve).
Nothing is imported from aiohttp or uvloop until a run starts.
"""

from __future__ import annotations

from .config import LoadConfig
from .generator import run_load, to_result
from .outcome import LoadOutcome
from .search import find_max, max_passing_rate, parse_slo, rate_curve

__all__ = ["LoadConfig", "LoadOutcome", "run_load", "to_result", "find_max", "rate_curve", "parse_slo",
           "max_passing_rate"]
