"""Small real models made in the tests: a torch MLP with two inputs, exported to
ONNX, TorchScript and torch.export files; and a helper that writes an importable
module for ``module:attr`` specs."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


class TwoInput(torch.nn.Module):
    """x[B, seq, 8] and mask[B, seq] → [B, 4]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(x)) * mask.unsqueeze(-1).to(x.dtype)
        return self.fc2(h.sum(1))


def make_two_input() -> TwoInput:
    torch.manual_seed(0)
    return TwoInput().eval()


def example_args(batch: int = 2, seq: int = 5) -> tuple:
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, seq, 8, generator=g), torch.randint(0, 2, (batch, seq), generator=g)


@pytest.fixture
def two_input() -> TwoInput:
    return make_two_input()


@pytest.fixture
def onnx_file(tmp_path: Path, two_input: TwoInput) -> Path:
    pytest.importorskip("onnx")
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated, and quick
        warnings.simplefilter("ignore")
        _export(two_input, path)
    return path


def _export(two_input: TwoInput, path: Path) -> None:
    torch.onnx.export(
        two_input,
        example_args(),
        str(path),
        dynamo=False,
        input_names=["x", "mask"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}, "y": {0: "batch"}},
        opset_version=17,
    )


@pytest.fixture
def pymodule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write ``source`` as a fresh module in tmp_path, importable from the cwd; return its name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    made: list[str] = []

    def write(source: str) -> str:
        name = f"im_testmod_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        made.append(name)
        return name

    yield write
    for name in made:
        sys.modules.pop(name, None)
