"""What a load run measured: :class:`LoadOutcome`, merged from the generator processes.

Each process returns HdrHistograms (µs, 3 significant digits; they merge
exactly, which is what lets many processes be combined) and, when the run is
small enough (``RAW_LIMIT`` requests), its raw per-request columns. Exact
statistics come from the raw columns through ``infermeter.stats``; the
histograms are the fallback for runs too big to ship every request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..stats import completed_per_second, percentile
from .config import LoadConfig
from .engine import hist_new
from .protocols import KINDS, OK, Target

__all__ = ["RAW_LIMIT", "LoadOutcome", "merge_parts"]

RAW_LIMIT = 2_000_000


@dataclass
class LoadOutcome:
    """One load run. ``records`` holds the per-request numpy columns (see ``engine``), sorted
    by intended send time, plus ``process``; None when the run had more than ``RAW_LIMIT``
    requests (the histograms still hold every one). Rates are per second; times seconds."""

    config: LoadConfig
    records: dict[str, np.ndarray] | None
    histogram: Any  # corrected latency (intended send -> done) of successful requests, µs
    service_histogram: Any  # actual send -> done, successful requests, µs
    lag_histogram: Any  # actual send - intended send, every request, µs
    ttfb_histogram: Any  # time to first byte, every response, µs
    counts: dict[str, int]  # every kind in protocols.KINDS, "ok" included
    requests: int
    succeeded: int
    achieved_rate: float  # requests finished (any outcome) per second
    offered_rate: float | None  # open loop: the rate asked for (trace: its mean); closed: None
    scheduled_rate: float | None  # open loop: the rate the realised schedule sent, (n - 1) / last intended send
    goodput: float  # successful requests per second
    duration_s: float  # t0 to the last completion
    generator_cpu: list[dict[str, Any]]
    warnings: list[str]
    target: Target
    mode: str
    processes: int
    itl_s: np.ndarray | None = None
    tokens: int = 0
    per_second: dict[str, list[int]] = field(default_factory=dict)
    pacing: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = "duration"
    interrupted: bool = False
    scheduled: int | None = None  # open loop: requests in the schedule (after warm-up)
    search: dict[str, Any] | None = None  # find_max: this step's verdict

    @property
    def errors(self) -> dict[str, int]:
        return {k: v for k, v in self.counts.items() if k != "ok" and v}

    @property
    def error_rate(self) -> float:
        return (self.requests - self.succeeded) / self.requests if self.requests else 0.0

    def latency_percentile(self, p: float, *, corrected: bool = True) -> float | None:
        """Nearest-rank p-th percentile (s) of successful requests' latency, from the raw records
        when kept, else the histogram; None when nothing succeeded."""
        if self.records is not None:
            r = self.records
            ok = r["error_kind"] == OK
            if not ok.any():
                return None
            start = r["intended_s"] if corrected else r["sent_s"]
            return percentile(r["done_s"][ok] - start[ok], p)
        h = self.histogram if corrected else self.service_histogram
        return h.get_value_at_percentile(p) * 1e-6 if h.get_total_count() else None


def _concat(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {}
    for part in parts:
        c = part["columns"]
        for k, v in c.items():
            cols.setdefault(k, []).append(v)
        cols.setdefault("process", []).append(np.full(len(c["id"]), part["process"], dtype=np.int16))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.lexsort((out["id"], out["intended_s"]))
    return {k: v[order] for k, v in out.items()}


def _sum_lists(lists: list[list[int]]) -> list[int]:
    m = max((len(x) for x in lists), default=0)
    total = np.zeros(m, dtype=np.int64)
    for x in lists:
        total[: len(x)] += np.asarray(x, dtype=np.int64)
    return total.tolist()


def merge_parts(cfg: LoadConfig, target: Target, parts: list[dict[str, Any]], *, offered: float | None,
                scheduled: int | None, warnings: list[str]) -> LoadOutcome:
    """Combine the processes' returns into one outcome (histograms merged, columns concatenated)."""
    hists = {k: hist_new() for k in ("corrected", "service", "lag", "ttfb")}
    for part in parts:
        for k, h in hists.items():
            h.decode_and_add(part["hist"][k])
    counts = np.sum([p["counts"] for p in parts], axis=0).tolist() if parts else [0] * len(KINDS)
    n = int(sum(p["n"] for p in parts))
    n_ok = int(sum(p["n_ok"] for p in parts))
    raw = all(p["columns"] is not None for p in parts) and bool(parts)
    records = _concat(parts) if raw else None
    last_done = max((p["last_done_s"] for p in parts), default=0.0)
    if records is not None:
        ok = records["error_kind"] == OK
        achieved = completed_per_second(records["done_s"]) if n >= 2 else 0.0
        goodput = completed_per_second(records["done_s"][ok]) if n_ok >= 2 else 0.0
        sched = completed_per_second(records["intended_s"]) if n >= 2 and records["intended_s"].max() > 0 else None
    else:  # the same (n - 1) / last completion, from the processes' counts
        last_ok = max((p["last_ok_s"] for p in parts), default=0.0)
        last_int = max((p["last_intended_s"] for p in parts), default=0.0)
        achieved = (n - 1) / last_done if n >= 2 and last_done > 0 else 0.0
        goodput = (n_ok - 1) / last_ok if n_ok >= 2 and last_ok > 0 else 0.0
        sched = (n - 1) / last_int if n >= 2 and last_int > 0 else None
    itl = np.concatenate([p["itl_s"] for p in parts]) if raw else None
    return LoadOutcome(
        config=cfg, records=records, histogram=hists["corrected"], service_histogram=hists["service"],
        lag_histogram=hists["lag"], ttfb_histogram=hists["ttfb"],
        counts={k: int(c) for k, c in zip(KINDS, counts)}, requests=n, succeeded=n_ok,
        achieved_rate=float(achieved), offered_rate=offered, scheduled_rate=sched if cfg.mode == "open" else None, goodput=float(goodput), duration_s=float(last_done),
        generator_cpu=[p["cpu"] for p in parts], warnings=warnings, target=target, mode=cfg.mode,
        processes=len(parts), itl_s=itl, tokens=int(sum(p["tokens"] for p in parts)),
        per_second={"count": _sum_lists([p["per_second"]["count"] for p in parts]),
                    "errors": _sum_lists([p["per_second"]["errors"] for p in parts])},
        pacing=parts[0]["pacing"] if parts else {}, interrupted=any(p["interrupted"] for p in parts),
        scheduled=scheduled,
    )
