from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from infermeter.errors import BackendUnavailable, InputError, ModelLoadError, UsageError
from infermeter.inputs import make_batches, parse_input
from infermeter.models import load_model, require_inputs
from infermeter.models.base import LoadOptions

torch = pytest.importorskip("torch")
from torch.export import Dim  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _batch(seq: int = 5, batch: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((batch, seq, 8), dtype=np.float32), "mask": rng.integers(0, 2, (batch, seq))}


def _expect(model, batch: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(batch["x"]), torch.from_numpy(batch["mask"])).numpy()


def test_module_object_keyword_call(two_input) -> None:
    runner = load_model(two_input)
    assert runner.backend == "torch" and runner.inputs() == []
    batch = _batch()
    out = runner(runner.prepare(batch))
    runner.sync()
    assert not out.requires_grad  # inference mode
    np.testing.assert_allclose(out.numpy(), _expect(two_input, batch), rtol=1e-5, atol=1e-6)
    d = runner.describe()
    assert d["params"] == sum(p.numel() for p in two_input.parameters())
    assert d["details"]["call"] == "keyword" and d["device"] == "cpu" and d["dtype"] == "float32"
    assert runner.device_memory() is None and runner.event_factory() is None


def test_positional_call_when_names_differ(two_input) -> None:
    runner = load_model(two_input)
    batch = _batch()
    renamed = {"features": batch["x"], "padding": batch["mask"]}
    np.testing.assert_allclose(runner(runner.prepare(renamed)).numpy(), _expect(two_input, batch), rtol=1e-5)
    with pytest.raises(InputError, match="does not take the inputs"):
        runner.prepare({"a": batch["x"], "b": batch["mask"], "c": batch["mask"]})


def test_user_inputs_checked_at_load(two_input) -> None:
    opts = LoadOptions(inputs=(parse_input("a:float32[B,1]"), parse_input("b:float32[B,1]"), parse_input("c:float32[B,1]")))
    with pytest.raises(InputError, match=r"forward\(x, mask\)"):
        load_model(two_input, opts)


def test_torchscript_round_trip(tmp_path: Path, two_input) -> None:
    path = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(two_input), str(path))
    for name in ("two.pt", "two.ts", "two.torchscript"):
        target = tmp_path / name
        if not target.exists():
            target.write_bytes(path.read_bytes())
        runner = load_model(str(target), LoadOptions(threads=1))
        batch = _batch()
        np.testing.assert_allclose(runner(runner.prepare(batch)).numpy(), _expect(two_input, batch), rtol=1e-5)
        d = runner.describe()
        assert d["details"]["format"] == "torchscript" and d["file_size_bytes"] == target.stat().st_size
        assert d["params"] == sum(p.numel() for p in two_input.parameters())
        assert d["details"]["threads_requested"] == 1 and d["details"]["threads_effective"] == 1
        assert d["details"]["call"] == "keyword"
        runner.close()


def test_threads_restored_on_close(two_input) -> None:
    before = torch.get_num_threads()
    runner = load_model(two_input, LoadOptions(threads=1))
    assert torch.get_num_threads() == 1
    runner.close()
    assert torch.get_num_threads() == before


def _export(tmp_path: Path, two_input) -> Path:
    batch, seq = Dim("batch", min=1, max=1024), Dim("seq", min=2, max=512)
    x, mask = torch.randn(2, 5, 8), torch.ones(2, 5, dtype=torch.int64)
    program = torch.export.export(two_input, (x, mask), dynamic_shapes={"x": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}})
    path = tmp_path / "two.pt2"
    torch.export.save(program, str(path))
    return path


def test_exported_program_inputs_and_run(tmp_path: Path, two_input) -> None:
    runner = load_model(str(_export(tmp_path, two_input)))
    specs = runner.inputs()
    assert [s.name for s in specs] == ["x", "mask"]
    x, mask = specs
    assert x.dtype == "float32" and mask.dtype == "int64"
    assert x.shape[0] == "B" and mask.shape[0] == "B" and x.shape[2] == 8
    seq = x.shape[1]
    assert isinstance(seq, str) and seq != "B" and mask.shape[1] == seq  # a shared, named symbolic dim
    batches, _ = make_batches(require_inputs(runner, []), 3, {seq: 6}, seed=1)
    batch = batches[0]
    np.testing.assert_allclose(runner(runner.prepare(batch)).numpy(), _expect(two_input, batch), rtol=1e-5, atol=1e-6)
    d = runner.describe()
    assert d["details"]["format"] == "export" and d["params"] == sum(p.numel() for p in two_input.parameters())
    # batch order does not matter: an exported program is called positionally in its own order
    swapped = {"mask": batch["mask"], "x": batch["x"]}
    np.testing.assert_allclose(runner(runner.prepare(swapped)).numpy(), _expect(two_input, batch), rtol=1e-5, atol=1e-6)


