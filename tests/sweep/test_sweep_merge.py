"""merge_repeats on results measured in this process (the process part is tested in test_sweep_run)."""

from __future__ import annotations

import numpy as np
import pytest

from infermeter.measure import bench
from infermeter.result import SweepPoint
from infermeter.stats import percentile
from infermeter.sweep import merge_repeats

FAST = dict(max_time_s=0.3, precision=0.05, min_duration_s=0.2, store=False)


def repeats(n, **kw):
    out = []
    for i in range(n):
        r = bench("spin:per_sample_100us", inputs=["x:float32[B,4]"], batch_size=2, seed=i, **FAST, **kw)
        r.sweep = SweepPoint(sweep_id="s", point_key='{"batch":2}', axes={"batch": 2}, repeat=i, processes=n)
        out.append(r)
    return out


def merged_of(rs):
    return merge_repeats(rs, SweepPoint(sweep_id="s", point_key='{"batch":2}', axes={"batch": 2}, processes=len(rs)), "inv")


def test_single_stream_merge_recomputes_latency_and_headline():
    rs = repeats(2)
    m = merged_of(rs)
    samples = np.concatenate([r.latency.samples for r in rs])
    assert m.status == "ok" and m.sweep.repeat is None and m.invocation == "inv"
    assert m.latency.count == samples.size and m.latency.p50.value == percentile(samples, 50)
    assert m.headline is not None and m.headline.metric == rs[0].headline.metric and m.headline.unit == "s"
    p = float(m.headline.metric.split()[0][1:])
    assert m.headline.value == percentile(samples, p) and m.headline.ci_low is not None
    assert m.throughput.samples_per_s.value == pytest.approx(2 / float(np.mean(samples)))
    assert m.phases.measure_s == pytest.approx(sum(r.phases.measure_s for r in rs))
    assert m.verdict is not None and m.verdict.valid == all(r.verdict.valid for r in rs)
    assert m.scenario_details["process_spread"]["processes"] == 2
    assert [p["id"] for p in m.scenario_details["processes"]] == [r.id for r in rs]


def test_offline_headline_is_the_median_over_processes():
    rs = repeats(3, scenario="offline")
    m = merged_of(rs)
    assert m.headline.metric == "throughput" and m.headline.ci_low is None
    assert m.headline.value == pytest.approx(float(np.median([r.headline.value for r in rs])))


def test_a_failed_process_fails_the_point_but_keeps_the_others_figures():
    rs = repeats(2)
    rs[1] = rs[1].model_copy(update={"status": "failed", "error": "worker process exited with code 7", "latency": None})
    m = merged_of(rs)
    assert m.status == "failed" and "1 of 2 processes failed (repeat 1): worker process exited with code 7" in m.error
    assert m.latency is not None and m.latency.count == rs[0].latency.count
