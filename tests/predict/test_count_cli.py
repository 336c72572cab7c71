"""`infermeter count` end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from infermeter.predict.schema import WorkCount

TESTS = Path(__file__).resolve().parents[1]


def run(args, cwd, timeout=180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(cwd), env.get("PYTHONPATH", "")])
    env["INFERMETER_STORE"] = str(Path(cwd) / "store.db")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def one_line_error(p, code):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def test_bert_mini_table_totals_and_json(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "count.json"
    p = run(["count", "zoo:bert-mini", "--batch", "1,8", "--top", "5", "--json", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr
    for text in ("layers.0.ffn_in", "linear", "matmul", "GFLOP", "MB", "FLOP/B", "per sample", "per batch of 8",
                 "FLOPs = 2 x multiply-accumulates", "params", "across batch sizes"):
        assert text in p.stdout, text
    doc = json.loads(out.read_text())
    assert doc["schema"] == "infermeter.count/1" and [c["batch_size"] for c in doc["counts"]] == [1, 8]
    one, eight = (WorkCount.model_validate(c) for c in doc["counts"])
    assert eight.flops == pytest.approx(8 * one.flops, rel=0.01)  # attention and all: linear in batch at fixed seq
    assert doc["totals"][1]["flops"] == eight.flops


def test_by_class_and_by_layer(tmp_path):
    pytest.importorskip("torch")
    p = run(["count", "zoo:cnn", "--by", "class"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "conv" in p.stdout and "share" in p.stdout and "3.64 GFLOP" in p.stdout
    p = run(["count", "zoo:lstm", "--by", "layer", "--top", "3"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "lstm.l0.hh" in p.stdout and "more" in p.stdout


def test_symbolic_dim_left_unset_is_one_line_exit_2(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    path = tmp_path / "seq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Linear(8, 4).eval(), (torch.randn(2, 5, 8),), str(path), input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}}, dynamo=False)
    err = one_line_error(run(["count", str(path)], tmp_path), 2)
    assert "dim 'seq'" in err and "--dim seq=N" in err
    p = run(["count", str(path), "--dim", "seq=16", "--batch", "2"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "seq=16" in p.stdout and "(onnx)" in p.stdout


def test_unknown_op_warning_line(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "fftmod.py").write_text(textwrap.dedent("""
        import torch

        class FFT(torch.nn.Module):
            infermeter_inputs = ["x:float32[B,16]"]

            def forward(self, x):
                return torch.fft.rfft(x, dim=-1).abs()

        model = FFT()
    """))
    p = run(["count", "fftmod:model"], tmp_path)
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "aten._fft_r2c" in warn[0] and "not counted" in warn[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["count", "spin:predict_1ms", "--input", "x:float32[B,2]"], "ONNX or PyTorch"),
        (["count", "zoo:mlp", "--by", "module"], "--by"),
        (["count", "zoo:mlp", "--batch", "0"], "batch"),
        (["count", "missing.onnx"], "does not exist"),
        (["count", "zoo:mlp", "--json", "/no/such/dir/c.json"], "does not exist"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(tmp_path, args, needle):
    assert needle in one_line_error(run(args, tmp_path), 2)
