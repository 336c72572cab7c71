"""save_torch writes a file load_model reads back with the same outputs: a torch.export
program with a dynamic batch, or a TorchScript trace where export cannot capture the model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.inputs import make_batches, parse_input  # noqa: E402
from infermeter.models import load_model  # noqa: E402
from infermeter.optimize.export import save_torch  # noqa: E402

BERT_SPECS = [parse_input("input_ids:int64[B,seq]@0:30522"), parse_input("attention_mask:int64[B,seq]@1:2")]


def _outputs(runner, batch):
    out = runner(runner.prepare(batch))
    return [t.detach().float().numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def _eager(module, specs, batch, by_name):
    tensors = {s.name: torch.from_numpy(batch[s.name]) for s in specs}
    with torch.inference_mode():
        out = module(**tensors) if by_name else module(*tensors.values())
    return [t.float().numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def test_mlp_round_trip_as_pt2_at_other_batch_sizes(tmp_path) -> None:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).eval()
    specs = [parse_input("x:float32[B,64]")]
    path, fmt = save_torch(mlp, specs, tmp_path / "mlp")
    assert (path.name, fmt) == ("mlp.pt2", "pt2")
    runner = load_model(path)
    try:
        assert runner.describe()["details"]["format"] == "export"
        assert runner.inputs()[0].shape == ("B", 64)  # batch dynamic, features fixed
        for b in (3, 5):
            batch = make_batches(specs, b, seed=b, pool=1)[0][0]
            for got, want in zip(_outputs(runner, batch), _eager(mlp, specs, batch, by_name=False)):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        runner.close()


def test_bert_round_trip_with_dynamic_batch_and_sequence(tmp_path) -> None:
    from infermeter.models.zoo import BertEncoder

    torch.manual_seed(0)
    bert = BertEncoder(2, 64, 4, 128).eval()
    path, fmt = save_torch(bert, BERT_SPECS, tmp_path / "bert.pt2", dims={"seq": 8})
    assert fmt == "pt2" and path.is_file()
    runner = load_model(str(path))
    try:
        names = [s.name for s in runner.inputs()]
        assert names == ["input_ids", "attention_mask"]
        for b, seq in ((3, 8), (5, 12)):
            batch = make_batches(BERT_SPECS, b, {"seq": seq}, seed=b, pool=1)[0][0]
            got, want = _outputs(runner, batch), _eager(bert, BERT_SPECS, batch, by_name=True)
            assert [g.shape for g in got] == [(b, seq, 64), (b, 64)]
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    finally:
        runner.close()


class DataDependent(torch.nn.Module):
    """A branch on a tensor's value: torch.export refuses it, a trace bakes in the branch taken."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        if x.sum() > -1e9:
            return self.fc(x) * 2
        return self.fc(x)


def test_falls_back_to_torchscript_where_export_fails(tmp_path) -> None:
    torch.manual_seed(0)
    net = DataDependent().eval()
    specs = [parse_input("x:float32[B,8]")]
    path, fmt = save_torch(net, specs, tmp_path / "dd.pt2")
    assert (path.name, fmt) == ("dd.pt", "torchscript")
    assert not (tmp_path / "dd.pt2").exists()
    runner = load_model(path)
    try:
        assert runner.describe()["details"]["format"] == "torchscript"
        batch = make_batches(specs, 3, seed=1, pool=1)[0][0]
        np.testing.assert_allclose(_outputs(runner, batch)[0], _eager(net, specs, batch, by_name=True)[0],
                                   rtol=1e-5, atol=1e-5)
    finally:
        runner.close()


def test_failures_name_both_reasons(tmp_path) -> None:
    class Bad(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # export fails here, and a set is no output a trace can return
                return {"a set is not a tensor": set()}
            return x

    specs = [parse_input("x:float32[B,8]@0:1")]
    with pytest.raises(TransformError, match="saving the PyTorch model failed: torch.export: .*; TorchScript trace: "):
        save_torch(Bad(), specs, tmp_path / "bad")
    assert not list(tmp_path.iterdir())
    with pytest.raises(UsageError, match="--input"):
        save_torch(Bad(), [], tmp_path / "x")
    with pytest.raises(UsageError, match="example batch"):
        save_torch(Bad(), specs, tmp_path / "x", example_batch=1)
