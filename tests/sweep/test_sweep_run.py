"""run_sweep with real worker processes: measurement, failures, resume, repeats, parallel."""

from __future__ import annotations

import pytest

from infermeter.store import Store
from infermeter.sweep import SweepConfig, run_sweep
from sweep_helpers import FAST, INPUT


def config(**kw):
    data = {"model": "spin:per_sample_100us", "inputs": [INPUT], "settings": dict(FAST)}
    data.update(kw)
    return SweepConfig.model_validate(data)


def test_two_by_two_sweep_measures_each_point_in_its_own_process(tmp_path, env):
    cfg = config(inputs=["x:float32[B,f]"], axes={"batch": [1, 4], "dims.f": [2, 8]})
    events = []
    with Store(tmp_path / "s.db") as st:
        out = run_sweep(cfg, store=st, env=env, progress=lambda e, p: events.append((e, p)))
        stored = st.sweep(cfg.sweep_id)
    assert out.ok and out.launches == 4 and not out.skipped
    assert [r.sweep.axes for r in out.results] == [
        {"batch": 1, "dims.f": 2}, {"batch": 1, "dims.f": 8}, {"batch": 4, "dims.f": 2}, {"batch": 4, "dims.f": 8},
    ]
    for r in out.results:
        assert r.status == "ok" and r.batch_size == r.sweep.axes["batch"]
        assert r.latency.p50.value == pytest.approx(100e-6 * r.batch_size, rel=0.15)
        assert r.config["dims"] == {"f": r.sweep.axes["dims.f"]}
        assert r.sweep.sweep_id == cfg.sweep_id and r.sweep.repeat is None and r.sweep.executor == "local"
        assert r.invocation == out.invocation
        proc = r.scenario_details["sweep_process"]
        assert proc["exit"] == "ok" and 0 < proc["to_interpreter_s"] <= proc["to_ready_s"] <= proc["wall_s"]
    pids = {r.scenario_details["sweep_process"]["pid"] for r in out.results}
    assert len(pids) == 4  # a fresh process per point
    assert {r.id for r in stored} == {r.id for r in out.results}
    kinds = [e for e, _ in events]
    assert kinds[0] == "sweep-start" and kinds.count("task-start") == 4 and kinds.count("point-done") == 4
    assert "task-progress" in kinds  # the worker's own progress reached us
    done = [p["done"] for e, p in events if e == "point-done"]
    assert done == [1, 2, 3, 4]


def test_crash_oom_kill_and_hang_are_failed_points_and_the_sweep_goes_on(tmp_path, env):
    models = ["sweep_models:crash_with_stderr", "spin:per_sample_100us", "sweep_models:killed_like_oom",
              "sweep_models:hangs", "sweep_models:prints_to_stdout"]
    cfg = config(model=None, axes={"model": models}, point_timeout_s=4)  # > start-up on a loaded machine
    out = run_sweep(cfg, store=tmp_path / "s.db", env=env)
    by = {r.sweep.axes["model"]: r for r in out.results}
    assert [r.status for r in out.results] == ["failed", "ok", "failed", "failed", "ok"]
    crash = by["sweep_models:crash_with_stderr"]
    assert crash.stop_reason == "crashed" and "exited with code 7" in crash.error
    assert "simulated native crash" in crash.error  # the tail of its stderr, in the one-line error
    tail = crash.scenario_details["sweep_process"]["stderr_tail"]
    assert tail[-2:] == ["allocating the big buffer", "fatal: simulated native crash in the model"]
    oom = by["sweep_models:killed_like_oom"]
    assert oom.stop_reason == "crashed" and "SIGKILL" in oom.error and "likely out of memory" in oom.error
    hang = by["sweep_models:hangs"]
    assert hang.stop_reason == "timeout" and "point timeout of 4 s" in hang.error
    assert 4 <= hang.scenario_details["sweep_process"]["wall_s"] < 15
    assert by["sweep_models:prints_to_stdout"].latency.p50.value == pytest.approx(100e-6, rel=0.3)
    with Store(tmp_path / "s.db") as st:
        assert len(st.sweep(cfg.sweep_id)) == 5
        assert st.done_points(cfg.sweep_id) == {by["spin:per_sample_100us"].sweep.point_key, by["sweep_models:prints_to_stdout"].sweep.point_key}


