"""Spec resolution: files, import paths, objects, and the errors for each."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infermeter.errors import InfermeterError, ModelLoadError, SpecError
from infermeter.models import BACKENDS, SUFFIXES, load_model
from infermeter.models.python import PythonRunner

torch = pytest.importorskip("torch")

MODULE = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)

class NeedsArgs(torch.nn.Module):
    def __init__(self, width):
        super().__init__()

net = Net()

def make():
    return Net()

def make_fn(scale=2.0):
    return lambda x: x * scale

def predict(x):
    return x.sum(axis=1)

def not_a_model():
    return 42

class Wrapper:
    class Inner:
        model = Net()
"""


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("attr", ["net", "make", "Net", "Wrapper.Inner.model"])
def test_import_path_to_torch(pymodule, attr: str) -> None:
    mod = pymodule(MODULE)
    runner = load_model(f"{mod}:{attr}")
    assert runner.backend == "torch" and runner.spec == f"{mod}:{attr}"
    assert runner(runner.prepare({"x": np.ones((3, 4), np.float32)})).shape == (3, 2)


def test_import_path_to_callables(pymodule) -> None:
    mod = pymodule(MODULE)
    plain = load_model(f"{mod}:predict")
    assert isinstance(plain, PythonRunner)
    assert plain(plain.prepare({"x": np.ones((3, 4))})).tolist() == [4.0, 4.0, 4.0]
    made = load_model(f"{mod}:make_fn")  # a factory (all defaults) returning a callable
    assert isinstance(made, PythonRunner)
    assert made(made.prepare({"x": np.ones(2)})).tolist() == [2.0, 2.0]


def test_import_path_errors(pymodule) -> None:
    mod = pymodule(MODULE)
    with pytest.raises(SpecError, match="not found") as info:
        load_model("no_such_module_xyz:model")
    _one_line(info.value)
    with pytest.raises(SpecError, match="no attribute 'missing'.*it has:.*net"):
        load_model(f"{mod}:missing")
    with pytest.raises(SpecError, match="no attribute 'nope'"):
        load_model(f"{mod}:Wrapper.nope")
    with pytest.raises(SpecError, match="returned an object of type int, not a model"):
        load_model(f"{mod}:not_a_model")
    with pytest.raises(SpecError, match=r"constructor needs arguments \(width\)"):
        load_model(f"{mod}:NeedsArgs")
    broken = pymodule("import definitely_not_installed_pkg\nmodel = 1\n")
    with pytest.raises(ModelLoadError, match="definitely_not_installed_pkg"):
        load_model(f"{broken}:model")
    raising = pymodule("raise RuntimeError('boom at import')\n")
    with pytest.raises(ModelLoadError, match="boom at import"):
        load_model(f"{raising}:model")


def test_objects() -> None:
    class Net(torch.nn.Module):
        def forward(self, x):
            return x + 1

    assert load_model(Net()).backend == "torch"
    assert load_model(Net).backend == "torch"  # a class is a zero-argument factory
    assert load_model(lambda: Net()).backend == "torch"
    assert load_model(lambda x: x).backend == "python"
    with pytest.raises(SpecError, match="not a model"):
        load_model(42)


def test_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="does not exist") as info:
        load_model("missing.onnx")
    _one_line(info.value)
    with pytest.raises(SpecError, match="does not exist"):
        load_model(tmp_path / "missing.pt2")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(SpecError, match=r"'\.h5'.*\.onnx.*\.pt2.*zoo:NAME"):
        load_model("model.h5")
    with pytest.raises(SpecError, match="not a file, an import path or a zoo name"):
        load_model("resnet")
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(SpecError, match="is a directory"):
        load_model("dir.onnx")
    with pytest.raises(SpecError, match="URL"):
        load_model("http://localhost:8000/predict")
    with pytest.raises(SpecError, match="empty"):
        load_model("  ")


def test_unknown_zoo_lists_names() -> None:
    with pytest.raises(SpecError, match="mlp, cnn, bert-mini, bert-base, lstm"):
        load_model("zoo:resnet50")


def test_errors_are_one_exception_tree() -> None:
    assert issubclass(SpecError, InfermeterError) and issubclass(ModelLoadError, InfermeterError)
    assert set(BACKENDS) == {"onnxruntime", "torch", "python"}
    assert SUFFIXES[".pt2"] == "export" and SUFFIXES[".onnx"] == "onnx"


def test_backends_imported_only_when_needed(onnx_file: Path) -> None:
    code = (
        "import sys\n"
        "from infermeter.models import load_model\n"
        "r = load_model(lambda x: x)\n"
        "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules, 'callable'\n"
        f"r = load_model({str(onnx_file)!r})\n"
        "assert r.backend == 'onnxruntime'\n"
        "assert 'torch' not in sys.modules, 'onnx spec imported torch'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
