"""Steps applied in order to a real small model: the runner that comes out answers
like the original (or as the transform says it should), exported files are
reused by later candidates, misplaced steps are one-line errors, and recipe
files round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from infermeter.errors import TransformError, UsageError  # noqa: E402
from infermeter.inputs import parse_input  # noqa: E402
from infermeter.models import LoadOptions  # noqa: E402
from infermeter.models.torch import TorchRunner  # noqa: E402
from infermeter.optimize.recipe import BuildContext, build, read_recipe, write_recipe  # noqa: E402
from infermeter.optimize.schema import Recipe, Step  # noqa: E402

SPECS = [parse_input("x:float32[B,64]")]


def _base() -> TorchRunner:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    return TorchRunner(net, "mlp", LoadOptions(inputs=tuple(SPECS)), declared=SPECS)


def _ctx(tmp_path: Path, name: str = "c") -> BuildContext:
    return BuildContext(base="mlp", specs=SPECS, dims={}, workdir=tmp_path / name, cache=tmp_path / "cache")


def _out(runner, x: np.ndarray) -> np.ndarray:
    out = runner(runner.prepare({"x": x}))
    out = out[0] if isinstance(out, (list, tuple)) else out
    return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)


X = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)


def test_export_then_int8_runs_on_onnxruntime_and_reuses_the_export(tmp_path):
    base = _base()
    ref = _out(base, X)
    export = Step(op="export-onnx", params={"opset": 17})
    a = build(base, [export], {"ort_level": "basic"}, _ctx(tmp_path, "a"))
    assert a.runner.backend == "onnxruntime" and a.artifact_format == "onnx"
    assert a.runner.describe()["details"]["graph_optimization_level"].endswith("BASIC")
    np.testing.assert_allclose(_out(a.runner, X), ref, rtol=1e-4, atol=1e-5)
    q = build(base, [export, Step(op="quantize-dynamic", params={"per_channel": False, "weight_type": "int8"})], {},
              _ctx(tmp_path, "q"))
    assert q.size_bytes < a.size_bytes  # int8 weights
    assert np.abs(_out(q.runner, X) - ref).max() < 0.1 * np.abs(ref).max()
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 2  # one export, one quantized file: the export was reused


def test_torch_steps_keep_a_module_and_save_it(tmp_path):
    base = _base()
    built = build(base, [Step(op="prune-unstructured", params={"sparsity": 0.5})], {"threads": 1}, _ctx(tmp_path))
    assert built.runner.backend == "torch" and built.artifact is not None and built.artifact.is_file()
    assert built.steps[0].params["achieved"] == pytest.approx(0.5, abs=0.01)
    weights = torch.cat([built.runner.model[i].weight.flatten() for i in (0, 2)])
    assert float((weights == 0).float().mean()) == pytest.approx(0.5, abs=0.01)  # global: over every Linear weight
    assert float((base.model[0].weight == 0).float().mean()) < 0.01  # the base model is untouched


def test_misplaced_or_unknown_steps_are_one_line_errors(tmp_path):
    base = _base()
    with pytest.raises(TransformError, match="export-onnx before"):
        build(base, [Step(op="quantize-dynamic")], {}, _ctx(tmp_path))
    with pytest.raises(UsageError, match="unknown step"):
        build(base, [Step(op="sparsify")], {}, _ctx(tmp_path))
    with pytest.raises(UsageError, match="runtime setting"):
        build(base, [], {"turbo": True}, _ctx(tmp_path))
    with pytest.raises(TransformError, match="distillation needs rows"):
        build(base, [Step(op="distill", params={"student": "narrow"})], {}, _ctx(tmp_path))


def test_recipe_files_round_trip_and_bad_ones_name_the_problem(tmp_path):
    r = Recipe(base="zoo:digits-cnn", candidate="ort-int8-static",
               steps=[Step(op="export-onnx", params={"opset": 17}), Step(op="quantize-static", params={"method": "minmax"})],
               runtime={"batch_size": 1}, infermeter="0.1.0")
    path = write_recipe(r, tmp_path / "recipe.yaml")
    assert read_recipe(path) == r
    (tmp_path / "bad.yaml").write_text("base: m\nsteps:\n  - op: sparsify\n")
    with pytest.raises(UsageError, match="unknown step 'sparsify'"):
        read_recipe(tmp_path / "bad.yaml")
    (tmp_path / "worse.yaml").write_text("steps: [1, 2\n")
    with pytest.raises(UsageError, match="not a valid recipe"):
        read_recipe(tmp_path / "worse.yaml")
    with pytest.raises(UsageError, match="does not exist"):
        read_recipe(tmp_path / "none.yaml")
