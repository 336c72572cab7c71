"""A load run as the one object every output reads: :func:`to_result`.

The headline latency is the *corrected* one: from the intended send time to
the last byte, of the successful requests, through ``stats.describe_latency``
(nearest-rank percentiles with CIs, raw samples kept). Everything else goes in
``scenario_details`` (seconds; secondary figures as ``stats.brief_summary``):
the uncorrected (service) time from the actual send, the schedule lag, time to
first byte, new-connection time, errors by kind, the generator's CPU, token
timings for streams, a per-second series for plots, and the first
``KEEP_RECORDS`` per-request records (intended, sent, done, ttfb, status, kind)
so any other figure can be recomputed.

A run too big to keep per-request records (``outcome.RAW_LIMIT``) is summarised
from the merged HdrHistograms instead: the latency samples are the histogram's
values (3 significant digits) and are not stored.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..result import Estimate, Headline, LatencyStats, ModelInfo, Phases, Result, Throughput, TimerInfo
from ..env import capture_env
from ..stats import brief_summary, describe_latency, percentile
from ..store import new_id
from .protocols import KINDS, OK

if TYPE_CHECKING:
    from .outcome import LoadOutcome

__all__ = ["to_result", "scenario_name", "KEEP_RECORDS"]

KEEP_RECORDS = 200_000  # per-request records stored with the result (as the server scenario keeps its queries)


def scenario_name(mode: str) -> str:
    return "load-open" if mode == "open" else "load-closed"


def _brief(x: np.ndarray) -> dict[str, float | int] | None:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return brief_summary(x) if x.size else None


def _hist_values(h: Any) -> np.ndarray:
    """Every recorded value of an HdrHistogram, in seconds (each bucket's highest equivalent value)."""
    vals, counts = [], []
    for it in h.get_recorded_iterator():
        vals.append(it.value_iterated_to)
        counts.append(it.count_at_value_iterated_to)
    return np.repeat(np.asarray(vals, dtype=np.float64) * 1e-6, np.asarray(counts, dtype=np.int64))


def _hist_brief(h: Any) -> dict[str, float | int] | None:
    return _brief(_hist_values(h)) if h.get_total_count() else None


def _pick(d: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return {k: d[k] for k in keys} if d else None


def _over_time(o: LoadOutcome) -> dict[str, Any]:
    count, errors = o.per_second.get("count", []), o.per_second.get("errors", [])
    series: dict[str, Any] = {"unit": "s", "bucket_s": 1.0, "by": "intended send time",
                              "t": list(range(len(count))), "count": count, "errors": errors}
    r = o.records
    if r is not None:
        ok = r["error_kind"] == OK
        lat = r["done_s"] - r["intended_s"]
        edges = np.searchsorted(r["intended_s"], np.arange(len(count) + 1))  # records are in intended order
        p50: list[float | None] = []
        p99: list[float | None] = []
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist()):
            x = lat[a:b][ok[a:b]]
            p50.append(percentile(x, 50) if x.size else None)
            p99.append(percentile(x, 99) if x.size else None)
        series["p50"], series["p99"] = p50, p99
    return series


def _details(o: LoadOutcome) -> dict[str, Any]:
    cfg, r = o.config, o.records
    d: dict[str, Any] = {
        "mode": o.mode, "protocol": cfg.protocol, "endpoint": o.target.url, "model": o.target.model,
        "processes": o.processes, "offered_rate": o.offered_rate, "scheduled_rate": o.scheduled_rate,
        "achieved_rate": o.achieved_rate,
        "goodput": o.goodput, "requests": o.requests, "succeeded": o.succeeded, "scheduled": o.scheduled,
        "duration_s": o.duration_s, "stop_reason": o.stop_reason,
        "latency_from": "intended send time (coordinated omission corrected)" if o.mode == "open"
        else "send time (closed loop: each user waits for its answer, so there is no schedule to correct against)",
        "errors": {k: o.counts[k] for k in KINDS if k != "ok"},
        "generator_cpu": o.generator_cpu, "pacing": o.pacing,
        "arrival": cfg.arrival if o.mode == "open" and cfg.trace is None else None,
        "trace": cfg.trace, "concurrency": cfg.concurrency, "think_s": cfg.think_s, "connections": cfg.connections,
        "rates": "achieved: requests finished (any outcome) per second; goodput: successful requests per second; "
                 "both LoadGen's (completed - 1) / last completion, times from t0; scheduled: (sent - 1) / last "
                 "intended send, the rate the seeded schedule realised (offered is the rate asked for)",
    }
    if o.target.inputs:
        d["inputs"] = o.target.inputs
    if o.target.order is not None:
        d["repeat"] = _repeat(o)
    if r is not None:
        ok = r["error_kind"] == OK
        service = _brief(r["done_s"][ok] - r["sent_s"][ok])
        d["schedule_lag"] = _brief(r["sent_s"] - r["wait_s"] - r["intended_s"])
        if cfg.connections is not None:
            d["connection_wait"] = _pick(_brief(r["wait_s"]), ("count", "mean", "p50", "p99", "max"))
        d["ttfb"] = _brief(r["ttfb_s"])
        d["connect"] = _brief(r["connect_s"])
        d["new_connections"] = int(np.isfinite(r["connect_s"]).sum())
    else:
        service = _hist_brief(o.service_histogram)
        d["schedule_lag"] = _hist_brief(o.lag_histogram)
        d["ttfb"] = _hist_brief(o.ttfb_histogram)
        d["connect"] = None
    d["service"] = service
    d["uncorrected"] = _pick(service, ("p50", "p90", "p99", "max"))
    d["schedule_lag"] = _pick(d["schedule_lag"], ("count", "mean", "p50", "p99", "max"))
    if o.target.streaming:
        d.update(_tokens(o))
    d["over_time"] = _over_time(o)
    if r is not None:
        keep = min(len(r["id"]), KEEP_RECORDS)
        d["records"] = {
            "unit": "s from t0 (intended, sent, done); s from sent (ttfb); s (wait for a connection)", "kept": keep,
            "of": len(r["id"]), "kinds": list(KINDS),
            **{k: np.round(r[k][:keep], 9).tolist() for k in ("intended_s", "sent_s", "done_s", "wait_s")},
            "ttfb_s": [None if not np.isfinite(x) else round(float(x), 9) for x in r["ttfb_s"][:keep]],
            "status": r["status"][:keep].tolist(), "error_kind": r["error_kind"][:keep].tolist(),
        }
    if o.search is not None:
        d["search"] = o.search
    return d


def _repeat(o: LoadOutcome) -> dict[str, Any]:
    """What ``--repeat`` asked for and what the sent requests realised."""
    order = np.asarray(o.target.order)
    fresh = np.empty(order.size, dtype=bool)
    if order.size:
        fresh[0] = True
        fresh[1:] = order[1:] > np.maximum.accumulate(order)[:-1]
    out: dict[str, Any] = {"asked": o.config.repeat, "distinct_bodies": int(order.max()) + 1 if order.size else 0,
                           "definition": "share of requests whose body, byte for byte, an earlier request sent"}
    if o.records is not None and o.records["id"].size:
        ids = o.records["id"]
        out["realised"] = float(1.0 - fresh[ids[(ids >= 0) & (ids < order.size)]].mean())
        out["requests"] = int(ids.size)
    return out


def _tokens(o: LoadOutcome) -> dict[str, Any]:
    r = o.records
    out: dict[str, Any] = {"tokens": o.tokens, "tokens_per_s": {
        "aggregate": o.tokens / o.duration_s if o.duration_s > 0 else None,
        "definition": "aggregate: tokens of all requests / run duration; per_request: (tokens - 1) / (last - first token)",
    }, "token_definition": "one SSE chunk with non-empty content"}
    if r is None:
        return out
    ok = r["error_kind"] == OK
    out["ttft"] = _brief(r["ttft_s"][ok])
    out["ttft_corrected"] = _brief((r["sent_s"] + r["ttft_s"] - r["intended_s"])[ok])
    out["itl"] = _brief(o.itl_s) if o.itl_s is not None else None
    multi = ok & (r["tokens"] >= 2) & (r["decode_s"] > 0)
    out["tokens_per_s"]["per_request"] = _brief((r["tokens"][multi] - 1) / r["decode_s"][multi])
    return out


def _latency(o: LoadOutcome) -> LatencyStats | None:
    r = o.records
    if r is not None:
        ok = r["error_kind"] == OK
        return describe_latency(r["done_s"][ok] - r["intended_s"][ok]) if ok.any() else None
    if not o.histogram.get_total_count():
        return None
    return describe_latency(_hist_values(o.histogram), keep_samples=False)


_SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie", "api-key", "x-api-key")


def _config(cfg: Any) -> dict[str, Any]:
    """The settings as asked for, with credentials in headers blanked (results are stored and shared)."""
    c = asdict(cfg)
    c["headers"] = {k: ("<redacted>" if k.lower() in _SECRET_HEADERS or "token" in k.lower() else v)
                    for k, v in c["headers"].items()}
    return c


def to_result(outcome: LoadOutcome) -> Result:
    """The :class:`~infermeter.result.Result` of a load run (scenario ``load-open`` or ``load-closed``)."""
    o, cfg = outcome, outcome.config
    rid = new_id()
    latency = _latency(o)
    rows = cfg.batch if cfg.protocol.startswith("oip") else 1
    throughput = Throughput(
        samples_per_s=Estimate(value=o.goodput * rows),
        method="goodput (successful requests per second, LoadGen's (completed - 1) / last completion)"
        + (f" x {rows} rows per request" if rows > 1 else ""),
    )
    headline = None
    if latency is not None:
        p99 = latency.p99
        headline = Headline(metric="p99 latency" + (" (from intended send)" if o.mode == "open" else ""),
                            value=p99.value, unit="s", ci_low=p99.ci_low, ci_high=p99.ci_high)
    error = None
    if not o.succeeded:
        kinds = ", ".join(f"{k} {v}" for k, v in o.errors.items()) or "none sent"
        error = f"no request succeeded ({kinds}); check the server's log and the request (--protocol, --model, --body)"
    return Result(
        id=rid, invocation=rid, status="ok" if o.succeeded else "failed", error=error,
        model=ModelInfo(spec=cfg.url, backend="http", inputs=list(o.target.inputs),
                        details={"protocol": cfg.protocol, "model": o.target.model, "endpoint": o.target.url}),
        batch_size=cfg.batch, scenario=scenario_name(o.mode), config=_config(cfg),
        phases=Phases(warmup_s=cfg.warmup_s, measure_s=o.duration_s),
        latency=latency, throughput=throughput if o.succeeded else None,
        timer=TimerInfo(clock="host", gc_disabled=False),
        stop_reason=o.stop_reason, warnings=list(o.warnings), headline=headline,
        scenario_details=_details(o), env=capture_env(),  # the generator's machine, as every result records its own
    )
