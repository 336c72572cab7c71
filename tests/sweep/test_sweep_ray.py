"""The Ray executor on a local Ray instance this test starts (2 CPUs, no dashboard)."""

from __future__ import annotations

import pytest

from infermeter.store import Store
from infermeter.sweep import SweepConfig, run_sweep
from sweep_helpers import FAST, INPUT

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_executor_streams_results_into_the_local_store(tmp_path, env, local_ray):
    cfg = SweepConfig.model_validate({
        "axes": {"model": ["spin:per_sample_100us", "sweep_models:crash_with_stderr"], "batch": [1, 4]},
        "inputs": [INPUT], "settings": dict(FAST), "executor": "ray", "ray": {"num_cpus": 1}, "point_timeout_s": 60,
    })
    seen = []
    with Store(tmp_path / "s.db") as st:
        out = run_sweep(cfg, store=st, env=env, progress=lambda e, p: seen.append(e))
        stored = st.sweep(cfg.sweep_id)
    assert out.launches == 4 and len(out.results) == 4 and len(stored) == 4
    by = {(r.sweep.axes["model"], r.sweep.axes["batch"]): r for r in out.results}
    for bs in (1, 4):
        ok = by[("spin:per_sample_100us", bs)]
        assert ok.status == "ok" and ok.sweep.executor == "ray"
        assert ok.latency.p50.value == pytest.approx(100e-6 * bs, rel=0.3)
        bad = by[("sweep_models:crash_with_stderr", bs)]
        assert bad.status == "failed" and "exited with code 7" in bad.error and "simulated native crash" in bad.error
    assert seen.count("point-done") == 4
    # resume through Ray as well: nothing left but the failed points
    again = run_sweep(cfg, store=tmp_path / "s.db", env=env)
    assert again.launches == 2 and {r.sweep.axes["model"] for r in again.results} == {"sweep_models:crash_with_stderr"}
