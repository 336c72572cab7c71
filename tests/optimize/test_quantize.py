"""ONNX Runtime quantization of a real small model: smaller file, int8 in the graph,
outputs close to the float model's, failures as TransformError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.optimize.quantize import quantize_dynamic, quantize_static  # noqa: E402


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 10)).eval()
    path = tmp_path_factory.mktemp("q") / "mlp.onnx"
    torch.onnx.export(net, (torch.randn(2, 64),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "B"}}, dynamo=False)
    return path


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_dynamic_quantization_shrinks_weights_and_keeps_outputs_close(mlp_onnx, tmp_path) -> None:
    out = quantize_dynamic(mlp_onnx, tmp_path / "dyn.onnx")
    assert out.size_after < 0.4 * out.size_before  # int8 weights: about a quarter of fp32
    assert "quantize-dynamic" in out.step
    assert _ops(out.path) & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    ref, got = _run(mlp_onnx, x), _run(out.path, x)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.99 and (ref.argmax(1) == got.argmax(1)).mean() >= 0.9


def test_static_quantization_inserts_qdq_from_calibration_rows(mlp_onnx, tmp_path) -> None:
    rng = np.random.default_rng(1)
    calib = {"x": rng.standard_normal((64, 64)).astype(np.float32)}
    out = quantize_static(mlp_onnx, tmp_path / "qdq.onnx", calib, method="minmax", batch_size=16)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(out.path) and "rows=64" in out.step
    x = rng.standard_normal((32, 64)).astype(np.float32)
    ref, got = _run(mlp_onnx, x), _run(out.path, x)
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.98


def test_bad_inputs_are_clear(mlp_onnx, tmp_path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        quantize_dynamic(tmp_path / "missing.onnx", tmp_path / "o.onnx")
    with pytest.raises(UsageError, match="calibration method"):
        quantize_static(mlp_onnx, tmp_path / "o.onnx", {"x": np.zeros((4, 64), np.float32)}, method="best")
    with pytest.raises(UsageError, match="needs calibration data"):
        quantize_static(mlp_onnx, tmp_path / "o.onnx", {})
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(TransformError, match="dynamic int8 quantization of 'garbage.onnx' failed"):
        quantize_dynamic(garbage, tmp_path / "o.onnx")
