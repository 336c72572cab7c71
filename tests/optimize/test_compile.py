"""torch.compile as a transform: compiled before it returns (so failures surface here),
eager's outputs, freezing kept on a recompile, bad arguments and failures named."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.optimize.compile import compile_module  # noqa: E402


class MLP(torch.nn.Module):  # its own class: dynamo's compile cache and limit are per forward
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_compiled_matches_eager_and_freezing_survives_a_recompile(monkeypatch) -> None:
    compile_fx = pytest.importorskip("torch._inductor.compile_fx")
    frozen = []
    if hasattr(compile_fx, "freeze"):  # count inductor's freezing passes, first compile and recompile
        real = compile_fx.freeze
        monkeypatch.setattr(compile_fx, "freeze", lambda *a, **k: frozen.append(1) or real(*a, **k))
    torch.manual_seed(0)
    net = MLP().eval()
    x = torch.randn(4, 64)
    compiled, seconds = compile_module(net, (x,))
    assert seconds > 0
    with torch.inference_mode():
        want = net(x)
        assert torch.allclose(compiled(x), want, atol=1e-4, rtol=1e-4)
        x3 = torch.randn(3, 64)  # another batch size: compiled again, still frozen
        assert torch.allclose(compiled(x3), net(x3), atol=1e-4, rtol=1e-4)
    if hasattr(compile_fx, "freeze"):
        assert len(frozen) >= 2


def test_bad_arguments_are_usage_errors() -> None:
    x = torch.randn(2, 64)
    with pytest.raises(UsageError, match="compile mode 'fastest'"):
        compile_module(MLP(), (x,), mode="fastest")
    with pytest.raises(UsageError, match="backend 'nope'"):
        compile_module(MLP(), (x,), backend="nope")


def test_a_forward_that_fails_is_a_transform_error() -> None:
    class Wrong(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(TransformError, match=r"torch.compile \(inductor, mode=default\) failed: .*(shape|dim)") as err:
        compile_module(Wrong(), (torch.randn(2, 63),))
    assert "\n" not in str(err.value)


def test_no_cxx_compiler_is_a_transform_error_naming_it() -> None:
    import torch._inductor.config as inductor_config

    class Small(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x) * 2 + 1

    with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}):
        with pytest.raises(TransformError, match=r"torch.compile \(inductor, mode=default\) failed: .*C\+\+ compiler"):
            compile_module(Small(), (torch.randn(2, 8),))
