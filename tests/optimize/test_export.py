"""Export a real torch model to ONNX and through ONNX Runtime's optimiser: same outputs,
dynamic batch, fused graph, failures as TransformError."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.inputs import parse_input  # noqa: E402
from infermeter.optimize.export import export_onnx, optimize_onnx  # noqa: E402


class TwoInput(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 32)
        self.norm = torch.nn.LayerNorm(32)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x, mask):
        h = self.norm(torch.nn.functional.gelu(self.fc1(x))) * mask.unsqueeze(-1).to(x.dtype)
        return self.fc2(h.sum(1))


SPECS = [parse_input("x:float32[B,seq,8]"), parse_input("mask:int64[B,seq]@0:2")]


def _run(path, feed):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_export_matches_torch_at_other_batch_and_seq(tmp_path) -> None:
    torch.manual_seed(0)
    net = TwoInput().eval()
    out = export_onnx(net, SPECS, tmp_path / "m.onnx", dims={"seq": 5})
    assert out.step.startswith("export-onnx") and out.size_after > 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 11, 8)).astype(np.float32)  # batch 7, seq 11: both dynamic
    mask = rng.integers(0, 2, (7, 11)).astype(np.int64)
    want = net(torch.from_numpy(x), torch.from_numpy(mask)).detach().numpy()
    np.testing.assert_allclose(_run(out.path, {"x": x, "mask": mask}), want, rtol=1e-4, atol=1e-5)


def test_graph_optimisation_levels_keep_outputs_and_fuse(tmp_path) -> None:
    torch.manual_seed(0)
    net = TwoInput().eval()
    src = export_onnx(net, SPECS, tmp_path / "m.onnx", dims={"seq": 5}).path
    feed = {"x": np.ones((2, 3, 8), np.float32), "mask": np.ones((2, 3), np.int64)}
    ref = _run(src, feed)
    nodes = {}
    for level in ("basic", "extended"):
        opt = optimize_onnx(src, tmp_path / f"{level}.onnx", level=level)
        assert opt.step == f"ort-graph-optimization({level})"
        np.testing.assert_allclose(_run(opt.path, feed), ref, rtol=1e-4, atol=1e-5)
        nodes[level] = len(onnx.load(str(opt.path)).graph.node)
    assert nodes["extended"] <= nodes["basic"] < len(onnx.load(str(src)).graph.node)  # fusions remove nodes


def test_failures_are_clear(tmp_path) -> None:
    class Bad(torch.nn.Module):
        def forward(self, x, mask):
            return {"a set is not a tensor": set()}

    with pytest.raises(TransformError, match="export to ONNX failed"):
        export_onnx(Bad(), SPECS, tmp_path / "bad.onnx", dims={"seq": 2})
    with pytest.raises(UsageError, match="--input"):
        export_onnx(TwoInput(), [], tmp_path / "x.onnx")
    with pytest.raises(UsageError, match="no such file"):
        optimize_onnx(tmp_path / "missing.onnx", tmp_path / "o.onnx")
    with pytest.raises(UsageError, match="level"):
        ok = export_onnx(TwoInput(), SPECS, tmp_path / "ok.onnx", dims={"seq": 2}).path
        optimize_onnx(ok, tmp_path / "o.onnx", level="max")
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"garbage")
    with pytest.raises(TransformError, match="graph optimisation"):
        optimize_onnx(garbage, tmp_path / "o.onnx")
