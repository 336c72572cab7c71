"""Single-stream, multi-stream and offline through bench(): headlines, verdicts, ground truth."""

from __future__ import annotations

import pytest

from infermeter.measure import bench

from . import _models as m

X = ["x:float32[B,4]"]
FAST = dict(store=False, inputs=X, precision=0.02)


def test_single_stream_headline_is_p90_with_verdict() -> None:
    r = bench(m.one_ms, max_time_s=3, **FAST)
    assert r.scenario == "single-stream"
    assert r.headline.metric == "p90 latency" and r.headline.unit == "s"
    assert r.headline.value == r.latency.p90.value >= r.latency.p50.value
    assert r.latency.p50.value == pytest.approx(1e-3, rel=0.1)
    assert (r.headline.ci_low, r.headline.ci_high) == (r.latency.p90.ci_low, r.latency.p90.ci_high)
    assert r.verdict.valid, r.verdict.reasons
    es = r.verdict.checks["early_stopping"]
    assert es["percentile"] == 90 and es["estimate"] >= r.latency.p90.value
    assert r.latency.p99 is not None and r.latency.p999 is not None  # all percentiles kept


def test_single_stream_min_duration_beyond_max_time_is_invalid() -> None:
    r = bench(m.one_ms, max_time_s=0.5, min_duration_s=2.0, **FAST)
    assert not r.verdict.valid
    assert any("min duration" in x for x in r.verdict.reasons)
    assert any(x.startswith("run longer") and "--max-time" in x for x in r.verdict.recommendations)


def test_multi_stream_query_latency_is_n_times_the_sample_time() -> None:
    r = bench(m.per_row_100us, scenario="multi-stream", samples_per_query=8, max_time_s=4, **FAST)
    assert r.scenario == "multi-stream" and r.batch_size == 8
    assert r.latency.p50.value == pytest.approx(8 * 100e-6, rel=0.1)
    assert r.headline.metric == "p99 latency" and r.headline.value == r.latency.p99.value
    assert r.latency.count >= 662  # enough for LoadGen's p99 early-stopping estimate
    assert r.verdict.valid, r.verdict.reasons
    assert r.scenario_details["samples_per_query"] == 8
    assert r.config["scenario"] == "multi-stream" and r.config["requested"] == {"samples_per_query": 8}


def test_offline_throughput_is_one_over_the_sample_time() -> None:
    r = bench(m.per_row_100us, scenario="offline", batch_size=16, min_duration_s=1.0, max_time_s=5, **FAST)
    d = r.scenario_details
    assert r.scenario == "offline" and r.headline.metric == "throughput" and r.headline.unit == "samples/s"
    # a spin cannot run faster than its wall time; on a loaded machine preemption past the
    # spin's end slows batches, so only a loose lower bound
    assert 0.4 / 100e-6 < r.headline.value < 1.05 / 100e-6  # 10,000 samples/s on an idle machine
    assert r.headline.value == pytest.approx(16 / r.latency.mean.value, rel=0.03)  # back to back
    assert r.throughput.samples_per_s.value == r.headline.value
    assert r.headline.ci_low <= r.headline.value <= r.headline.ci_high
    assert r.latency.p50.value == pytest.approx(16 * 100e-6, rel=0.1)  # per-batch latency kept
    assert d["samples"] == 16 * d["batches"] == 16 * r.latency.count
    assert d["wall_s"] >= 1.0 and d["sized_from"] == "min_duration"
    assert r.verdict.valid, r.verdict.reasons
    assert r.headline.value == pytest.approx(d["samples"] / d["wall_s"])


def test_offline_samples_too_few_for_min_duration_is_invalid() -> None:
    r = bench(m.per_row_100us, scenario="offline", batch_size=16, offline_samples=1000, min_duration_s=1.0,
              max_time_s=5, **FAST)
    d = r.scenario_details
    assert d["samples"] == 1008 and d["batches"] == 63  # rounded up to whole batches
    assert any("rounded up" in w for w in r.warnings)
    assert not r.verdict.valid
    assert any("--offline-samples" in x for x in r.verdict.recommendations)
