"""VALID or INVALID, as MLPerf LoadGen judges a run, with reasons and what to change.

A run is VALID when every check holds (LoadGen ``results.cc``, ``LogSummary``):

* **min duration** — the run lasted at least ``min_duration_s``. Measured as
  LoadGen does: single-/multi-stream, the time of the last query issued
  (the measured phase); server, the *scheduled* time of the last query (so a
  slow model cannot make a short schedule look long); offline, the time of the
  last completion (the whole run).
* **min queries** — at least ``min_queries`` queries were issued.
* **early stopping** (not offline) — ``stats.early_stopping`` at confidence
  0.99 for the target percentile, ``stats.EARLY_STOPPING_RULE``: the binomial
  rule of ``loadgen/early_stopping.cc`` generalised to any percentile. With a
  latency bound (server), n >= h(t) + t where t queries exceeded the bound;
  without one (single-/multi-stream), n >= h(1) + 1, and the early-stopping
  estimate of the percentile is reported.
* **latency bound** (server, LoadGen's "performance constraints") — the
  target-percentile latency (nearest rank) is within the bound.

A failed or interrupted run is INVALID whatever the checks say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from ..result import Verdict
from ..stats import EARLY_STOPPING_CONFIDENCE, EARLY_STOPPING_RULE, early_stopping, percentile

__all__ = [
    "DEFAULT_MIN_DURATION_S", "DEFAULT_MIN_QUERIES", "DEFAULT_PERCENTILE", "DURATION_MEASURE", "Rules", "judge",
]

# LoadGen's default min duration is 10 s (600 s for submissions); 5 s suits a CLI.
DEFAULT_MIN_DURATION_S = 5.0
# LoadGen's TestSettings default min_query_count is 100; its offline scenario is one query.
DEFAULT_MIN_QUERIES = {"single-stream": 100, "multi-stream": 100, "server": 100, "offline": 1}
# The percentile each scenario is judged at (LoadGen: p90 single-stream, p99 multi-stream and server).
DEFAULT_PERCENTILE = {"single-stream": 90.0, "multi-stream": 99.0, "server": 99.0}
DURATION_MEASURE = {
    "single-stream": "measured phase (last query issued)",
    "multi-stream": "measured phase (last query issued)",
    "server": "scheduled time of the last query",
    "offline": "wall time of the whole run (last completion)",
}


@dataclass(frozen=True)
class Rules:
    """What a run of ``scenario`` must satisfy; ``percentile`` None skips early stopping (offline)."""

    scenario: str
    min_duration_s: float
    min_queries: int
    percentile: float | None
    bound_s: float | None = None
    confidence: float = EARLY_STOPPING_CONFIDENCE


def _ms(s: float) -> str:
    return f"{s * 1e3:.4g} ms"


def judge(
    rules: Rules,
    *,
    duration_s: float,
    queries: int,
    latencies_s: npt.ArrayLike,
    qps: float | None = None,
    longer_hint: str = "raise --max-time",
    failure: str | None = None,
    extra_reasons: Sequence[str] = (),
    extra_recommendations: Sequence[str] = (),
) -> Verdict:
    """Apply ``rules`` to a finished run. ``latencies_s`` are the per-query
    latencies (server: from the scheduled arrival); ``qps`` the offered rate
    (server), used to turn "more queries" into seconds; ``longer_hint`` says
    how this scenario is made to run longer; ``failure`` marks a failed run."""
    x = np.asarray(latencies_s, dtype=np.float64)
    reasons: list[str] = []
    recs: list[str] = []
    checks: dict[str, object] = {}

    if failure:
        reasons.append(f"the run did not finish: {failure}")
        recs.append("fix the failure and run again")

    met = duration_s >= rules.min_duration_s
    checks["min_duration"] = {
        "required_s": rules.min_duration_s, "actual_s": duration_s, "met": met,
        "measured_as": DURATION_MEASURE.get(rules.scenario, "run time"),
    }
    if not met:
        reasons.append(f"min duration not met: {duration_s:.3g} s < {rules.min_duration_s:g} s")
        recs.append(f"run longer: {longer_hint} (at least {rules.min_duration_s:g} s)")

    met = queries >= rules.min_queries
    checks["min_queries"] = {"required": rules.min_queries, "actual": queries, "met": met}
    if not met:
        reasons.append(f"min query count not met: {queries} < {rules.min_queries}")
        if rules.scenario == "server" and qps:
            need = rules.min_queries / qps
            recs.append(f"run longer: {longer_hint} (≈{need:.3g} s at {qps:g} QPS), or raise --qps")
        else:
            recs.append(f"run longer: {longer_hint}")

    p = rules.percentile
    bound_met = True
    if rules.bound_s is not None and p is not None:
        actual = percentile(x, p) if x.size else math.inf
        bound_met = actual <= rules.bound_s
        checks["latency_bound"] = {
            "percentile": p, "bound_s": rules.bound_s, "actual_s": actual if x.size else None, "met": bound_met,
        }
        if not bound_met:
            reasons.append(f"latency bound not met: p{p:g} {_ms(actual) if x.size else '–'} > {_ms(rules.bound_s)}")
            recs.insert(0, "lower --qps" + (f" (below {qps:g})" if qps else "") + " to bring latency within the bound")

    if p is not None and x.size:
        es = early_stopping(x, p, bound_s=rules.bound_s, confidence=rules.confidence)
        checks["early_stopping"] = {**es.model_dump(), "met": es.passed, "rule": EARLY_STOPPING_RULE}
        if not es.passed:
            more = es.needed - es.n
            if rules.bound_s is None:
                reasons.append(
                    f"early stopping not met: {es.n} queries, {es.needed} needed for a p{p:g} estimate "
                    f"at {rules.confidence:.0%} confidence"
                )
                recs.append(f"run longer: {longer_hint} ({more} more queries)")
            else:
                reasons.append(
                    f"early stopping not met: {es.over} of {es.n} queries over the {_ms(rules.bound_s)} bound; "
                    f"{es.needed} needed to show p{p:g} is within it at {rules.confidence:.0%} confidence"
                )
                if bound_met:  # else lowering the load comes first
                    if es.over / max(es.n, 1) > (1 - p / 100) * 0.5:  # the tail sits near the bound
                        recs.append("lower --qps: many queries are close to the bound")
                    when = f" (≈{more / qps:.3g} s more at {qps:g} QPS)" if qps else ""
                    recs.append(f"run longer: {more} more queries, all under the bound{when}; {longer_hint}")
    elif p is not None:
        checks["early_stopping"] = {"met": False, "n": 0, "rule": EARLY_STOPPING_RULE}
        reasons.append("early stopping not met: no query completed")

    reasons.extend(extra_reasons)
    recs.extend(extra_recommendations)
    return Verdict(valid=not reasons, reasons=reasons, recommendations=list(dict.fromkeys(recs)), checks=checks)
