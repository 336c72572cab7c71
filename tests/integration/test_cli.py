"""The `infermeter` command end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]
FAST = ["--max-time", "2", "--precision", "5%", "--quiet"]


def run(args, tmp_path, timeout=180, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    env["INFERMETER_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "infermeter", *args], capture_output=True, text=True, timeout=timeout,
        cwd=tmp_path, env=env,
    )


def one_line_error(p, code):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_help_is_fast_and_imports_no_backend(tmp_path):
    t0 = time.perf_counter()
    p = run(["--help"], tmp_path)
    assert p.returncode == 0 and "bench" in p.stdout
    assert time.perf_counter() - t0 < 5  # generous: the target (well under 1 s) lives in benchmarks
    code = "import sys, infermeter.cli; print('torch' in sys.modules, 'onnxruntime' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_bench_callable_json_store_show_export_compare(tmp_path):
    out = tmp_path / "out.json"
    p = run(["bench", "spin:per_sample_100us", "--input", "x:float32[B,4]", "--batch", "1,4", "--json", str(out), *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    for label in ("first inference (cold)", "p99.9", "throughput (samples/s)", "peak RSS", "stopped by", "batch 4"):
        assert label in p.stdout
    doc = json.loads(out.read_text())
    assert doc["schema"] == "infermeter.result/1" and len(doc["results"]) == 2
    r1, r4 = doc["results"]
    assert r1["latency"]["unit"] == "s" and r4["latency"]["p50"]["value"] == pytest.approx(400e-6, rel=0.15)
    assert r1["latency"]["count"] == len(r1["latency"]["samples"])

    p = run(["runs", "list"], tmp_path)
    assert p.returncode == 0 and r1["id"] in p.stdout and r4["id"] in p.stdout
    p = run(["runs", "show", r4["id"][:10]], tmp_path)
    assert p.returncode == 0 and "reproduce: infermeter bench spin:per_sample_100us --batch 4" in p.stdout
    p = run(["runs", "export", r1["id"], r4["id"], "--format", "csv"], tmp_path)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and len(lines) == 3 and lines[0].startswith("id,invocation")
    p = run(["compare", r1["id"], r4["id"], "--json"], tmp_path)
    assert p.returncode == 0, p.stderr
    cmp = json.loads(p.stdout)
    assert cmp["significant"] is True and cmp["ratio_p50"]["value"] == pytest.approx(4.0, rel=0.2)
    p = run(["runs", "rm", r1["id"]], tmp_path)
    assert p.returncode == 0 and f"deleted {r1['id']}" in p.stdout
    one_line_error(run(["runs", "show", r1["id"]], tmp_path), 1)


def test_bench_onnx_file_with_symbolic_dim(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")

    class Pool(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(x).mean(dim=1)

    path = tmp_path / "seq.onnx"
    torch.onnx.export(Pool().eval(), (torch.randn(2, 5, 8),), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "batch", 1: "seq"}}, dynamo=False)
    err = one_line_error(run(["bench", str(path), *FAST], tmp_path), 2)
    assert "--dim seq=" in err
    p = run(["bench", str(path), "--dim", "seq=16", "--batch", "2", "--threads", "1", *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "x:float32[B,seq,8]" in p.stdout


def test_zoo_and_env_commands(tmp_path):
    p = run(["zoo"], tmp_path)
    assert p.returncode == 0
    for name in ("zoo:mlp", "zoo:cnn", "zoo:bert-mini", "zoo:bert-base", "zoo:lstm"):
        assert name in p.stdout
    p = run(["env", "--json"], tmp_path)
    assert p.returncode == 0 and json.loads(p.stdout)["cores_logical"] >= 1


def test_bench_zoo_mlp(tmp_path):
    pytest.importorskip("torch")
    p = run(["bench", "zoo:mlp", "--batch", "1", "--threads", "1", *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "zoo:mlp" in p.stdout and "torch" in p.stdout


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["bench", "missing.onnx"], 2, "does not exist"),
        (["bench", "garbage.onnx"], 1, "garbage.onnx"),
        (["bench", "garbage.pt"], 1, "garbage.pt"),
        (["bench", "garbage.pt2"], 1, "garbage.pt2"),
        (["bench", "no_such_module_xyz:fn", "--input", "x:float32[B,2]"], 2, "no_such_module_xyz"),
        (["bench", "spin:no_such_attr", "--input", "x:float32[B,2]"], 2, "no_such_attr"),
        (["bench", "spin:predict_1ms"], 2, "--input NAME:DTYPE"),
        (["bench", "spin:predict_1ms", "--input", "y:float32[B,2]", "--input", "z:float32[B,2]"], 2, "z"),
        (["bench", "spin:predict_1ms", "--input", "x:float32[B,2]", "--batch", "0"], 2, "batch"),
        (["bench", "spin:predict_1ms", "--input", "x:float32[B,2]", "--batch", "one"], 2, "batch"),
        (["bench", "spin:predict_1ms", "--input", "x:float32[B,2", ], 2, "input spec"),
        (["bench", "spin:predict_1ms", "--input", "x:float32[B,2]", "--json", "/no/such/dir/o.json"], 2, "does not exist"),
        (["bench", "spin:predict_1ms", "--input", "x:float32[B,2]", "--precision", "200%"], 2, "--precision"),
        (["bench", "zoo:nope"], 2, "zoo"),
        (["bench", "zoo:mlp", "--device", "cuda"], 2, "CUDA"),
        (["bench", "spin:raises_at_call_300", "--input", "x:float32[B,2]", "--precision", "0.01%"], 1, "kaboom"),
    ],
)
def test_bad_input_gets_one_line_and_exit_code(tmp_path, args, code, needle):
    if "cuda" in args:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("CUDA is present")
    for name in ("garbage.onnx", "garbage.pt", "garbage.pt2"):
        (tmp_path / name).write_bytes(b"\x00not a model\xff" * 10)
    line = one_line_error(run([*args, "--quiet"], tmp_path), code)
    assert needle in line


def test_store_that_cannot_be_opened(tmp_path):
    (tmp_path / "afile").write_text("x")
    p = run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--store", str(tmp_path / "afile" / "s.db"), *FAST], tmp_path)
    assert "INFERMETER_STORE" in one_line_error(p, 1)


def test_data_option_and_bad_data(tmp_path):
    np.save(tmp_path / "rows.npy", np.ones((16, 2), np.float32))
    p = run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--data", "rows.npy", "--batch", "4", *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    np.save(tmp_path / "bad.npy", np.ones((16, 3), np.float32))
    line = one_line_error(run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--data", "bad.npy", *FAST], tmp_path), 2)
    assert "shape" in line


def test_crash_at_second_batch_keeps_first_in_store(tmp_path):
    p = run(["bench", "spin:hard_exit_on_batch_2", "--input", "x:float32[B,2]", "--batch", "1,2", *FAST], tmp_path)
    assert p.returncode == 9
    p = run(["runs", "list"], tmp_path)
    assert p.returncode == 0 and "spin:hard_exit_on_batch_2" in p.stdout


def test_hang_is_reported_and_finished_points_kept(tmp_path):
    p = run(["bench", "spin:hangs_on_batch_2", "--input", "x:float32[B,2]", "--batch", "1,2", "--hang-timeout", "3", *FAST], tmp_path)
    line = one_line_error(p, 1)
    assert "seems to hang" in line and "batch 2" in line and "1 finished batch size(s) kept" in line
    p = run(["runs", "list"], tmp_path)
    assert p.returncode == 0 and p.stdout.count("spin:hangs_on_batch_2") == 1


def test_ctrl_c_keeps_finished_batch_sizes(tmp_path):
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env.update(PYTHONPATH=str(TESTS), INFERMETER_STORE=str(tmp_path / "store.db"), COLUMNS="200")
    args = ["bench", "spin:per_sample_100us", "--input", "x:float32[B,2]", "--batch", "1,2,4",
            "--max-time", "1.5", "--precision", "0.001%", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "infermeter", *args], cwd=tmp_path, env=env,
                            preexec_fn=_default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    from infermeter.store import Store

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first batch size is in the store
        time.sleep(0.2)
        if (tmp_path / "store.db").exists():
            with Store(tmp_path / "store.db") as st:
                if st.count() >= 1:
                    break
    time.sleep(0.5)  # inside batch 2's timed loop (it runs 1.5 s), not between points
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "kept in the store" in err and "Traceback" not in err
    assert "batch 1" in out  # the finished points are still shown
    with Store(tmp_path / "store.db") as st:
        statuses = sorted((s.batch_size, s.status) for s in st.list())
    assert statuses[0] == (1, "ok") and len(statuses) >= 2  # the interrupted point is kept too, as failed


def test_tags_label_and_find_runs(tmp_path):
    p = run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--tag", "branch=main", "--tag", "ci=1", *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    p2 = run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--tag", "branch=dev", *FAST], tmp_path)
    assert p2.returncode == 0
    listed = run(["runs", "list", "--tag", "branch=main"], tmp_path).stdout
    assert listed.count("spin:predict_200us") == 1
    one_line_error(run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--tag", "oops", *FAST], tmp_path), 2)


def test_reproduce_line_of_a_scenario_run_runs_again(tmp_path):
    import shlex

    p = run(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--scenario", "multi-stream",
             "--samples-per-query", "4", "--tag", "k=v", *FAST], tmp_path)
    assert p.returncode == 0, p.stderr
    rid = [s for s in run(["runs", "list"], tmp_path).stdout.split() if len(s) == 12 and s.isalnum()][0]
    line = next(ln for ln in run(["runs", "show", rid], tmp_path).stdout.splitlines() if ln.startswith("reproduce: "))
    argv = shlex.split(line.removeprefix("reproduce: "))
    assert "--scenario" in argv and "--samples-per-query" in argv and "--batch" not in argv
    again = run([*argv[1:], "--max-time", "1", "--quiet"], tmp_path)
    assert again.returncode == 0, again.stderr


def _default_sigint() -> None:
    """In the child: SIGINT back to its default. A test run started as a background
    job (``cmd &`` in a script) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt: the Ctrl-C tests would test nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
