"""``infermeter profile`` end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class Heavy(nn.Module):
        infermeter_inputs = ["x:float32[B,2048]"]

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.big = nn.Linear(2048, 512)
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(512, 4))

        def forward(self, x):
            return self.head(self.big(x) * 0.5 + 1.0)


    class Broken(nn.Module):
        infermeter_inputs = ["x:float32[B,8]"]

        def forward(self, x):
            raise ValueError("this model is broken")


    def double(x):
        return x * 2
''')


def run_cli(tmp_path: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["INFERMETER_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "cli_models.py").write_text(MODELS)
    return lambda *args, **kw: run_cli(tmp_path, *args, **kw)


def one_line_error(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_profile_prints_phases_and_top_ops_saves_and_reports(cli, tmp_path):
    p = cli("profile", "cli_models:Heavy", "--batch", "32", "--iterations", "4", "--warmup", "1", "--top", "3",
            "--json", "out.json")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert p.stderr.strip() == ""  # no profiler chatter on stderr
    for text in ("phases", "model load", "input preparation", "forward pass", "top 3 of", "op types",
                 "aten::addmm", "matmul", "share", "cum.", "total", "more)", "saved run"):
        assert text in out, (text, out)
    assert re.search(r"aten::addmm\s+matmul\s+2\s", out), out  # two Linears: 2 calls per iteration
    doc = json.loads((tmp_path / "out.json").read_text())
    (res,) = doc["results"]
    assert res["scenario"] == "profile" and res["op_profile"]["iterations"] == 4
    run_id = re.search(r"saved run (\w+)", out).group(1)
    assert run_id == res["id"]

    p = cli("report", run_id, "--html", "report.html")
    assert p.returncode == 0, p.stderr
    html = (tmp_path / "report.html").read_text()
    assert f'id="profile-{run_id}"' in html and f'id="chart-profile-{run_id}"' in html

    p = cli("profile", "cli_models:Heavy", "--batch", "8", "--iterations", "3", "--warmup", "0", "--by", "node",
            "--no-save")
    assert p.returncode == 0, p.stderr
    assert "layers (module paths)" in p.stdout and re.search(r"\bbig\b", p.stdout) and "(root)" in p.stdout
    assert "saved run" not in p.stdout


def test_profile_onnx_file(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    script = ("import torch, warnings, cli_models; warnings.simplefilter('ignore'); "
              "torch.onnx.export(cli_models.Heavy().eval(), (torch.randn(2, 2048),), 'heavy.onnx', "
              "input_names=['x'], dynamic_axes={'x': {0: 'b'}}, dynamo=False)")
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True, timeout=180)
    p = cli("profile", "heavy.onnx", "--batch", "16", "--iterations", "3", "--warmup", "1", "--no-save", "--by", "node")
    assert p.returncode == 0, p.stderr
    assert "onnxruntime session profiling" in p.stdout and "/big/" in p.stdout and "nodes" in p.stdout


def test_python_callable_exits_2_with_one_line(cli):
    line = one_line_error(cli("profile", "cli_models:double", "--input", "x:float32[B,4]"), 2)
    assert "no operator profiler" in line and "infermeter bench" in line


def test_model_that_raises_exits_1_with_one_line_and_is_kept(cli, tmp_path):
    line = one_line_error(cli("profile", "cli_models:Broken", "--iterations", "2"), 1)
    assert "this model is broken" in line and "first-inference" in line and "kept as run" in line
    from infermeter.store import Store

    run_id = re.search(r"kept as run (\w+)", line).group(1)
    with Store(tmp_path / "store.db") as st:
        r = st.get(run_id)
    assert r.status == "failed" and r.scenario == "profile"


@pytest.mark.parametrize("args, needle", [
    (["--by", "layer"], "--by 'layer'"),
    (["--batch", "1,8"], "one batch size"),
])
def test_bad_options_exit_2(cli, args, needle):
    assert needle in one_line_error(cli("profile", "cli_models:Heavy", *args, "--no-save"), 2)
