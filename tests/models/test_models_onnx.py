from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infermeter.errors import BackendUnavailable, InputError, ModelLoadError, UsageError
from infermeter.inputs import make_batches
from infermeter.models import load_model, require_inputs
from infermeter.models.base import LoadOptions

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402,F401


def test_inputs_from_graph(onnx_file: Path) -> None:
    runner = load_model(str(onnx_file))
    assert runner.backend == "onnxruntime"
    assert [s.text() for s in runner.inputs()] == ["x:float32[B,seq,8]", "mask:int64[B,seq]"]


def test_outputs_match_torch(onnx_file: Path, two_input) -> None:
    runner = load_model(onnx_file)  # a Path works as well as a str
    specs = require_inputs(runner, [])
    batch = make_batches(specs, 3, {"seq": 7}, seed=3)[0][0]
    (y,) = runner(runner.prepare(batch))
    runner.sync()
    want = two_input(torch.from_numpy(batch["x"]), torch.from_numpy(batch["mask"])).detach().numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_prepare_casts_and_makes_contiguous(onnx_file: Path) -> None:
    runner = load_model(onnx_file)
    x = np.asfortranarray(np.random.default_rng(0).standard_normal((2, 3, 8)))  # float64, F-order
    prepared = runner.prepare({"x": x, "mask": np.ones((2, 3), dtype=np.int32)})
    assert prepared["x"].dtype == np.float32 and prepared["x"].flags.c_contiguous
    assert prepared["mask"].dtype == np.int64
    runner(prepared)
    with pytest.raises(InputError, match="lacks input"):
        runner.prepare({"x": x})


def test_describe_and_threads(onnx_file: Path, two_input) -> None:
    runner = load_model(onnx_file, LoadOptions(threads=1))
    d = runner.describe()
    assert d["backend"] == "onnxruntime" and d["device"] == "cpu" and d["dtype"] == "float32"
    assert d["params"] == sum(p.numel() for p in two_input.parameters())
    assert d["file_size_bytes"] == onnx_file.stat().st_size
    det = d["details"]
    assert det["providers"] == ["CPUExecutionProvider"]
    assert det["intra_op_threads_requested"] == 1 and det["intra_op_threads_effective"] == 1
    assert det["onnxruntime_version"] == ort.__version__ and det["opset"] == 17

    default = load_model(onnx_file).describe()["details"]
    assert default["intra_op_threads_requested"] == "default"
    assert isinstance(default["intra_op_threads_effective"], int) and default["intra_op_threads_effective"] >= 1


def _graph(path: Path, shape: list, elem=TensorProto.FLOAT) -> Path:
    x = helper.make_tensor_value_info("x", elem, shape)
    y = helper.make_tensor_value_info("y", elem, None)
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_unknown_dims_get_names(tmp_path: Path) -> None:
    path = _graph(tmp_path / "relu.onnx", [None, "seq", None, 4])
    runner = load_model(path)
    assert [s.text() for s in runner.inputs()] == ["x:float32[B,seq,x_dim2,4]"]
    out = runner(runner.prepare({"x": -np.ones((2, 3, 5, 4), np.float32)}))
    assert out[0].shape == (2, 3, 5, 4) and out[0].max() == 0


def test_fixed_batch_stays_fixed(tmp_path: Path) -> None:
    runner = load_model(_graph(tmp_path / "fixed.onnx", [1, 3]))
    assert [s.text() for s in runner.inputs()] == ["x:float32[1,3]"]


def test_float16_graph_and_dtype_option(tmp_path: Path) -> None:
    path = _graph(tmp_path / "half.onnx", ["n", 3], TensorProto.FLOAT16)
    runner = load_model(path, LoadOptions(dtype="fp16"))
    assert runner.dtype == "float16" and runner.inputs()[0].text() == "x:float16[B,3]"
    prepared = runner.prepare({"x": np.ones((2, 3), np.float32)})
    assert prepared["x"].dtype == np.float16
    with pytest.raises(UsageError, match="does not convert ONNX"):
        load_model(path, LoadOptions(dtype="float32"))


def test_garbage_onnx_is_model_load_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx model\xff" * 10)
    with pytest.raises(ModelLoadError, match="bad.onnx") as info:
        load_model(bad)
    assert "\n" not in str(info.value)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_cuda_without_cuda_provider(onnx_file: Path) -> None:
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        load_model(onnx_file, LoadOptions(device="cuda"))
    with pytest.raises(BackendUnavailable, match="not available"):
        load_model(onnx_file, LoadOptions(providers=("TensorrtExecutionProvider",)))


@pytest.mark.cuda
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_io_binding(onnx_file: Path, two_input) -> None:
    runner = load_model(onnx_file, LoadOptions(device="cuda"))
    assert runner.device.startswith("cuda") and runner.describe()["details"]["providers"][0] == "CUDAExecutionProvider"
    batch = make_batches(require_inputs(runner, []), 2, {"seq": 4})[0][0]
    binding = runner(runner.prepare(batch))
    runner.sync()
    y = binding.copy_outputs_to_cpu()[0]
    want = two_input(torch.from_numpy(batch["x"]), torch.from_numpy(batch["mask"])).detach().numpy()
    np.testing.assert_allclose(y, want, rtol=1e-3, atol=1e-4)


def test_external_data_counted_not_loaded(tmp_path: Path) -> None:
    w = onnx.numpy_helper.from_array(np.ones((256, 64), np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.bin", size_threshold=0)
    runner = load_model(path)
    d = runner.describe()
    assert d["params"] == 256 * 64
    assert d["details"]["external_data_bytes"] == (tmp_path / "ext.bin").stat().st_size >= 256 * 64 * 4
    assert d["file_size_bytes"] == path.stat().st_size + (tmp_path / "ext.bin").stat().st_size
    (out,) = runner(runner.prepare({"x": np.ones((2, 256), np.float32)}))
    assert out.shape == (2, 64) and float(out[0, 0]) == 256.0
