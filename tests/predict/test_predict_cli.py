"""`infermeter predict` end to end: a quick calibration of this machine in a store,
then predictions here, on a spec-sheet target, with --measure, and the bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from infermeter.predict.schema import Prediction  # noqa: E402

TESTS = Path(__file__).resolve().parents[1]


def run(args, cwd, store, timeout=240):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(cwd), env.get("PYTHONPATH", "")])
    env["INFERMETER_STORE"] = str(store)
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def one_line_error(p, code):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    """A store holding a quick calibration of this machine."""
    from infermeter.predict.calibrate import calibrate
    from infermeter.predict.profiles import save_profile
    from infermeter.store import Store

    path = tmp_path_factory.mktemp("calibrated") / "store.db"
    with Store(path) as st:
        save_profile(st, calibrate(quick=True))
    return path


def test_predict_here_per_batch_with_op_table_and_json(tmp_path, calibrated):
    out = tmp_path / "pred.json"
    p = run(["predict", "zoo:mlp", "--batch", "1,16", "--json", str(out)], tmp_path, calibrated)
    assert p.returncode == 0, p.stderr
    for text in ("zoo:mlp", "predicted latency", "throughput (samples/s)", "batch 16: top op types", "linear", "matmul"):
        assert text in p.stdout, text
    preds = [Prediction.model_validate(d) for d in json.loads(out.read_text())["predictions"]]
    assert [q.batch_size for q in preds] == [1, 16]
    for q in preds:
        assert q.latency_s > 0 and q.throughput_samples_per_s == pytest.approx(q.batch_size / q.latency_s)
        assert q.latency_s == pytest.approx(sum(o.time_s for o in q.ops))
        assert q.hardware_source.startswith("calibrated")
    assert preds[1].flops == pytest.approx(16 * preds[0].flops, rel=0.01)
    assert preds[1].latency_s > preds[0].latency_s


def test_spec_sheet_target_says_so_and_is_faster_than_this_vm(tmp_path, calibrated):
    here = run(["predict", "zoo:bert-mini", "--batch", "8", "--json", str(tmp_path / "a.json")], tmp_path, calibrated)
    there = run(["predict", "zoo:bert-mini", "--batch", "8", "--hardware", "h100", "--dtype", "bfloat16",
                 "--json", str(tmp_path / "b.json")], tmp_path, calibrated)
    assert here.returncode == 0 and there.returncode == 0, (here.stderr, there.stderr)
    assert "spec sheet" in there.stdout and "efficiency" in there.stdout
    a = Prediction.model_validate(json.loads((tmp_path / "a.json").read_text())["predictions"][0])
    b = Prediction.model_validate(json.loads((tmp_path / "b.json").read_text())["predictions"][0])
    assert b.latency_s < a.latency_s  # an H100 in bf16 beats two CPU cores in fp32


def test_measure_compares_saves_and_reports(tmp_path, calibrated):
    p = run(["predict", "zoo:mlp", "--batch", "2", "--measure", "--measure-time", "1"], tmp_path, calibrated)
    assert p.returncode == 0, p.stderr
    assert "measured p50" in p.stdout and "error" in p.stdout and "predicted vs profiler" in p.stdout
    run_id = p.stdout.split("2→")[1].split()[0]
    shown = run(["runs", "show", run_id], tmp_path, calibrated)
    assert shown.returncode == 0 and "predicted latency" in shown.stdout, shown.stderr
    pytest.importorskip("matplotlib")
    html = tmp_path / "r.html"
    rep = run(["report", run_id, "--html", str(html)], tmp_path, calibrated)
    assert rep.returncode == 0, rep.stderr
    text = html.read_text()
    assert "roofline-" in text and "Predicted" in text


def test_onnx_file_is_predicted_from_its_graph(tmp_path, calibrated):
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(2, 32),), str(path), input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                      dynamo=False)
    p = run(["predict", str(path), "--batch", "4", "--json", str(tmp_path / "o.json")], tmp_path, calibrated)
    assert p.returncode == 0, p.stderr
    q = Prediction.model_validate(json.loads((tmp_path / "o.json").read_text())["predictions"][0])
    assert q.flops == pytest.approx(2 * 4 * (32 * 64 + 64 * 4), rel=0.1) and q.latency_s > 0


def test_bad_hardware_and_no_calibration_are_one_line_errors(tmp_path, calibrated):
    line = one_line_error(run(["predict", "zoo:mlp", "--hardware", "h1000"], tmp_path, calibrated), 2)
    assert "h1000" in line and "infermeter hardware" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkind: cpu\npeak_flops: lots\n")
    line = one_line_error(run(["predict", "zoo:mlp", "--hardware", str(bad)], tmp_path, calibrated), 2)
    assert "bad.yaml" in line
    empty = tmp_path / "empty.db"
    line = one_line_error(run(["predict", "zoo:mlp"], tmp_path, empty), 2)
    assert "infermeter calibrate" in line
    line = one_line_error(run(["predict", "zoo:mlp", "--hardware", "h100", "--measure"], tmp_path, calibrated), 2)
    assert "spec sheet" in line
