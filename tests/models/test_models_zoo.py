from __future__ import annotations

import numpy as np
import pytest

from infermeter.inputs import make_batches
from infermeter.models import list_zoo, load_model, require_inputs
from infermeter.models.base import LoadOptions

torch = pytest.importorskip("torch")
from infermeter.models import zoo  # noqa: E402

SMALL_DIMS = {"seq": 8}


def test_list_zoo() -> None:
    entries = list_zoo()
    assert [e.name for e in entries] == ["mlp", "cnn", "bert-mini", "bert-base", "lstm", "digits-mlp", "digits-cnn"]
    by_name = {e.name: e for e in entries}
    assert by_name["mlp"].params == 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    assert by_name["cnn"].params == 11_689_512  # ResNet-18
    assert by_name["bert-base"].params == 109_482_240  # BERT-base with pooler
    assert [s.text() for s in by_name["cnn"].inputs] == ["x:float32[B,3,224,224]"]
    assert [s.text() for s in by_name["bert-mini"].inputs] == [
        "input_ids:int64[B,seq]@0:30522",
        "attention_mask:int64[B,seq]@1:2",
    ]
    assert by_name["bert-mini"].dims == {"seq": 128} and by_name["lstm"].dims == {"seq": 64}
    assert by_name["mlp"].spec == "zoo:mlp"


def test_list_zoo_does_not_allocate_weights() -> None:
    psutil = pytest.importorskip("psutil")
    zoo._entry.cache_clear()
    proc = psutil.Process()
    before = proc.memory_info().rss
    entries = list_zoo()
    grown = proc.memory_info().rss - before
    total = sum(e.params for e in entries) * 4
    assert grown < 64 * 2**20 < total, f"list_zoo grew RSS by {grown / 2**20:.0f} MiB"


@pytest.mark.parametrize("name", ["mlp", "cnn", "bert-mini", "bert-base", "lstm"])
def test_every_entry_builds_and_runs(name: str) -> None:
    runner = load_model(f"zoo:{name}")
    entry = zoo.get(name)
    d = runner.describe()
    assert d["params"] == entry.params == sum(p.numel() for p in runner.model.parameters())
    assert d["details"]["zoo"] == name and runner.inputs() == entry.inputs
    assert runner.default_dims == entry.dims
    if entry.dims:
        assert d["details"]["default_dims"] == entry.dims
    specs = require_inputs(runner, [])
    batch = make_batches(specs, 2, {**runner.default_dims, **SMALL_DIMS}, seed=0)[0][0]
    out = runner(runner.prepare(batch))
    runner.sync()
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape[0] == 2 and torch.isfinite(first).all()
    runner.close()


def test_build_is_seeded_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b = zoo.get("mlp").build(), zoo.get("mlp").build()
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_bert_masks_padding() -> None:
    runner = load_model("zoo:bert-mini")
    ids = np.random.default_rng(0).integers(0, 30522, (2, 6))
    mask = np.ones((2, 6), dtype=np.int64)
    mask[1] = 0  # a row with nothing to attend to stays finite
    hidden, pooled = runner(runner.prepare({"input_ids": ids, "attention_mask": mask}))
    assert hidden.shape == (2, 6, 256) and pooled.shape == (2, 256) and torch.isfinite(hidden).all()
    # padding does not change the unpadded tokens
    mask2 = np.ones((1, 8), dtype=np.int64)
    mask2[0, 6:] = 0
    ids2 = np.concatenate([ids[:1], np.zeros((1, 2), dtype=ids.dtype)], axis=1)
    padded, _ = runner(runner.prepare({"input_ids": ids2, "attention_mask": mask2}))
    torch.testing.assert_close(padded[0, :6], hidden[0], rtol=1e-4, atol=1e-4)


def test_zoo_in_half_precision() -> None:
    runner = load_model("zoo:mlp", LoadOptions(dtype="bfloat16", threads=1))
    out = runner(runner.prepare({"x": np.ones((2, 784), np.float32)}))
    assert out.dtype == torch.bfloat16 and runner.describe()["dtype"] == "bfloat16"
    runner.close()


def test_public_names() -> None:
    import infermeter.models as models
    from infermeter.models import ZooEntry

    assert ZooEntry is zoo.ZooEntry
    assert set(models.__all__) == {
        "load_model", "list_zoo", "require_inputs", "BACKENDS", "SUFFIXES", "Runner", "LoadOptions", "DeviceMemory",
        "import_backend",
    }


def test_import_backend_names_the_library_a_spec_needs():
    import infermeter.models as models

    assert models.import_backend("zoo:mlp") == "torch"
    assert models.import_backend("model.pt2") == "torch"
    assert models.import_backend("a/b/model.onnx") == "onnxruntime"
    assert models.import_backend("pkg.mod:fn") is None
    assert models.import_backend(print) is None
