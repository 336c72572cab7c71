"""`infermeter sweep` end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from infermeter.store import Store
from sweep_helpers import cli, one_line_error, worker_env

FAST = ["--max-time", "0.3", "--precision", "5%", "--quiet"]

SWEEP = """\
id: cli-sweep
model: spin:per_sample_100us
inputs: ["x:float32[B,4]"]
settings: {max_time_s: 0.3, precision: 0.05}
axes:
  batch: [1, 4]
"""


def test_yaml_sweep_table_json_and_resume(tmp_path):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    p = cli(["sweep", "sweep.yaml", "--json", "out.json", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "sweep cli-sweep" in p.stdout and "2 point(s) run, 0 failed, 0 done earlier" in p.stdout
    for col in ("batch", "status", "p50", "p99", "stopped by"):
        assert col in p.stdout
    doc = json.loads((tmp_path / "out.json").read_text())
    assert [r["sweep"]["axes"] for r in doc["results"]] == [{"batch": 1}, {"batch": 4}]
    assert doc["results"][1]["latency"]["p50"]["value"] == pytest.approx(400e-6, rel=0.15)

    p = cli(["sweep", "sweep.yaml", "--quiet"], tmp_path)
    assert p.returncode == 0 and "0 point(s) run, 0 failed, 2 done earlier (skipped); 0 worker process(es)" in p.stdout
    assert "ok (earlier)" in p.stdout
    p = cli(["runs", "list", "--sweep", "cli-sweep"], tmp_path)
    assert p.returncode == 0 and p.stdout.count("spin:per_sample_100us") == 2


def test_grid_on_the_command_line_with_processes(tmp_path):
    p = cli(["sweep", "spin:per_sample_100us", "--grid", "batch=1..2", "--input", "x:float32[B,4]", "--processes", "2",
             "--id", "grid", *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "2 point(s) run, 0 failed" in p.stdout and "4 worker process(es)" in p.stdout and "medians range" in p.stdout
    with Store(tmp_path / "store.db") as st:
        results = st.sweep("grid")
    assert len(results) == 6 and sum(r.sweep.repeat is None for r in results) == 2


def test_bad_sweep_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "typo.yaml").write_text("model: spin:predict_1ms\naxes:\n  batch: [1]\n  batchsize: [2]\n")
    line = one_line_error(cli(["sweep", "typo.yaml"], tmp_path), 2)
    assert line.startswith("error: typo.yaml line 4: unknown axis 'batchsize'") and "known axes:" in line
    (tmp_path / "notyaml.yaml").write_text("model: [unclosed\n")
    assert "not valid YAML" in one_line_error(cli(["sweep", "notyaml.yaml"], tmp_path), 2)
    assert "does not exist" in one_line_error(cli(["sweep", "missing.yaml"], tmp_path), 2)
    assert "--grid: unknown axis" in one_line_error(cli(["sweep", "spin:x", "--grid", "colour=red"], tmp_path), 2)
    assert not (tmp_path / "store.db").exists() or Store(tmp_path / "store.db").count() == 0


def test_failed_and_hanging_points_exit_1_and_keep_the_rest(tmp_path):
    # 5 s: well above a point's start-up (about 1 s) even on a loaded 2-core machine
    p = cli(["sweep", "spin:hangs_on_batch_2", "--grid", "batch=1,2,3", "--input", "x:float32[B,4]",
             "--point-timeout", "5", "--id", "hang", *FAST], tmp_path)
    line = one_line_error(p, 1)
    assert "1 of 3 point(s) run failed (1 timeout)" in line and "run the same sweep again" in line
    assert "point timeout of 5 s" in p.stdout  # the table says why
    with Store(tmp_path / "store.db") as st:
        assert [r.status for r in sorted(st.sweep("hang"), key=lambda r: r.sweep.index)] == ["ok", "failed", "ok"]


def _wait_for_ok_points(db, n, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT count(*) FROM runs WHERE status = 'ok'").fetchone()[0] >= n:
                        return
            except sqlite3.Error:
                pass
        time.sleep(0.1)
    raise AssertionError(f"no {n} finished point(s) within {timeout} s")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a subprocess")
def test_ctrl_c_keeps_finished_points_and_ends_the_workers(tmp_path):
    psutil = pytest.importorskip("psutil")
    env = worker_env(INFERMETER_STORE=str(tmp_path / "store.db"), COLUMNS="250")
    args = ["sweep", "spin:hangs_on_batch_2", "--grid", "batch=1,2,3", "--input", "x:float32[B,4]", "--id", "ctrlc", *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "infermeter", *args], cwd=tmp_path, env=env,
                            preexec_fn=_default_sigint, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_ok_points(tmp_path / "store.db", 1)
        time.sleep(1.0)  # the batch-2 worker is up and hanging now
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the hanging point's worker should be running"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted; 1 finished point(s) kept in the store" in err
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    with Store(tmp_path / "store.db") as st:
        kept = st.sweep("ctrlc")
    assert [(r.status, r.sweep.axes) for r in kept] == [("ok", {"batch": 1})]
    # and the same command resumes: batch 1 is skipped
    p = cli([*args, "--point-timeout", "5"], tmp_path)
    assert p.returncode == 1 and "2 point(s) run, 1 failed, 1 done earlier" in p.stdout


@pytest.mark.slow
def test_ray_executor_from_the_command_line_starts_its_own_instance(tmp_path):
    pytest.importorskip("ray")
    p = cli(["sweep", "spin:per_sample_100us", "--grid", "batch=1,2", "--input", "x:float32[B,4]", "--executor", "ray",
             "--id", "ray-cli", *FAST], tmp_path, timeout=180, RAY_ADDRESS="")
    assert p.returncode == 0, p.stderr
    with Store(tmp_path / "store.db") as st:
        results = st.sweep("ray-cli")
    assert len(results) == 2 and all(r.status == "ok" and r.sweep.executor == "ray" for r in results)
    assert results[0].latency.p50.value == pytest.approx(100e-6 * results[0].batch_size, rel=0.3)


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A test run started as a background
    job (``cmd &`` in a script) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt: the Ctrl-C tests would test nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
