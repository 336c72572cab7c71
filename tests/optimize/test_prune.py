"""Pruning real small models: magnitude pruning reaches the sparsity asked for and
leaves a plain module that still exports; ONNX pruning zeroes the MatMul weights
and ONNX Runtime still runs the file; structured pruning shrinks the hidden
widths of an MLP, the digits CNN and a BERT encoder while every output keeps its
shape; mistakes are UsageError, impossible requests TransformError.

``$INFERMETER_CACHE`` points at a temporary directory, so the trained digits CNN
is trained once for the module and nothing touches the user's cache.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.models import zoo_digits  # noqa: E402
from infermeter.models.zoo import BertEncoder  # noqa: E402
from infermeter.models.zoo_digits import CACHE_ENV_VAR  # noqa: E402
from infermeter.optimize.prune import (  # noqa: E402
    PruneInfo, prune_onnx_unstructured, prune_structured, prune_unstructured,
)


def _seeded(build, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def _mlp() -> nn.Module:
    return _seeded(lambda: nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)))


def _bert() -> nn.Module:
    return _seeded(lambda: BertEncoder(2, 64, 4, 256))


def _bert_inputs(batch: int = 2, seq: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 30522, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, seq // 2:] = 0  # one padded row, so the mask path is exercised
    return ids, mask


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(2))


def _run(m: nn.Module, *inputs: torch.Tensor):
    with torch.inference_mode():
        return m(*inputs)


def _linear_weights(m: nn.Module) -> list[torch.Tensor]:
    return [l.weight for l in m.modules() if isinstance(l, (nn.Linear, nn.Conv2d))]


def _export(m: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, names: list[str]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice of its own retirement
        torch.onnx.export(m, inputs, str(path), input_names=names, dynamic_axes={n: {0: "B"} for n in names},
                          opset_version=17, dynamo=False)
    return path


# ---------------------------------------------------------------------------- unstructured


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9])
def test_global_magnitude_pruning_reaches_the_sparsity_and_bakes_the_zeros_in(sparsity: float) -> None:
    m = _mlp()
    keys = set(m.state_dict())
    biases = [l.bias.detach().clone() for l in m if isinstance(l, nn.Linear)]
    info = prune_unstructured(m, sparsity)
    assert isinstance(info, PruneInfo)
    weights = _linear_weights(m)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert abs(zeros / total - sparsity) < 0.01
    assert info.zeros_after == zeros and info.zeros_before == 0
    assert info.params_before == info.params_after == sum(p.numel() for p in m.parameters())
    assert info.sparsity == pytest.approx(zeros / total)
    assert f"{total:,}" in info.description and "global" in info.description
    # No masks, no *_orig parameters, no hooks: a plain module with its old state_dict keys.
    assert set(m.state_dict()) == keys
    assert all(not l._forward_pre_hooks for l in m.modules())
    assert all(torch.equal(b, l.bias) for b, l in zip(biases, [l for l in m if isinstance(l, nn.Linear)]))


def test_layer_scope_takes_the_same_fraction_from_every_layer() -> None:
    m = _mlp()
    prune_unstructured(m, 0.4, scope="layer")
    for w in _linear_weights(m):
        assert abs(float((w == 0).float().mean()) - 0.4) < 0.01


def test_global_scope_ranks_across_layers() -> None:
    m = _mlp()
    with torch.no_grad():
        m[4].weight.mul_(100.0)  # the last layer's weights dwarf the others': global ranking spares them
    prune_unstructured(m, 0.5)
    zeros = [float((m[i].weight == 0).float().mean()) for i in (0, 2, 4)]
    assert zeros[2] < 0.05
    # Layer 2 (fan-in 256) starts with smaller weights than layer 0 (fan-in 64), so it loses more.
    assert zeros[1] > 0.5 > zeros[0]


def test_light_pruning_keeps_outputs_close() -> None:
    m = _mlp()
    x = _x(32, 64)
    dense = _run(m, x)
    prune_unstructured(m, 0.1)
    sparse = _run(m, x)
    assert float((sparse - dense).norm() / dense.norm()) < 0.05


def test_pruned_module_still_exports_to_onnx_and_runs(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    m = zoo_digits.architecture("digits-cnn").eval()
    prune_unstructured(m, 0.5)
    x = _x(3, 1, 8, 8)
    path = _export(m, (x,), tmp_path / "cnn.onnx", ["x"])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, _run(m, x).numpy(), rtol=1e-4, atol=1e-5)
    exported = torch.export.export(m, (x,))  # and torch.export sees plain parameters, no hooks
    torch.testing.assert_close(exported.module()(x), _run(m, x))


def test_tied_weights_are_pruned_once_and_stay_tied() -> None:
    a, b = nn.Linear(16, 16), nn.Linear(16, 16)
    b.weight = a.weight
    m = nn.Sequential(a, nn.ReLU(), b)
    prune_unstructured(m, 0.5)
    assert m[0].weight is m[2].weight
    assert abs(float((m[0].weight == 0).float().mean()) - 0.5) < 0.01


@pytest.mark.slow  # trains the digits CNN: a few seconds
def test_magnitude_pruning_of_the_trained_cnn_keeps_its_accuracy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sklearn")
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    m = zoo_digits.trained("digits-cnn")
    _, _, x_test, y_test = zoo_digits.digits_split()
    before = zoo_digits.accuracy(m, x_test, y_test)
    prune_unstructured(m, 0.3)
    after = zoo_digits.accuracy(m, x_test, y_test)
    assert before > 0.9
    assert after >= before - 0.03


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.2, 1.5, float("nan"), True, "0.5"])
def test_sparsity_outside_zero_one_is_a_usage_error(bad) -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        prune_unstructured(_mlp(), bad)


def test_unknown_scope_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="global, layer"):
        prune_unstructured(_mlp(), 0.5, scope="model")


@pytest.mark.parametrize("build", [lambda: nn.Sequential(nn.ReLU(), nn.LayerNorm(8)), lambda: nn.Embedding(10, 4)])
def test_a_module_without_linear_or_conv_is_a_transform_error(build) -> None:
    with pytest.raises(TransformError, match="no Linear or Conv"):
        prune_unstructured(build(), 0.5)
    with pytest.raises(TransformError, match="no Linear or Conv"):
        prune_structured(build(), 0.5, (torch.zeros(2, 8, dtype=torch.long),))


# ---------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    return _export(_mlp(), (_x(2, 64),), tmp_path_factory.mktemp("prune") / "mlp.onnx", ["x"])


def _weights(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            for name in node.input:
                if name in inits and len(inits[name].dims) == 2:
                    out[name] = numpy_helper.to_array(inits[name])
    return out


def test_onnx_pruning_zeroes_each_weight_tensor_and_ort_still_runs_it(mlp_onnx: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out = prune_onnx_unstructured(mlp_onnx, tmp_path / "pruned.onnx", 0.5)
    assert out.path == tmp_path / "pruned.onnx" and out.path.is_file()
    assert out.step == "prune-unstructured(sparsity=0.5, per-tensor L1)"
    assert out.size_before > 0 and out.size_after > 0
    before, after = _weights(mlp_onnx), _weights(out.path)
    assert len(after) == 3 and set(after) == set(before)
    for name, w in after.items():
        assert abs(float((w == 0).mean()) - 0.5) < 0.01
        kept = before[name][w != 0]  # the survivors are the largest magnitudes, unchanged
        np.testing.assert_array_equal(kept, w[w != 0])
        assert np.abs(kept).min() >= np.abs(before[name][w == 0]).max()
    x = _x(4, 64).numpy()
    dense = ort.InferenceSession(str(mlp_onnx), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    sparse = ort.InferenceSession(str(out.path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert sparse.shape == dense.shape == (4, 10) and np.isfinite(sparse).all()


def test_onnx_pruning_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        prune_onnx_unstructured(tmp_path / "absent.onnx", tmp_path / "out.onnx", 0.5)


def test_onnx_pruning_rejects_a_bad_sparsity(mlp_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="between 0 and 1"):
        prune_onnx_unstructured(mlp_onnx, tmp_path / "out.onnx", 1.0)


def test_onnx_pruning_of_an_unreadable_file_is_a_transform_error(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\xff\x13")
    with pytest.raises(TransformError, match="bad.onnx"):
        prune_onnx_unstructured(bad, tmp_path / "out.onnx", 0.5)


def test_onnx_pruning_of_a_graph_without_weights_is_a_transform_error(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(TransformError, match="no float MatMul/Gemm/Conv weight"):
        prune_onnx_unstructured(path, tmp_path / "out.onnx", 0.5)


# ---------------------------------------------------------------------------- structured


def test_structured_pruning_shrinks_the_mlp_hidden_units_and_keeps_the_classes() -> None:
    m = _mlp()
    x = _x(5, 64)
    pruned, info = prune_structured(m, 0.5, (x[:2],))
    assert [l.out_features for l in pruned if isinstance(l, nn.Linear)] == [128, 64, 10]
    assert [l.in_features for l in pruned if isinstance(l, nn.Linear)] == [64, 128, 64]
    assert _run(pruned, x).shape == (5, 10)
    assert info.params_after < info.params_before == sum(p.numel() for p in m.parameters())
    assert info.params_after == sum(p.numel() for p in pruned.parameters())
    assert info.sparsity == pytest.approx(1 - info.params_after / info.params_before)
    assert "256→128" in info.description
    # The original is untouched.
    assert [l.out_features for l in m if isinstance(l, nn.Linear)] == [256, 128, 10]


def test_structured_pruning_keeps_the_most_important_units() -> None:
    m = _mlp()
    with torch.no_grad():
        m[0].weight[:8].mul_(50.0)  # eight hidden units with by far the largest weights
    x = _x(5, 64)
    pruned, _ = prune_structured(m, 0.9, (x,))
    kept = pruned[0].weight
    big = m[0].weight[:8]
    assert all(any(torch.equal(row, k) for k in kept) for row in big)


def test_structured_pruning_of_the_digits_cnn_shrinks_convs_and_the_hidden_layer(tmp_path: Path) -> None:
    m = zoo_digits.architecture("digits-cnn").eval()
    x = _x(3, 1, 8, 8)
    pruned, info = prune_structured(m, 0.5, (x,), importance="l1")
    convs = [l for l in pruned.modules() if isinstance(l, nn.Conv2d)]
    linears = [l for l in pruned.modules() if isinstance(l, nn.Linear)]
    assert [c.out_channels for c in convs] == [16, 32]
    assert convs[1].in_channels == 16
    assert linears[0].in_features == 32 * 4 * 4  # the flattened conv output followed the channels
    assert [l.out_features for l in linears] == [64, 10]
    assert _run(pruned, x).shape == (3, 10)
    assert info.params_after < info.params_before
    # Still a plain module the TorchScript exporter takes.
    ort = pytest.importorskip("onnxruntime")
    path = _export(pruned, (x,), tmp_path / "cnn.onnx", ["x"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, _run(pruned, x).numpy(), rtol=1e-4, atol=1e-5)


def test_structured_pruning_of_bert_shrinks_only_the_ffn() -> None:
    m = _bert()
    inputs = _bert_inputs()
    ref = _run(m, *inputs)
    pruned, info = prune_structured(m, 0.5, inputs)
    for layer in pruned.layers:
        assert layer.ffn_in.out_features == 128 and layer.ffn_out.in_features == 128
        assert (layer.qkv.in_features, layer.qkv.out_features) == (64, 192)
        assert (layer.attn_out.in_features, layer.attn_out.out_features) == (64, 64)
        assert layer.ffn_out.out_features == 64 and layer.ffn_norm.normalized_shape == (64,)
    assert pruned.word.embedding_dim == 64 and pruned.pooler.out_features == 64
    got = _run(pruned, *inputs)
    assert [t.shape for t in got] == [t.shape for t in ref] == [(2, 8, 64), (2, 64)]
    assert all(torch.isfinite(t).all() for t in got)
    # Other batch and sequence sizes run too: nothing was specialised to the example shapes.
    other = _run(pruned, *_bert_inputs(3, 5))
    assert [t.shape for t in other] == [(3, 5, 64), (3, 64)]
    assert info.params_after < info.params_before
    assert "ffn_in" in info.description


def test_structured_pruning_leaves_the_original_and_its_training_mode_alone() -> None:
    m = _mlp().train()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    pruned, _ = prune_structured(m, 0.25, (_x(2, 64),))
    assert m.training and pruned.training
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
    assert all(p.requires_grad for p in pruned.parameters())


def test_structured_pruning_in_inference_mode_works() -> None:
    m = _mlp()
    with torch.inference_mode():
        x = _x(2, 64)
        pruned, info = prune_structured(m, 0.5, (x,))
    assert info.params_after < info.params_before


def test_a_model_with_nothing_to_shrink_is_a_transform_error() -> None:
    m = nn.Sequential(nn.Linear(8, 4)).eval()  # its only width is the output
    with pytest.raises(TransformError, match="no width it can shrink"):
        prune_structured(m, 0.5, (_x(2, 8),))


def test_inputs_the_model_cannot_take_are_a_transform_error() -> None:
    with pytest.raises(TransformError, match="does not run on the example inputs"):
        prune_structured(_mlp(), 0.5, (_x(2, 7),))


@pytest.mark.parametrize("bad", [0, 1, -0.5, 2.0])
def test_structured_ratio_outside_zero_one_is_a_usage_error(bad) -> None:
    with pytest.raises(UsageError, match="pruning ratio"):
        prune_structured(_mlp(), bad, (_x(2, 64),))


def test_unknown_importance_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="l2, l1"):
        prune_structured(_mlp(), 0.5, (_x(2, 64),), importance="taylor")