def test_model_error_is_a_failed_point_with_its_message(tmp_path, env):
    out = run_sweep(config(model="spin:raises_when_batch_is_4", axes={"batch": [1, 4]}), store=False, env=env)
    ok, bad = out.results
    assert ok.status == "ok" and bad.status == "failed"
    assert "cannot handle batch 4" in bad.error and bad.sweep.axes == {"batch": 4}
    out = run_sweep(config(model="spin:no_such_model", axes={"batch": [1]}), store=False, env=env)
    (r,) = out.results
    assert r.status == "failed" and r.stop_reason == "error" and "no_such_model" in r.error


def test_resume_skips_points_already_done(tmp_path, env):
    db = tmp_path / "s.db"
    first = config(axes={"batch": [1, 2]}, id="resume-me")
    out = run_sweep(first, store=db, env=env)
    assert out.launches == 2 and out.ok
    again = run_sweep(first, store=db, env=env)
    assert again.launches == 0 and [p.axes for p in again.skipped] == [{"batch": 1}, {"batch": 2}]
    assert set(again.previous) == {p.key for p in again.skipped} and again.results == []
    grown = config(axes={"batch": [1, 2, 3]}, id="resume-me")  # one new point: only it runs
    out = run_sweep(grown, store=db, env=env)
    assert out.launches == 1 and [r.sweep.axes for r in out.results] == [{"batch": 3}]
    # a failed point is not done: it runs again
    flaky = config(model="spin:raises_when_batch_is_4", axes={"batch": [4]}, id="flaky")
    assert run_sweep(flaky, store=db, env=env).launches == 1
    assert run_sweep(flaky, store=db, env=env).launches == 1


def test_processes_merge_with_between_process_spread(tmp_path, env):
    cfg = config(model="sweep_models:slower_each_process", axes={"batch": [1]}, processes=2)
    with Store(tmp_path / "s.db") as st:
        out = run_sweep(cfg, store=st, env=env)
        stored = st.sweep(cfg.sweep_id)
        assert out.launches == 2 and len(out.repeats) == 2 and len(out.results) == 1
        (merged,) = out.results
        assert merged.status == "ok" and merged.sweep.repeat is None and merged.sweep.processes == 2
        assert sorted(r.sweep.repeat for r in out.repeats) == [0, 1]
        medians = sorted(r.latency.p50.value for r in out.repeats)
        assert medians[0] == pytest.approx(100e-6, rel=0.15) and medians[1] == pytest.approx(200e-6, rel=0.15)
        assert merged.latency.count == sum(r.latency.count for r in out.repeats)
        spread = merged.scenario_details["process_spread"]
        assert spread["processes"] == 2 and sorted(spread["medians"]) == medians
        assert spread["range_rel"] == pytest.approx(0.67, abs=0.15) and spread["significant"] is True
        assert any("between-process spread" in w for w in merged.warnings)
        assert [p["repeat"] for p in merged.scenario_details["processes"]] == [0, 1]
        assert len(stored) == 3  # each process's result, then the merged one
        assert run_sweep(cfg, store=st, env=env).launches == 0
        # resume counts merged results only: a point with only one process's result saved is not done
        partial = out.repeats[0].model_copy(deep=True)
        partial.id = "partial00001"
        partial.sweep.sweep_id = "partial"
        st.save(partial)
        assert st.done_points("partial") == {partial.sweep.point_key}
        assert run_sweep(cfg.replace(id="partial"), store=st, env=env).launches == 2


def test_parallel_runs_points_at_once_and_says_so(tmp_path, env):
    out = run_sweep(config(axes={"batch": [1, 2, 3]}), store=False, env=env, parallel=2)
    assert out.ok and len(out.results) == 3
    for r in out.results:
        assert r.sweep.parallel == 2
        assert any("--parallel 2" in w for w in r.warnings)
