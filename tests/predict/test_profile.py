"""``profile_model`` / ``profile_runner`` on real small models whose heavy op is known:
one big Linear next to a few tiny elementwise ops, in PyTorch and exported to ONNX."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from infermeter.errors import ModelRunError, UsageError  # noqa: E402
from infermeter.predict.profile import profile_model, profile_runner  # noqa: E402
from infermeter.predict.schema import OpProfile  # noqa: E402

ITERS, WARM = 6, 2


class Heavy(nn.Module):
    """A 2048→512 Linear (the heavy op: 1024 FLOPs per output element), a tiny head, and
    cheap elementwise work in the root on its 512-wide output."""

    infermeter_inputs = ["x:float32[B,2048]"]

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.big = nn.Linear(2048, 512)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(512, 4))

    def forward(self, x):
        return self.head(self.big(x) * 0.5 + 1.0)


class FailsAt(nn.Module):
    """Raises on call number ``n`` (1-based) and after."""

    infermeter_inputs = ["x:float32[B,8]"]

    def __init__(self, n: int) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.n, self.calls = n, 0

    def forward(self, x):
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError(f"boom at call {self.calls}")
        return self.lin(x)


def check_shares(op: OpProfile) -> None:
    for view in (op.by_type, op.by_node):
        assert view, "empty view"
        assert sum(t.share for t in view) == pytest.approx(1.0, abs=1e-9)
        assert [t.total_s for t in view] == sorted((t.total_s for t in view), reverse=True)
        for t in view:
            assert t.per_iter_s == pytest.approx(t.total_s / op.iterations)
    assert op.op_total_per_iter_s == pytest.approx(sum(t.per_iter_s for t in op.by_type))
    assert op.op_total_per_iter_s == pytest.approx(sum(t.per_iter_s for t in op.by_node))


@pytest.fixture(scope="module")
def torch_result():
    return profile_model(Heavy(), batch_size=64, iterations=ITERS, warmup=WARM)


def test_torch_big_linear_dominates_and_counts_are_per_iteration(torch_result):
    r = torch_result
    op = r.op_profile
    assert r.scenario == "profile" and r.status == "ok" and r.batch_size == 64
    assert op.profiler == "torch.profiler" and op.iterations == ITERS and op.warmup == WARM and op.device == "cpu"
    check_shares(op)
    by_type = {t.key: t for t in op.by_type}
    assert op.by_type[0].key in ("aten::addmm", "aten::mm", "aten::linear", "aten::mkldnn_linear"), op.by_type[:3]
    matmul = sum(t.share for t in op.by_type if t.op_class == "matmul")
    assert matmul > 0.5, op.by_type
    assert by_type["aten::addmm"].calls == 2 * ITERS  # two Linears per call, warm-up not counted
    assert by_type["aten::mul"].calls == ITERS and by_type["aten::mul"].op_class == "elementwise"
    assert not any(k.startswith("infermeter::") for k in by_type)  # our scopes are not ops
    # layers are module paths; the root's own ops (mul, add) are "(root)"
    by_node = {t.key: t for t in op.by_node}
    assert {"big", "head.1", "(root)"} <= set(by_node), list(by_node)
    assert op.by_node[0].key == "big" and by_node["big"].op_class == "matmul"
    assert by_node["(root)"].op_class == "elementwise"
    assert not any(k.startswith("infermeter::") for k in by_node)


def test_torch_phases_latency_and_notes(torch_result):
    r = torch_result
    op = r.op_profile
    assert set(op.phases) == {"load", "input_prep", "forward"}  # nothing is copied on the host
    assert all(v > 0 for v in op.phases.values())
    assert op.phases["load"] == r.phases.load_s
    assert r.latency is not None and r.latency.count == ITERS and len(r.latency.samples) == ITERS
    assert op.phases["forward"] == r.latency.p50.value
    assert r.phases.warmup_iters == WARM and r.phases.first_inference_s > 0
    assert r.throughput is not None and r.env is not None
    assert r.config["iterations"] == ITERS and r.config["warmup"] == WARM
    assert any("under the profiler an iteration took" in n for n in op.notes), op.notes


def test_profile_runner_returns_an_op_profile():
    from infermeter.inputs import make_batches
    from infermeter.models import load_model

    runner = load_model(Heavy())
    batches, _ = make_batches(runner.inputs(), 8)
    op = profile_runner(runner, batches[0], iterations=3, warmup=1)
    assert isinstance(op, OpProfile) and op.iterations == 3
    check_shares(op)
    assert {t.key for t in op.by_type if t.key == "aten::addmm"}


def test_torchscript_layers_fall_back_to_op_and_shapes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(Heavy())
    from infermeter.models import LoadOptions
    from infermeter.models.torch import TorchRunner

    runner = TorchRunner(scripted, "scripted", LoadOptions(), declared=[], fmt="torchscript")
    op = profile_runner(runner, {"x": np.ones((4, 2048), np.float32)}, iterations=3, warmup=1)
    check_shares(op)
    assert any(re.match(r"aten::addmm \(.*4x2048.*\)", t.key) for t in op.by_node), [t.key for t in op.by_node]
    assert any("TorchScript" in n for n in op.notes)
    assert not any(t.key == "forward" for t in op.by_type)  # the scripted method's frame is not an op


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path_factory.mktemp("onnx") / "heavy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Heavy().eval(), (torch.randn(2, 2048),), str(path), input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return path


def test_onnx_gemm_dominates_warmup_excluded_and_trace_deleted(onnx_path, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    r = profile_model(str(onnx_path), batch_size=64, iterations=ITERS, warmup=WARM)
    op = r.op_profile
    assert op.profiler == "onnxruntime session profiling" and op.iterations == ITERS
    check_shares(op)
    assert op.by_type[0].key in ("Gemm", "MatMul", "FusedGemm", "FusedMatMul"), op.by_type
    assert op.by_type[0].op_class == "matmul" and op.by_type[0].share > 0.5
    gemm_calls = sum(t.calls for t in op.by_type if t.op_class == "matmul")
    assert gemm_calls == 2 * ITERS  # one per Linear per profiled run: warm-up runs left out
    nodes = {t.key: t for t in op.by_node}
    assert all(t.calls == ITERS for t in op.by_node)
    assert any(k.startswith("/big/") for k in nodes), list(nodes)
    assert op.by_node[0].key.startswith("/big/")
    assert r.latency.count == ITERS and set(op.phases) == {"load", "input_prep", "forward"}
    assert list(scratch.iterdir()) == []  # the trace was written in a temporary directory, then deleted


def test_read_trace_keeps_only_the_profiled_runs():
    from infermeter.predict.profile_onnx import read_trace

    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def kernel(node, op, ts, dur):
        return {"cat": "Node", "name": f"{node}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0, 100), kernel("/a/MatMul", "MatMul", 10, 1000),  # warm-up: excluded
              run(200, 100), kernel("/a/MatMul", "MatMul", 210, 60), kernel("/Relu", "Relu", 280, 20),
              {"cat": "Node", "name": "/a/MatMul_fence_before", "ts": 205, "dur": 5},
              run(400, 100), kernel("/a/MatMul", "MatMul", 410, 60), kernel("/Relu", "Relu", 480, 20)]
    t = read_trace(events, warmup=1, iterations=2)
    assert t.iterations == 2 and t.iteration_s == pytest.approx([1e-4, 1e-4])
    types = {o.key: o for o in t.by_type.times(2)}
    assert types["MatMul"].calls == 2 and types["MatMul"].total_s == pytest.approx(120e-6)
    assert types["MatMul"].share == pytest.approx(0.75) and types["Relu"].op_class == "elementwise"
    assert [o.key for o in t.by_node.times(2)] == ["/a/MatMul", "/Relu"]


def test_python_callable_is_a_usage_error():
    with pytest.raises(UsageError, match="no operator profiler"):
        profile_model(lambda x: x, inputs=["x:float32[B,4]"])


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(warmup=-1), dict(batch_size=0)])
def test_bad_counts_are_usage_errors(bad):
    with pytest.raises(UsageError):
        profile_model(Heavy(), **bad)


def test_model_raising_mid_profile_keeps_what_was_measured(tmp_path):
    from infermeter.store import Store

    # unprofiled: 1 first + 2 warm-up + 5 timed = 8 calls; profile warm-up: calls 9-10; profiled: 11, 12, then 13 raises
    model = FailsAt(13)
    with Store(tmp_path / "s.db") as st:
        with pytest.raises(ModelRunError) as info:
            profile_model(model, batch_size=2, iterations=5, warmup=2, store=st)
        err = info.value
        assert err.phase == "profile" and err.iteration == 2
        assert "boom at call 13" in str(err) and "kept as run" in str(err)
        run_id = re.search(r"kept as run (\w+)", str(err)).group(1)
        r = st.get(run_id)
    assert r.status == "failed" and "boom" in r.error
    assert r.latency.count == 5  # the unprofiled timing survived
    op = r.op_profile
    assert op.iterations == 2 and {t.key: t for t in op.by_type}["aten::addmm"].calls == 2
    check_shares(op)
    assert any("raised at profiled iteration 2" in n for n in op.notes)


def test_model_raising_on_first_call_is_saved_failed(tmp_path):
    from infermeter.store import Store

    with Store(tmp_path / "s.db") as st:
        with pytest.raises(ModelRunError) as info:
            profile_model(FailsAt(1), iterations=3, warmup=1, store=st)
        assert info.value.phase == "first-inference" and info.value.iteration == 0
        (row,) = st.list()
        r = st.get(row.id)
    assert r.status == "failed" and r.latency is None and r.op_profile.iterations == 0


def test_round_trip_through_store_json_and_html(torch_result, tmp_path):
    pytest.importorskip("matplotlib")
    from infermeter.report.html import render_html
    from infermeter.result import load_result
    from infermeter.store import Store

    r = torch_result
    with Store(tmp_path / "s.db") as st:
        st.save(r)
        back = st.get(r.id)
    assert back.op_profile == r.op_profile
    assert load_result(json.loads(json.dumps(r.to_json_dict()))).op_profile == r.op_profile

    html = render_html([r])
    assert f'id="profile-{r.id}"' in html and "Where the time goes" in html
    assert f'id="chart-profile-{r.id}"' in html and "Top operators by self time" in html
    data = json.loads(re.search(r'id="im-data">(.*?)</script>', html, re.S).group(1))
    assert f"profile-{r.id}" in data["charts"]
    section = html[html.index(f'id="profile-{r.id}"'):]
    assert "aten::addmm" in section and "(root)" in section and "head.1" in section

    plain = r.model_copy(update={"op_profile": None})
    assert "Where the time goes" not in render_html([plain])


def test_profile_table_rows_fold_the_rest(torch_result):
    from infermeter.report.profile_table import top_rows

    op = torch_result.op_profile
    rows = top_rows(op, "type", 3)
    assert [r.rank for r in rows] == [1, 2, 3, 0, -1]
    assert rows[2].cumulative == pytest.approx(sum(t.share for t in op.by_type[:3]))
    assert rows[3].share == pytest.approx(sum(t.share for t in op.by_type[3:]))
    assert rows[-1].per_iter_s == pytest.approx(op.op_total_per_iter_s)
    with pytest.raises(UsageError):
        top_rows(op, "layer", 3)


def test_profile_report_passes_the_page_self_check_in_chromium(torch_result, tmp_path):
    """The page's own self-check (every chart it lists drew, no script error) in headless Chromium."""
    import shutil
    import subprocess

    pytest.importorskip("matplotlib")
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian package chromium)")
    from infermeter.report.html import render_html

    page = tmp_path / "report.html"
    page.write_text(render_html([torch_result]), encoding="utf-8")
    p = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1280,1600", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    m = re.search(r'<script type="application/json" id="im-selfcheck-result">(.*?)</script>', p.stdout, re.S)
    check = json.loads(m.group(1))
    assert check["status"] == "ok" and check["problems"] == [] and check["errors"] == [], check
    assert f"profile-{torch_result.id}" in [c["slug"] for c in check["charts"]]
