"""The torch dispatch counter against FLOPs and bytes worked out by hand from small real models."""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from infermeter.errors import InputError, UsageError  # noqa: E402
from infermeter.predict._count_common import CELL_FLOPS, SOFTMAX_FLOPS, gemm_flops  # noqa: E402
from infermeter.predict.count import count_work  # noqa: E402
from infermeter.predict.schema import GemmShape, WorkCount  # noqa: E402

F32 = 4


# ---------------------------------------------------------------------------- models (shared with the ONNX tests)


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(32, 64)
        self.fc2 = torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class ConvNet(torch.nn.Module):
    """A conv, batch norm, ReLU, a depthwise conv (stride 2), global pool and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.dw = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(F.relu(self.bn(self.c1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Block(torch.nn.Module):
    """x[B, L, 32] → QKV linear → SDPA over 4 heads of 8 → output linear."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.out(a)


class AttnNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class LSTMNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


class FFT(torch.nn.Module):
    """A linear and an FFT: aten._fft_r2c has no formula and no decomposition."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(self.lin(x), dim=-1).abs()


def seeded(cls: type) -> torch.nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def by_name(wc: WorkCount, name: str, op: str | None = None) -> list:
    return [o for o in wc.ops if o.name == name and (op is None or op in o.op)]


def gemm_macs2(wc: WorkCount, classes: tuple[str, ...]) -> float:
    """2 x MACs of every GEMM-shaped op of these classes (attention: QK^T and PV, D == Dv here)."""
    total = 0.0
    for o in wc.ops:
        if o.op_class in classes and o.gemm is not None:
            total += gemm_flops(o.gemm) * (2 if o.op_class == "attention" else 1)
    return total


# ---------------------------------------------------------------------------- tests


def test_linear_layers_exact_flops_bytes_and_names():
    b = 4
    wc = count_work(seeded(MLP), batch_size=b, inputs=["x:float32[B,32]"])
    assert wc.backend == "torch" and wc.batch_size == b and wc.unknown_ops == []
    assert wc.params == 32 * 64 + 64 + 64 * 10 + 10 and wc.param_bytes == wc.params * F32
    (fc1,) = by_name(wc, "fc1")
    assert fc1.op_class == "matmul" and fc1.gemm == GemmShape(m=b, n=64, k=32)
    assert fc1.flops == 2 * b * 32 * 64 + b * 64  # 2 x MACs + the bias add
    assert fc1.weight_bytes == (32 * 64 + 64) * F32
    assert fc1.read_bytes == b * 32 * F32 and fc1.write_bytes == b * 64 * F32
    assert fc1.intensity == pytest.approx(fc1.flops / fc1.bytes)
    (fc2,) = by_name(wc, "fc2")
    assert fc2.flops == 2 * b * 64 * 10 + b * 10
    (relu,) = [o for o in wc.ops if "relu" in o.op]
    assert relu.op_class == "elementwise" and relu.flops == b * 64 and relu.name == "(root)"
    assert wc.flops == fc1.flops + fc2.flops + relu.flops
    assert wc.flops_per_sample == wc.flops / b
    assert "2 x multiply-accumulates" in wc.flops_convention


def test_conv_net_with_depthwise_conv():
    b, h = 2, 16
    wc = count_work(seeded(ConvNet), batch_size=b, inputs=["x:float32[B,3,16,16]"])
    (c1,) = by_name(wc, "c1")
    assert c1.op_class == "conv" and c1.gemm == GemmShape(m=b * h * h, n=8, k=3 * 9, batch=1)
    assert c1.flops == 2 * b * 8 * h * h * 3 * 9 + b * 8 * h * h
    (dw,) = by_name(wc, "dw")
    ho = h // 2
    assert dw.op_class == "depthwise_conv" and dw.gemm == GemmShape(m=b * ho * ho, n=1, k=9, batch=8)
    assert dw.flops == 2 * b * 8 * ho * ho * 9 + b * 8 * ho * ho
    assert dw.weight_bytes == (8 * 9 + 8) * F32
    (bn,) = by_name(wc, "bn")
    assert bn.op_class == "normalization" and bn.flops == 2 * b * 8 * h * h  # eval: scale and shift
    assert bn.weight_bytes == 4 * 8 * F32  # weight, bias, running mean and var: buffers are weights too
    (pool,) = [o for o in wc.ops if "adaptive_avg_pool" in o.op]
    assert pool.op_class == "reduction" and pool.flops > 0


def test_attention_counted_explicitly():
    b, n, heads, d = 2, 10, 4, 8
    wc = count_work(seeded(AttnNet), batch_size=b, inputs=["x:float32[B,10,32]"])
    (att,) = [o for o in wc.ops if o.op_class == "attention"]
    assert "scaled_dot_product_attention" in att.op and att.name == "block"
    bh = b * heads
    assert att.gemm == GemmShape(m=n, n=n, k=d, batch=bh)
    assert att.flops == 2 * bh * n * n * d * 2 + bh * n * n * (SOFTMAX_FLOPS + 1)
    assert att.flops > 0  # torch's own FlopCounterMode gives 0 for the CPU kernel
    assert att.read_bytes == 3 * bh * n * d * F32 and att.write_bytes == bh * n * d * F32
    assert {o.name for o in wc.ops if o.op_class == "matmul"} == {"block.qkv", "block.out"}
    views = [o for o in wc.ops if o.note == "view"]
    assert views and all(o.bytes == 0 and o.flops == 0 for o in views)  # recorded, for per-op overhead


def test_lstm_is_projection_plus_sequential_recurrence():
    b, t, i, h = 3, 5, 8, 16
    wc = count_work(seeded(LSTMNet), batch_size=b, inputs=["x:float32[B,5,8]"])
    rec = {o.name: o for o in wc.ops if o.op_class == "recurrent"}
    assert set(rec) == {"lstm.l0.ih", "lstm.l0.hh", "lstm.l1.ih", "lstm.l1.hh"}
    assert rec["lstm.l0.ih"].gemm == GemmShape(m=b * t, n=4 * h, k=i, batch=1)
    assert rec["lstm.l0.ih"].flops == 2 * b * t * 4 * h * i + b * t * 4 * h
    assert rec["lstm.l1.ih"].gemm == GemmShape(m=b * t, n=4 * h, k=h, batch=1)
    hh = rec["lstm.l0.hh"]
    assert hh.gemm == GemmShape(m=b, n=4 * h, k=h, batch=t) and "SEQUENTIAL" in hh.note
    assert hh.flops == 2 * b * t * 4 * h * h + b * t * 4 * h + b * t * h * CELL_FLOPS["lstm"]
    assert rec["lstm.l0.ih"].weight_bytes == (4 * h * i + 4 * h) * F32
    assert hh.weight_bytes == (4 * h * h + 4 * h) * F32


def test_bidirectional_gru():
    b, t, i, h = 2, 6, 4, 8
    gru = torch.nn.GRU(i, h, bidirectional=True, batch_first=True)
    wc = count_work(gru, batch_size=b, inputs=[f"x:float32[B,{t},{i}]"])
    names = {o.name for o in wc.ops if o.op_class == "recurrent"}
    assert names == {"l0.ih", "l0.hh", "l0_reverse.ih", "l0_reverse.hh"}
    (ih,) = by_name(wc, "l0_reverse.ih")
    assert ih.gemm == GemmShape(m=b * t, n=3 * h, k=i) and ih.flops == 2 * b * t * 3 * h * i + b * t * 3 * h


def test_fused_transformer_fast_path_counts_like_the_unfused_one():
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True).eval()
    fused = count_work(layer, batch_size=2, inputs=["src:float32[B,10,32]"])
    assert any("_transformer_encoder_layer_fwd" in o.op for o in fused.ops)  # our hooks keep the fast path
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        plain = count_work(layer, batch_size=2, inputs=["src:float32[B,10,32]"])
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert not any("_transformer_encoder_layer_fwd" in o.op for o in plain.ops)
    assert fused.flops == plain.flops
    for cls in ("matmul", "attention", "normalization"):
        assert fused.by_class()[cls]["flops"] == plain.by_class()[cls]["flops"]


def test_unknown_op_is_listed_with_bytes_not_silently_zero():
    wc = count_work(seeded(FFT), batch_size=2, inputs=["x:float32[B,16]"])
    assert wc.unknown_ops == ["aten._fft_r2c.default"]
    (fft,) = [o for o in wc.ops if "_fft_r2c" in o.op]
    assert not fft.known and fft.op_class == "unknown" and "not counted" in fft.note
    assert fft.read_bytes == 2 * 16 * F32 and fft.write_bytes == 2 * 9 * 8  # complex64 out


def test_exported_program_ops_named_by_module_path(tmp_path):
    model = seeded(MLP)
    ep = torch.export.export(model, (torch.randn(2, 32),), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    path = tmp_path / "mlp.pt2"
    torch.export.save(ep, str(path))
    wc = count_work(str(path), batch_size=4)
    assert "torch.export graph" in wc.method
    assert {o.name for o in wc.ops if o.op_class == "matmul"} == {"fc1", "fc2"}
    eager = count_work(model, batch_size=4, inputs=["x:float32[B,32]"])
    assert wc.flops == eager.flops


def test_python_callable_and_symbolic_dim_are_usage_errors():
    with pytest.raises(UsageError, match="ONNX or PyTorch"):
        count_work(lambda x: x, inputs=["x:float32[B,4]"])
    with pytest.raises(InputError, match=r"set it with --dim seq=N"):
        count_work(seeded(MLP), inputs=["x:float32[B,seq]"])


def resnet18_macs() -> int:
    """ResNet-18 at 224x224 from its architecture: convolutions and the classifier."""
    macs = 112 * 112 * 64 * 3 * 7 * 7  # stem
    size, cin = 56, 64
    for stage, planes in enumerate((64, 128, 256, 512)):
        if stage:
            size //= 2
        for block in range(2):
            first_in = cin if block == 0 else planes
            macs += size * size * planes * first_in * 9 + size * size * planes * planes * 9
            if block == 0 and first_in != planes:
                macs += size * size * planes * first_in  # 1x1 downsample
        cin = planes
    return macs + 512 * 1000


def test_zoo_cnn_matches_resnet18_analytic_count():
    t0 = time.perf_counter()
    wc = count_work("zoo:cnn", batch_size=1)
    assert time.perf_counter() - t0 < 30  # a few seconds; generous for busy machines
    expected = 2 * resnet18_macs()
    assert expected == pytest.approx(3.64e9, rel=0.01)  # the published 1.82 GMACs
    assert gemm_macs2(wc, ("conv", "matmul")) == expected
    assert wc.flops == pytest.approx(expected, rel=0.01)  # + BN, ReLU, adds, pooling, fc bias
    assert wc.unknown_ops == []


def test_zoo_bert_mini_matches_its_architecture():
    b, s, hid, ffn, heads, layers = 8, 128, 256, 1024, 4, 4
    t0 = time.perf_counter()
    wc = count_work("zoo:bert-mini", batch_size=b)
    assert time.perf_counter() - t0 < 30
    tok = b * s
    linear = (2 * tok * hid * 3 * hid + tok * 3 * hid) + (2 * tok * hid * hid + tok * hid)
    linear += (2 * tok * hid * ffn + tok * ffn) + (2 * tok * ffn * hid + tok * hid)
    pooler = 2 * b * hid * hid + b * hid
    bh = b * heads
    attention = 2 * bh * s * s * (hid // heads) * 2 + bh * s * s * (SOFTMAX_FLOPS + 2)  # scale and mask
    by_class = wc.by_class()
    assert by_class["matmul"]["flops"] == layers * linear + pooler
    assert by_class["attention"]["flops"] == layers * attention
    assert wc.dims == {"seq": 128} and wc.unknown_ops == []
    (word,) = by_name(wc, "word")
    assert word.weight_bytes == tok * hid * F32  # the rows gathered, not the 30522-row table