def test_exported_program_with_kwargs() -> None:
    class KW(torch.nn.Module):
        def forward(self, x, *, scale):
            return x * scale

    program = torch.export.export(KW(), (torch.randn(2, 3),), {"scale": torch.randn(2, 3)})
    runner = load_model(program)  # an ExportedProgram object works too
    assert [s.text() for s in runner.inputs()] == ["x:float32[2,3]", "scale:float32[2,3]"]
    a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    assert runner(runner.prepare({"scale": b, "x": a})).sum().item() == 12.0


def test_bfloat16_cast(two_input) -> None:
    runner = load_model(two_input, LoadOptions(dtype="bf16"))
    assert runner.dtype == "bfloat16" and runner.describe()["dtype"] == "bfloat16"
    args, kwargs = runner.prepare(_batch())
    assert kwargs["x"].dtype == torch.bfloat16 and kwargs["mask"].dtype == torch.int64
    assert runner((args, kwargs)).dtype == torch.bfloat16
    with pytest.raises(UsageError, match="float dtype"):
        load_model(two_input, LoadOptions(dtype="int8"))


def test_declared_inputs_attribute() -> None:
    net = torch.nn.Linear(4, 2)
    net.infermeter_inputs = ["input:float32[B,4]"]
    runner = load_model(net)
    assert [s.text() for s in runner.inputs()] == ["input:float32[B,4]"]
    assert runner(runner.prepare({"input": np.ones((3, 4), np.float32)})).shape == (3, 2)


def test_garbage_files_are_model_load_errors(tmp_path: Path) -> None:
    for name in ("bad.pt", "bad.pth", "bad.pt2"):
        p = tmp_path / name
        p.write_bytes(b"\x00\x01garbage" * 20)
        with pytest.raises(ModelLoadError, match=name):
            load_model(str(p))
    z = tmp_path / "zip.pt2"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("x/data.pkl", b"junk")
    with pytest.raises(ModelLoadError, match="zip.pt2"):
        load_model(str(z))


def test_state_dict_checkpoint_hint(tmp_path: Path, two_input) -> None:
    p = tmp_path / "weights.pth"
    torch.save(two_input.state_dict(), str(p))
    with pytest.raises(ModelLoadError, match="torch.save checkpoint"):
        load_model(str(p))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_asked_without_cuda(tmp_path: Path, two_input) -> None:
    for spec in (two_input, "zoo:mlp"):
        with pytest.raises(BackendUnavailable, match="--device cpu"):
            load_model(spec, LoadOptions(device="cuda"))
    path = tmp_path / "two.pt"
    torch.jit.save(torch.jit.script(two_input), str(path))
    with pytest.raises(BackendUnavailable):
        load_model(str(path), LoadOptions(device="cuda:0"))
    with pytest.raises(UsageError, match="unknown device"):
        load_model(two_input, LoadOptions(device="tpu"))


@pytest.mark.cuda
@needs_cuda
def test_cuda_runner(two_input) -> None:
    runner = load_model(two_input, LoadOptions(device="cuda", dtype="float16"))
    assert runner.device.startswith("cuda")
    mem = runner.device_memory()
    assert mem is not None
    mem.reset_peak()
    factory = runner.event_factory()
    start, end = factory(), factory()
    prepared = runner.prepare(_batch())
    start.record()
    out = runner(prepared)
    end.record()
    runner.sync()
    assert out.is_cuda and out.dtype == torch.float16
    assert start.elapsed_time(end) >= 0 and mem.peak_bytes() > 0
    d = runner.describe()["details"]
    assert d["device_name"] and "cudnn_version" in d
    runner.close()
