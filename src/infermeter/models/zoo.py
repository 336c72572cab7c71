"""Built-in models written in code: nothing is downloaded.

Most have random, seeded weights: a known workload to compare machines and
settings with, and real shapes for tests; two processes build the same model.
``digits-mlp`` and ``digits-cnn`` are trained (seconds, then cached) on
scikit-learn's digits, so ``optimize`` has a real accuracy to report; they live
in ``zoo_digits`` and are imported only when used, so the rest of the zoo does
not need scikit-learn. Parameter counts come from building the architecture on
the ``meta`` device (no memory used, no training).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from ..errors import BackendUnavailable, SpecError
from ..inputs import InputSpec, parse_input

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailable(f"the zoo is built with torch, which is not installed ({_exc}); pip install infermeter[torch]") from None

__all__ = ["ZooEntry", "entries", "get", "names", "MLP", "ResNet", "BasicBlock", "BertEncoder", "LSTMModel"]

SEED = 0


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model. ``dims`` are the defaults of the symbolic dims of ``inputs``
    (``--dim`` overrides them); ``build()`` makes the model, seeded, on the CPU."""

    name: str
    description: str
    params: int
    inputs: list[InputSpec]
    dims: dict[str, int] = field(default_factory=dict)
    build: Callable[[], "nn.Module"] = field(default=lambda: nn.Identity(), repr=False, compare=False)

    @property
    def spec(self) -> str:
        return f"zoo:{self.name}"


# ---------------------------------------------------------------------------- models


class MLP(nn.Module):
    def __init__(self, sizes: tuple[int, ...] = (784, 1024, 1024, 10)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ResNet(nn.Module):
    """ResNet of BasicBlocks; ``layers=(2, 2, 2, 2)`` is ResNet-18 (11.7 M params)."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        inplanes = 64
        for i, n in enumerate(layers):
            planes = 64 * 2**i
            blocks = [BasicBlock(inplanes, planes, 1 if i == 0 else 2)]
            blocks += [BasicBlock(planes, planes) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, intermediate)
        self.ffn_out = nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        a = a.transpose(1, 2).reshape(b, s, h)
        x = self.attn_norm(x + self.attn_out(a))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class BertEncoder(nn.Module):
    """A BERT encoder (post-norm, GELU, learned positions) with a pooler.

    Returns ``(last_hidden_state, pooled)``. Padding is masked additively, so a row
    with every token masked gives finite numbers rather than NaN.
    """

    def __init__(
        self,
        layers: int = 4,
        hidden: int = 256,
        heads: int = 4,
        intermediate: int = 1024,
        vocab: int = 30522,
        max_positions: int = 512,
        type_vocab: int = 2,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not a multiple of heads {heads}")
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        self.token_type = nn.Embedding(type_vocab, hidden)
        self.embed_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(_BertLayer(hidden, heads, intermediate) for _ in range(layers))
        self.pooler = nn.Linear(hidden, hidden)
        self.register_buffer("position_ids", torch.arange(max_positions).unsqueeze(0), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        s = input_ids.shape[1]
        x = self.word(input_ids) + self.position(self.position_ids[:, :s]) + self.token_type.weight[0]
        x = self.embed_norm(x)
        mask = None
        if attention_mask is not None:
            keep = attention_mask[:, None, None, :].to(x.dtype)
            mask = (1.0 - keep) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


class LSTMModel(nn.Module):
    """A stacked LSTM over ``x[B, seq, features]`` and a linear head on the last step."""

    def __init__(self, features: int = 128, hidden: int = 512, layers: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


# ---------------------------------------------------------------------------- the table


def _digits_arch(name: str) -> Callable[[], nn.Module]:
    """The untrained network, for counting parameters; imported only when called."""

    def factory() -> nn.Module:
        from . import zoo_digits

        return zoo_digits.architecture(name)

    return factory


def _digits_trained(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from . import zoo_digits

        return zoo_digits.trained(name)

    return build


# Entries whose build() returns trained weights rather than seeded random ones.
_TRAINED: dict[str, Callable[[], nn.Module]] = {
    "digits-mlp": _digits_trained("digits-mlp"),
    "digits-cnn": _digits_trained("digits-cnn"),
}


def _bert_inputs() -> list[InputSpec]:
    return [parse_input("input_ids:int64[B,seq]@0:30522"), parse_input("attention_mask:int64[B,seq]@1:2")]


# name → (description, inputs, default dims, factory)
_TABLE: dict[str, tuple[str, Callable[[], list[InputSpec]], dict[str, int], Callable[[], nn.Module]]] = {
    "mlp": (
        "MLP 784→1024→1024→10 (ReLU)",
        lambda: [parse_input("x:float32[B,784]")],
        {},
        MLP,
    ),
    "cnn": (
        "ResNet-18 shaped CNN (BasicBlock [2,2,2,2], 1000 classes)",
        lambda: [parse_input("x:float32[B,3,224,224]")],
        {},
        ResNet,
    ),
    "bert-mini": (
        "BERT encoder: 4 layers, hidden 256, 4 heads, FFN 1024, vocab 30522",
        _bert_inputs,
        {"seq": 128},
        functools.partial(BertEncoder, 4, 256, 4, 1024),
    ),
    "bert-base": (
        "BERT encoder: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522",
        _bert_inputs,
        {"seq": 128},
        functools.partial(BertEncoder, 12, 768, 12, 3072),
    ),
    "lstm": (
        "2-layer LSTM, hidden 512, over 128 features, linear head to 10",
        lambda: [parse_input("x:float32[B,seq,128]")],
        {"seq": 64},
        LSTMModel,
    ),
    "digits-mlp": (
        "MLP 64→256→128→10 trained on scikit-learn digits (8×8; trained once, cached; needs infermeter[optimize])",
        lambda: [parse_input("x:float32[B,64]")],
        {},
        _digits_arch("digits-mlp"),
    ),
    "digits-cnn": (
        "CNN conv32-conv64-pool-fc128-fc10 trained on scikit-learn digits (trained once, cached; needs infermeter[optimize])",
        lambda: [parse_input("x:float32[B,1,8,8]")],
        {},
        _digits_arch("digits-cnn"),
    ),
}


def names() -> list[str]:
    return list(_TABLE)


def get(name: str) -> ZooEntry:
    """The entry called ``name``; :class:`SpecError` listing the zoo when there is none."""
    key = name.strip().lower()
    if key not in _TABLE:
        raise SpecError(f"unknown zoo model '{name}'; use zoo:NAME with NAME one of {', '.join(_TABLE)}")
    return _entry(key)


def entries() -> list[ZooEntry]:
    return [_entry(k) for k in _TABLE]


@functools.lru_cache(maxsize=None)
def _entry(key: str) -> ZooEntry:
    description, inputs, dims, factory = _TABLE[key]
    return ZooEntry(
        name=key,
        description=description,
        params=_count_params(factory),
        inputs=inputs(),
        dims=dict(dims),
        build=_TRAINED.get(key) or functools.partial(_build, factory),
    )


def _count_params(factory: Callable[[], nn.Module]) -> int:
    with torch.device("meta"):
        model = factory()
    return sum(int(p.numel()) for p in model.parameters())


def _build(factory: Callable[[], nn.Module], seed: int = SEED) -> nn.Module:
    # Seeded without touching the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    return model.eval()
