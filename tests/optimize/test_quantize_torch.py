"""torchao int8 quantization of a real PyTorch model: a copy whose Linear weights are int8
tensor subclasses, outputs close to the float model's, failures as TransformError."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchao")

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.optimize.quantize import TORCH_QUANT_KINDS, quantize_torch  # noqa: E402


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()


def _int8_inside(t) -> bool:
    """Whether a tensor subclass holds int8 data (its inner tensors, as it flattens itself)."""
    names, _ = t.__tensor_flatten__()
    return any(getattr(t, n).dtype == torch.int8 for n in names)


@pytest.mark.parametrize("kind", TORCH_QUANT_KINDS)
def test_quantized_copy_is_close_and_int8(kind) -> None:
    net = _mlp()
    x = torch.randn(16, 64)
    q = quantize_torch(net, kind)
    for layer in (q[0], q[2]):
        assert type(layer.weight) not in (torch.Tensor, torch.nn.Parameter)
        assert _int8_inside(layer.weight)
    assert type(net[0].weight) is torch.nn.Parameter and net[0].weight.dtype == torch.float32  # original untouched
    with torch.inference_mode():
        want, got = net(x), q(x)
    assert got.shape == want.shape
    assert torch.nn.functional.cosine_similarity(want.flatten(), got.flatten(), dim=0) > 0.99


def test_bert_int8_dynamic_runs_close() -> None:
    from infermeter.models.zoo import BertEncoder

    torch.manual_seed(0)
    bert = BertEncoder(2, 64, 4, 128).eval()
    ids = torch.randint(0, 30522, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.int64)
    q = quantize_torch(bert, "int8-dynamic")
    with torch.inference_mode():
        want, got = bert(ids, mask)[0], q(ids, mask)[0]
    assert torch.nn.functional.cosine_similarity(want.flatten(), got.flatten(), dim=0) > 0.99


def test_failures_are_clear() -> None:
    with pytest.raises(UsageError, match="int4"):
        quantize_torch(_mlp(), "int4")
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(TransformError, match="torchao int8-weight-only quantization failed: no nn.Linear layers"):
        quantize_torch(conv, "int8-weight-only")
