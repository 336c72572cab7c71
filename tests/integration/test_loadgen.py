"""infermeter's scenarios against MLPerf LoadGen (the reference), on the same system under test.

The SUT busy-waits a known time per query on a numpy input. It runs once under
``mlperf_loadgen`` (the ``mlcommons-loadgen`` package) and once under infermeter's
scenario, and the headline numbers must agree:

* single-stream, 2 ms per query: p90 latency within 10% (p50 too);
* server, 2 ms per query at 150 QPS (30% utilisation), latency from the
  scheduled arrival in both: p50 within 10%; p99 within 35% or 3 ms,
  whichever is larger; completed QPS within 10%. The p99 tolerance is wide
  because the two runs draw different Poisson schedules and the p99 of ~300
  queries is about the 3rd-largest latency, whose sampling spread alone is
  tens of percent; and one preemption of the busy-waiting SUT adds a scheduler
  time slice (~4 ms) to a query, which moves a p99 of a few ms by that much
  (the p50 is robust to both).

Percentiles: LoadGen indexes the sorted latencies at floor(n * p), infermeter
uses the nearest rank ceil(n * p) - 1; they differ by at most one rank.
Each comparison alternates three short runs of each harness (1 s single-stream,
2 s server) and compares the medians of their figures, so a change in background
load hits both alike. It skips without ``mlperf_loadgen``, and when the machine
is too busy for the comparison to mean anything (``quiet_machine``).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

lg = pytest.importorskip("mlperf_loadgen")

from infermeter.measure import bench  # noqa: E402

_now = time.perf_counter_ns
X = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)


def spin_model(ns: int):
    """The SUT's model: busy-waits ``ns`` and touches its numpy input."""

    def model(x: np.ndarray) -> np.ndarray:
        end = _now() + ns
        while _now() < end:
            pass
        return x.sum(axis=-1)

    return model


def read_detail(outdir: Path) -> dict[str, Any]:
    """Key -> value of LoadGen's detail log (``:::MLLOG {json}`` lines)."""
    out: dict[str, Any] = {}
    for line in (outdir / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            rec = json.loads(line[len(":::MLLOG "):])
            out[rec["key"]] = rec["value"]
    return out


def run_loadgen(outdir: Path, scenario: str, model, *, qps: float = 0.0, bound_ns: int = 0,
                min_duration_ms: int = 2000, threaded: bool = False) -> dict[str, Any]:
    """Run ``model`` under LoadGen (PerformanceOnly) and return its detail-log results."""
    outdir.mkdir(parents=True, exist_ok=True)
    work: queue.SimpleQueue = queue.SimpleQueue()

    def serve(samples) -> None:
        for s in samples:
            model(X)
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0)])

    def worker() -> None:
        while (samples := work.get()) is not None:
            serve(samples)

    th = threading.Thread(target=worker, daemon=True) if threaded else None
    sut = lg.ConstructSUT(work.put if threaded else serve, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, scenario)
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = min_duration_ms
    ts.max_duration_ms = 4 * min_duration_ms
    ts.min_query_count = 100
    ts.single_stream_expected_latency_ns = 2_000_000
    if qps:
        ts.server_target_qps = qps
        ts.server_target_latency_ns = bound_ns
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # as infermeter's server run does: a GIL-holding SUT yields within 0.1 ms
    try:
        if th is not None:
            th.start()
        lg.StartTestWithLogSettings(sut, qsl, ts, log)
    finally:
        if th is not None:
            work.put(None)
            th.join()
        sys.setswitchinterval(old)
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    return read_detail(outdir)


@pytest.fixture
def quiet_machine() -> None:
    """Skip when the machine cannot run the SUT steadily: if a bare 2 ms busy-wait is
    itself stretched at p90 (preempted by other processes for a scheduler time slice),
    two harnesses timing it cannot be compared, only the load can."""
    out = []
    for _ in range(150):
        t0 = _now()
        end = t0 + 2_000_000
        while _now() < end:
            pass
        out.append(_now() - t0)
    p90 = float(np.percentile(out, 90)) * 1e-9
    if p90 > 2.2e-3:
        pytest.skip(f"machine too busy to compare harnesses: a bare 2 ms busy-wait takes {p90 * 1e3:.2f} ms at p90")


def _interleaved(rounds: int, lg_run, im_run) -> tuple[list[Any], list[Any]]:
    """LoadGen and infermeter runs alternated, so a change in background load hits both alike."""
    lg_out, im_out = [], []
    for i in range(rounds):
        lg_out.append(lg_run(i))
        im_out.append(im_run(i))
    return lg_out, im_out


def test_single_stream_p90_agrees_with_loadgen(tmp_path: Path, quiet_machine: None) -> None:
    model = spin_model(2_000_000)
    refs, runs = _interleaved(
        3,
        lambda i: run_loadgen(tmp_path / f"lg{i}", "SingleStream", model, min_duration_ms=1000),
        lambda i: bench(model, inputs=["x:float32[B,16]"], store=False, max_time_s=1.0, min_duration_s=1.0),
    )
    assert all(ref["result_validity"] == "VALID" for ref in refs)
    assert all(r.verdict.valid and r.headline.metric == "p90 latency" for r in runs)
    lg_p90 = float(np.median([ref["result_90.00_percentile_latency_ns"] * 1e-9 for ref in refs]))
    lg_p50 = float(np.median([ref["result_50.00_percentile_latency_ns"] * 1e-9 for ref in refs]))
    im_p90 = float(np.median([r.headline.value for r in runs]))
    im_p50 = float(np.median([r.latency.p50.value for r in runs]))
    assert im_p90 == pytest.approx(lg_p90, rel=0.10)
    assert im_p50 == pytest.approx(lg_p50, rel=0.10)
    assert lg_p50 == pytest.approx(2e-3, rel=0.05)  # the same SUT: ~2 ms, the harnesses add microseconds


def test_server_latency_and_qps_agree_with_loadgen(tmp_path: Path, quiet_machine: None) -> None:
    model = spin_model(2_000_000)
    refs, runs = _interleaved(
        3,
        lambda i: run_loadgen(tmp_path / f"lg{i}", "Server", model, qps=150.0, bound_ns=50_000_000,
                              min_duration_ms=2000, threaded=True),
        lambda i: bench(model, inputs=["x:float32[B,16]"], store=False, scenario="server", qps=150.0, seed=i,
                        latency_bound_ms=50, min_duration_s=2.0, max_time_s=2.0),
    )
    assert all(r.headline.metric == "p99 latency" and r.headline.value == r.latency.p99.value for r in runs)

    def med(xs: list[float]) -> float:
        return float(np.median(xs))

    lg_p50 = med([ref["result_50.00_percentile_latency_ns"] * 1e-9 for ref in refs])
    lg_p99 = med([ref["result_99.00_percentile_latency_ns"] * 1e-9 for ref in refs])
    im_p50, im_p99 = med([r.latency.p50.value for r in runs]), med([r.headline.value for r in runs])
    assert im_p50 == pytest.approx(lg_p50, rel=0.10)
    assert abs(im_p99 - lg_p99) <= max(0.35 * lg_p99, 3e-3), (im_p99, lg_p99)
    lg_qps = med([ref["result_completed_samples_per_sec"] for ref in refs])
    assert med([r.scenario_details["achieved_qps"] for r in runs]) == pytest.approx(lg_qps, rel=0.10)
