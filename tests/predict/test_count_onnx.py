"""The ONNX graph counter: the same small models as the torch tests, exported in the test,
must count the same matmul/conv/recurrent work; plus what only graphs have (symbolic dims,
contrib ops sized by a run, constant folding, unknown node types)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from infermeter.errors import InputError  # noqa: E402
from infermeter.predict._count_common import SOFTMAX_FLOPS  # noqa: E402
from infermeter.predict.count import count_work  # noqa: E402
from infermeter.predict.schema import GemmShape  # noqa: E402

from .test_count_torch import AttnNet, ConvNet, LSTMNet, MLP, gemm_macs2, seeded  # noqa: E402


def export(model: torch.nn.Module, shape: tuple[int, ...], path: Path, *, dynamo: bool = False,
           dynamic: dict[int, str] | None = None) -> Path:
    """Export with a dynamic batch dim (and ``dynamic``'s other dims) named as given."""
    axes = {0: "batch", **(dynamic or {})}
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dims = {i: torch.export.Dim(name, min=2) for i, name in axes.items()}
            torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamo=True, dynamic_shapes={"x": dims},
                              verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamo=False, dynamic_axes={"x": axes})
    return path


def onnx_and_torch(model, shape, tmp_path, batch, **kw):
    path = export(model, shape, tmp_path / "m.onnx", **kw)
    spec = "x:float32[B," + ",".join(str(d) for d in shape[1:]) + "]"
    return count_work(str(path), batch_size=batch), count_work(model, batch_size=batch, inputs=[spec])


def test_mlp_gemm_nodes_match_torch(tmp_path):
    g, t = onnx_and_torch(seeded(MLP), (2, 32), tmp_path, batch=4)
    assert g.backend == "onnx" and "strict" in g.method and g.unknown_ops == []
    assert g.params == t.params and g.param_bytes == t.param_bytes
    gm = [o for o in g.ops if o.op_class == "matmul"]
    assert [o.gemm for o in gm] == [GemmShape(m=4, n=64, k=32), GemmShape(m=4, n=10, k=64)]
    assert sum(o.flops for o in gm) == t.by_class()["matmul"]["flops"]  # Gemm with C: bias included, as linear
    assert [o.weight_bytes for o in gm] == [o.weight_bytes for o in t.ops if o.op_class == "matmul"]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_conv_net_matches_torch(tmp_path, dynamo):
    g, t = onnx_and_torch(seeded(ConvNet), (2, 3, 16, 16), tmp_path, batch=3, dynamo=dynamo)
    for cls in ("conv", "depthwise_conv", "matmul"):
        assert g.by_class()[cls]["flops"] == t.by_class()[cls]["flops"], cls
    (dw,) = [o for o in g.ops if o.op_class == "depthwise_conv"]
    assert dw.gemm == GemmShape(m=3 * 8 * 8, n=1, k=9, batch=8) and "depthwise" in dw.note
    (c1,) = [o for o in g.ops if o.op_class == "conv"]
    assert c1.weight_bytes == (8 * 3 * 9 + 8) * 4 and c1.read_bytes == 3 * 3 * 16 * 16 * 4


def test_attention_decomposed_in_the_graph_matches_torch_gemms(tmp_path):
    g, t = onnx_and_torch(seeded(AttnNet), (2, 10, 32), tmp_path, batch=2)
    # the exporter writes SDPA as MatMul, Softmax, MatMul: the GEMM work must be the same
    assert gemm_macs2(g, ("matmul",)) == gemm_macs2(t, ("matmul", "attention"))
    (sm,) = [o for o in g.ops if o.op == "Softmax"]
    assert sm.op_class == "reduction" and sm.flops == 2 * 4 * 10 * 10 * SOFTMAX_FLOPS
    reshapes = [o for o in g.ops if o.op == "Reshape"]
    assert reshapes and all(o.bytes == 0 and o.note.startswith("view") for o in reshapes)
    folded = [o for o in g.ops if o.note.startswith("folded")]
    assert folded and all(o.bytes == 0 and o.flops == 0 for o in folded)
    assert all("/" in o.name for o in g.ops if o.op == "MatMul")  # node names, as the ORT profiler keys them


def test_lstm_nodes_match_torch(tmp_path):
    g, t = onnx_and_torch(seeded(LSTMNet), (2, 5, 8), tmp_path, batch=3)
    rg = [o for o in g.ops if o.op_class == "recurrent"]
    rt = [o for o in t.ops if o.op_class == "recurrent"]
    assert len(rg) == 4 and [o.gemm for o in rg] == [o.gemm for o in rt]
    assert [o.flops for o in rg] == [o.flops for o in rt]
    assert [o.weight_bytes for o in rg] == [o.weight_bytes for o in rt]
    assert rg[0].name == rg[1].name  # one node, two records: projection and recurrence


def test_symbolic_dim_must_be_set(tmp_path):
    path = export(seeded(MLP), (2, 7, 32), tmp_path / "seq.onnx", dynamic={1: "seq"})
    with pytest.raises(InputError, match=r"dim 'seq' .* set it with --dim seq=N"):
        count_work(str(path), batch_size=2)
    wc = count_work(str(path), batch_size=2, dims={"seq": 16})
    assert wc.dims == {"seq": 16}
    assert [o.gemm for o in wc.ops if o.op_class == "matmul"][0] == GemmShape(m=2 * 16, n=64, k=32)


def save(nodes, inputs, outputs, inits, path: Path, opsets=(("", 17),)) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    onnx.save(model, str(path))
    return path


def test_unknown_node_is_listed_with_bytes(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])
    path = save([helper.make_node("Det", ["x"], ["y"], name="det")], [x], [y], [], tmp_path / "det.onnx")
    wc = count_work(str(path), batch_size=5)
    assert wc.unknown_ops == ["Det"]
    (det,) = wc.ops
    assert not det.known and det.op_class == "unknown" and det.read_bytes == 5 * 9 * 4 and det.write_bytes == 5 * 4


def test_contrib_attention_sized_by_one_onnxruntime_run(tmp_path):
    """com.microsoft.Attention: onnx shape inference cannot size it; one ORT run does."""
    s, hid, heads = 6, 32, 4
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [hid, 3 * hid], rng.standard_normal(hid * 3 * hid).astype(np.float32))
    bias = helper.make_tensor("b", TensorProto.FLOAT, [3 * hid], np.zeros(3 * hid, np.float32))
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="att", domain="com.microsoft", num_heads=heads)
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", s, hid])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    path = save([node, relu], [x], [z], [w, bias], tmp_path / "att.onnx", opsets=(("", 17), ("com.microsoft", 1)))
    b = 2
    wc = count_work(str(path), batch_size=b)
    assert "onnxruntime run" in wc.method and wc.unknown_ops == []
    att, r = wc.ops
    proj = 2 * b * s * hid * 3 * hid + b * s * 3 * hid
    bh, d = b * heads, hid // heads
    assert att.op_class == "attention" and att.gemm == GemmShape(m=s, n=s, k=d, batch=bh)
    assert att.flops == proj + 2 * bh * s * s * d * 2 + bh * s * s * (SOFTMAX_FLOPS + 1)
    assert r.flops == b * s * hid and r.write_bytes == b * s * hid * 4  # sized by the run
