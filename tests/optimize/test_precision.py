"""Native bf16/fp16 support is read from the CPU's flags (given, so any machine can be
asked about), with a reason naming them; a cast copy keeps its outputs close."""

from __future__ import annotations

import pytest

from infermeter.errors import UsageError
from infermeter.optimize.precision import cast_module, dtype_support


@pytest.mark.parametrize("flags, dtype, want, named", [
    ({"avx512f": True, "avx512_bf16": True, "amx_bf16": False}, "bfloat16", True, "avx512_bf16"),
    ({"avx512f": True, "avx512_bf16": False, "amx_bf16": True}, "bf16", True, "amx_bf16"),
    ({"avx2": True, "avx512_bf16": False, "amx_bf16": False}, "bf16", False, "no avx512_bf16/amx_bf16"),
    ({"avx512_bf16": True, "avx512_fp16": False, "amx_fp16": False}, "float16", False, "no avx512_fp16/amx_fp16"),
    ({"avx512_fp16": True}, "fp16", True, "avx512_fp16"),
    ({"amx_fp16": True}, "float16", True, "amx_fp16"),
    ({"neon": True, "asimd": True, "bf16": True, "fphp": False}, "bfloat16", True, "bf16"),
    ({"neon": True, "asimd": True, "bf16": False, "fphp": False, "asimdhp": False}, "fp16", False, "no fphp/asimdhp"),
    ({"neon": True, "asimdhp": True}, "float16", True, "asimdhp"),
])
def test_cpu_support_from_flags(flags, dtype, want, named) -> None:
    ok, reason = dtype_support(dtype, "cpu", flags)
    assert ok is want
    assert named in reason
    if not want:
        assert "converted to float32 and back" in reason


def test_unknown_flags_and_bad_arguments() -> None:
    ok, reason = dtype_support("bf16", cpu_flags={})
    assert not ok and "unknown" in reason
    with pytest.raises(UsageError, match="int8"):
        dtype_support("int8", cpu_flags={"amx_bf16": True})
    with pytest.raises(UsageError, match="device"):
        dtype_support("bf16", "tpu")
    ok, reason = dtype_support("bf16")  # this machine's own flags
    assert isinstance(ok, bool) and "bf16" in reason


def test_cuda_answer_without_a_gpu_is_a_reason_not_an_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert dtype_support("fp16", "cuda")[0] is True
    else:
        ok, reason = dtype_support("bf16", "cuda")
        assert not ok and "no CUDA GPU" in reason


def test_cast_module_to_bf16_keeps_outputs_close_and_the_original() -> None:
    torch = pytest.importorskip("torch")
    from infermeter.inputs import make_batches, parse_input
    from infermeter.models.zoo import BertEncoder

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    x = torch.randn(8, 64)
    for dtype in ("bfloat16", "fp16"):
        half = cast_module(mlp, dtype)
        assert all(p.dtype == getattr(torch, {"fp16": "float16"}.get(dtype, dtype)) for p in half.parameters())
        with torch.inference_mode():
            y = half(x.to(half[0].weight.dtype)).float()
            assert torch.allclose(y, mlp(x), rtol=0.05, atol=0.05)
    assert mlp[0].weight.dtype == torch.float32  # a copy: the original is untouched

    bert = BertEncoder(2, 64, 4, 128).eval()
    specs = [parse_input("input_ids:int64[B,seq]@0:30522"), parse_input("attention_mask:int64[B,seq]@1:2")]
    feed = {k: torch.from_numpy(v) for k, v in make_batches(specs, 2, {"seq": 8}, pool=1)[0][0].items()}
    low = cast_module(bert, "bf16")
    assert low.position_ids.dtype == torch.int64  # integer buffers keep their dtype
    with torch.inference_mode():
        want, got = bert(**feed)[1], low(**feed)[1].float()
    assert torch.nn.functional.cosine_similarity(want.flatten(), got.flatten(), dim=0) > 0.99
    with pytest.raises(UsageError):
        cast_module(mlp, "int4")
