"""The accuracy half of ``infermeter optimize``: eval files, outputs, metrics, fidelity.

Metrics are checked against hand-computed values and, where installed, against
scikit-learn/scipy; models are a real small torch MLP and its ONNX export.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

from infermeter.errors import InputError, ModelRunError, UsageError
from infermeter.inputs import parse_input
from infermeter.models import LoadOptions, load_model, require_inputs
from infermeter.optimize.evaluate import (
    METRICS,
    EvalData,
    Evaluation,
    accuracy,
    evaluate,
    f1,
    fidelity,
    load_eval,
    mae,
    model_outputs,
    mse,
    resolve_metric,
    top5,
)

X = parse_input("x:float32[B,8]")


# --------------------------------------------------------------------------- metrics


def test_accuracy_hand_example() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(scores, np.array([1, 0, 0, 1])) == 0.5
    assert accuracy(scores, np.array([1.0, 0.0, 1.0, 0.0])) == 1.0  # whole floats are class ids


def test_ties_go_to_the_lower_class_index_in_accuracy_and_top5() -> None:
    # Row 0: every class tied. Argmax says class 0, so class 0 is rank 0 and class 6 rank 6.
    scores = np.zeros((2, 8))
    scores[1] = [0, 1, 1, 1, 1, 1, 1, 0]  # six-way tie for the top
    assert accuracy(scores[:1], np.array([0])) == 1.0
    assert accuracy(scores[:1], np.array([3])) == 0.0
    assert top5(scores[:1], np.array([4])) == 1.0  # rank 4
    assert top5(scores[:1], np.array([5])) == 0.0  # rank 5
    assert top5(scores[1:], np.array([5])) == 1.0  # classes 1..5 win the tie
    assert top5(scores[1:], np.array([6])) == 0.0
    assert top5(scores[1:], np.array([0])) == 0.0
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, size=(200, 10)).astype(np.float32)  # many ties
    y = rng.integers(0, 10, size=200)
    from infermeter.optimize.metrics import _topk

    assert _topk(s, y, 1, "top1") == accuracy(s, y) == float(np.mean(s.argmax(1) == y))
    # Against a stable ranking: descending score, ascending index among ties.
    order = np.lexsort((np.broadcast_to(np.arange(10), s.shape), -s), axis=1)
    assert top5(s, y) == float(np.mean([y[i] in order[i, :5] for i in range(200)]))


def test_top5_with_fewer_than_five_classes_counts_every_row() -> None:
    assert top5(np.array([[0.2, 0.5, 0.3]]), np.array([0])) == 1.0


def test_macro_f1_hand_example() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    scores = np.eye(3)[pred]
    # class 0: tp1 fp1 fn1 → 0.5; class 1: tp2 fp1 fn0 → 0.8; class 2: tp1 fp0 fn1 → 2/3
    assert f1(scores, y) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_macro_f1_counts_classes_only_predicted_or_only_labelled() -> None:
    y = np.array([0, 0, 1])
    scores = np.eye(4)[[0, 3, 1]]  # class 3 predicted, never labelled: F1 0 in the mean
    assert f1(scores, y) == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_macro_f1_matches_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(5):
        s = rng.standard_normal((300, 7))
        y = rng.integers(0, 7, size=300)
        assert f1(s, y) == pytest.approx(metrics.f1_score(y, s.argmax(1), average="macro"), abs=1e-12)


def test_mse_mae_against_numpy() -> None:
    rng = np.random.default_rng(2)
    out, y = rng.standard_normal((20, 3)), rng.standard_normal((20, 3))
    assert mse(out, y) == pytest.approx(np.mean((out - y) ** 2))
    assert mae(out, y) == pytest.approx(np.mean(np.abs(out - y)))
    assert mse(out[:, :1], y[:, 0]) == pytest.approx(np.mean((out[:, 0] - y[:, 0]) ** 2))  # [n] labels, [n,1] head


def test_resolve_builtins_and_direction() -> None:
    assert {m: METRICS[m].higher_is_better for m in METRICS} == {
        "accuracy": True, "top5": True, "f1": True, "mse": False, "mae": False,
    }
    assert resolve_metric("Accuracy") is METRICS["accuracy"]


def test_custom_metric_resolves_from_module_function(pymodule) -> None:
    name = pymodule(
        """
        import numpy as np
        def neg_mse(outputs, labels):
            return -float(np.mean((outputs - labels) ** 2))
        def loss(outputs, labels):
            return float(np.mean(np.abs(outputs - labels)))
        loss.higher_is_better = False
        """
    )
    m = resolve_metric(f"{name}:neg_mse")
    assert m.higher_is_better and m.fn(np.ones(3), np.zeros(3)) == -1.0
    assert resolve_metric(f"{name}:loss").higher_is_better is False


@pytest.mark.parametrize("spec", ["accurcy", "top-5", "no_such_module_xyz:fn", "json:no_such_fn", "json:__doc__"])
def test_unknown_or_unresolvable_metric_is_a_usage_error_listing_builtins(spec: str) -> None:
    with pytest.raises(UsageError) as e:
        resolve_metric(spec)
    msg = str(e.value)
    assert spec in msg and "accuracy, top5, f1, mse, mae" in msg and "\n" not in msg


def test_labels_of_the_wrong_shape() -> None:
    scores = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(InputError, match=r"one-hot.*argmax"):
        accuracy(scores, np.eye(3)[[0, 1, 2, 0]])
    with pytest.raises(InputError, match=r"shape \(4,\)"):
        top5(scores, np.array([0, 1, 2]))
    with pytest.raises(InputError, match=r"\[0, 3\)"):
        f1(scores, np.array([0, 1, 2, 3]))
    with pytest.raises(InputError, match="not whole"):
        accuracy(scores, np.array([0.5, 1, 2, 0]))
    with pytest.raises(InputError, match=r"outputs' shape \(4, 3\)"):
        mse(scores, np.zeros((4, 2)))
    with pytest.raises(UsageError, match="mse or mae"):
        accuracy(np.zeros((4, 1)), np.zeros(4))


# --------------------------------------------------------------------------- fidelity


def test_fidelity_of_outputs_against_themselves() -> None:
    ref = np.random.default_rng(3).standard_normal((50, 10)).astype(np.float32)
    fid = fidelity(ref, ref.copy())
    assert fid["rows"] == 50 and fid["top1_agreement"] == 1.0
    assert fid["max_abs_diff"] == 0.0 and fid["mean_abs_diff"] == 0.0
    assert fid["cosine"] == pytest.approx(1.0, abs=1e-12)


def test_fidelity_against_a_perturbed_copy() -> None:
    spatial = pytest.importorskip("scipy.spatial.distance")
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((40, 5))
    cand = ref.copy()
    cand[7, 2] += 0.5
    cand[:10] = -cand[:10]  # flips the argmax of (almost surely) every one of those rows
    fid = fidelity(ref, cand)
    expected_diff = np.abs(ref - cand)
    assert fid["max_abs_diff"] == pytest.approx(expected_diff.max())
    assert fid["mean_abs_diff"] == pytest.approx(expected_diff.mean())
    assert fid["top1_agreement"] == pytest.approx(np.mean(ref.argmax(1) == cand.argmax(1)))
    assert fid["top1_agreement"] == pytest.approx(30 / 40)
    cos = np.mean([1 - spatial.cosine(ref[i], cand[i]) for i in range(40)])
    assert fid["cosine"] == pytest.approx(cos)
    # A pure offset: known diffs, no class view for a one-column output.
    fid = fidelity(ref[:, :1], ref[:, :1] + 0.25)
    assert "top1_agreement" not in fid
    assert fid["max_abs_diff"] == pytest.approx(0.25) and fid["mean_abs_diff"] == pytest.approx(0.25)


def test_fidelity_covers_every_output_and_zero_rows() -> None:
    a, b = np.zeros((3, 2)), np.ones((3, 4))
    fid = fidelity([a, b], [a, b * 2])
    assert fid["outputs"] == 2 and fid["max_abs_diff"] == 1.0 and fid["mean_abs_diff"] == pytest.approx(4 / 6)
    assert fid["cosine"] == pytest.approx(1.0)  # same direction
    assert fidelity(a, a)["cosine"] == 1.0 and fidelity(a, a + 1)["cosine"] == 0.0
    with pytest.raises(ModelRunError, match="shape"):
        fidelity(a, b)
    with pytest.raises(ModelRunError, match="2 outputs"):
        fidelity(a, [a, b])


# --------------------------------------------------------------------------- eval files


def _npz(tmp_path: Path, name: str = "eval.npz", **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_load_eval_names_labels_and_casts(tmp_path: Path) -> None:
    x = np.random.default_rng(5).standard_normal((6, 8))  # float64 → float32
    data = load_eval(_npz(tmp_path, x=x, y=np.arange(6)), [parse_input("inp:float32[B,8]")])  # 'x' alias
    assert data.n == 6 and set(data.inputs) == {"inp"} and data.inputs["inp"].dtype == np.float32
    assert data.labels is not None and list(data.labels) == list(range(6))
    two = [parse_input("x:float32[B,seq,8]"), parse_input("mask:int64[B,seq]")]
    data = load_eval(_npz(tmp_path, "two.npz", x=np.zeros((3, 5, 8)), mask=np.ones((3, 5), np.int32)), two)
    assert data.labels is None and data.inputs["mask"].dtype == np.int64


@pytest.mark.parametrize(
    "arrays, specs, match",
    [
        ({"inp": np.zeros((4, 8))}, [X], r"no array for input 'x'; it holds inp"),
        ({"inp": np.zeros((4, 8))}, [parse_input("img:float32[B,8]")], r"input 'img' \(or 'x'\); it holds inp"),
        ({"x": np.zeros((4, 7))}, [X], r"'x' has rows of shape \(7,\) but the model wants \[8\]"),
        ({"x": np.zeros((4, 2, 4))}, [X], r"'x' has rows of shape \(2, 4\)"),
        ({"x": np.zeros((4, 8)), "labels": np.zeros(5)}, [X], r"row axis 0.*x: 4, labels: 5"),
        ({"x": np.zeros((4, 8)), "label": np.zeros(4)}, [X], r"'label' that name no model input"),
        ({"x": np.zeros((4, 8)), "labels": np.zeros(4), "y": np.zeros(4)}, [X], "both 'labels' and 'y'"),
        ({"x": np.zeros((4, 8), np.float32)}, [parse_input("x:int64[B,8]")], r"float32 but the model wants int64.*astype"),
        ({"x": np.array(["a"] * 4)}, [X], r"'x' is <U1"),
        (
            {"x": np.zeros((2, 5, 8)), "mask": np.zeros((2, 6), np.int64)},
            [parse_input("x:float32[B,seq,8]"), parse_input("mask:int64[B,seq]")],
            r"dim 'seq' size 5 in 'x' but 6 in 'mask'",
        ),
        ({"x": np.zeros((4, 8))}, [], "inputs are unknown"),
    ],
)
def test_bad_eval_files_are_one_line_input_errors(tmp_path: Path, arrays, specs, match) -> None:
    with pytest.raises(InputError, match=match) as e:
        load_eval(_npz(tmp_path, **arrays), specs)
    assert "\n" not in str(e.value)


def test_missing_or_unreadable_eval_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"does not exist.*numpy.savez"):
        load_eval(tmp_path / "nope.npz", [X])
    np.save(tmp_path / "x.npy", np.zeros((3, 8)))
    with pytest.raises(InputError, match="not a .npz"):
        load_eval(tmp_path / "x.npy", [X])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot read"):
        load_eval(tmp_path / "bad.npz", [X])


# --------------------------------------------------------------------------- real models


torch = pytest.importorskip("torch")


class MLP(torch.nn.Module):
    infermeter_inputs = ("x:float32[B,8]",)

    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.fc1, self.fc2, self.extra = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4), extra

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return (self.fc2(h), h) if self.extra else self.fc2(h)


@pytest.fixture
def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP().eval()


@pytest.fixture
def eval_file(tmp_path: Path, mlp: MLP) -> Path:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((37, 8)).astype(np.float32)
    with torch.no_grad():
        truth = mlp(torch.from_numpy(x)).argmax(1).numpy()
    labels = truth.copy()
    labels[:5] = (labels[:5] + 1) % 4  # five wrong answers: accuracy 32/37
    return _npz(tmp_path, x=x, labels=labels)


def test_torch_mlp_and_its_onnx_export_through_load_model(tmp_path: Path, mlp: MLP, eval_file: Path) -> None:
    pytest.importorskip("onnxruntime")
    runner = load_model(mlp)
    data = load_eval(eval_file, require_inputs(runner, []))
    res = evaluate(runner, data, batch_size=10)  # last batch of 7
    assert (res.metric, res.metric_source, res.rows, res.higher_is_better) == ("accuracy", "auto", 37, True)
    assert res.value == pytest.approx(32 / 37) and "class scores" in (res.note or "")
    assert evaluate(runner, data, metric="top5").value == 1.0
    reference = model_outputs(runner, data, batch_size=64)
    assert isinstance(reference, np.ndarray) and reference.shape == (37, 4) and reference.dtype == np.float32

    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mlp, (torch.zeros(2, 8),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    onnx_runner = load_model(str(path))
    onnx_data = load_eval(eval_file, require_inputs(onnx_runner, []))
    res = evaluate(onnx_runner, onnx_data, metric="f1", reference=reference, batch_size=8)
    assert res.metric == "f1" and res.metric_source == "given"
    assert res.value == pytest.approx(f1(reference, onnx_data.labels))
    fid = res.fidelity or {}
    assert fid["top1_agreement"] == 1.0 and fid["max_abs_diff"] < 1e-5 and fid["cosine"] == pytest.approx(1.0)
    # Without labels: fidelity only, and JSON-friendly.
    unlabelled = EvalData(dict(onnx_data.inputs))
    res = evaluate(onnx_runner, unlabelled, reference=reference)
    assert res.metric is None and res.labels is False and res.fidelity["rows"] == 37
    assert Evaluation.model_validate(json.loads(res.model_dump_json())) == res


def test_tuple_outputs_first_for_metrics_all_for_fidelity(eval_file: Path) -> None:
    torch.manual_seed(0)
    runner = load_model(MLP(extra=True).eval())
    data = load_eval(eval_file, require_inputs(runner, []))
    outs = model_outputs(runner, data, batch_size=16)
    assert isinstance(outs, list) and [o.shape for o in outs] == [(37, 4), (37, 16)]
    res = evaluate(runner, data, reference=[outs[0], outs[1] + 1.0])
    assert res.value == pytest.approx(32 / 37)
    assert res.fidelity["outputs"] == 2 and res.fidelity["max_abs_diff"] == pytest.approx(1.0)


def test_regression_outputs_choose_mse(tmp_path: Path) -> None:
    def double(x):
        return x * 2.0

    runner = load_model(double, LoadOptions(inputs=(X,)))
    x = np.arange(24, dtype=np.float32).reshape(3, 8)
    data = load_eval(_npz(tmp_path, x=x, y=x * 2 + 1), require_inputs(runner, [X]))
    res = evaluate(runner, data)
    assert (res.metric, res.metric_source, res.value, res.higher_is_better) == ("mse", "auto", 1.0, False)
    assert evaluate(runner, data, metric="mae").value == 1.0


def test_a_model_that_raises_names_the_batch(tmp_path: Path) -> None:
    calls = []

    def flaky(x):
        calls.append(len(x))
        if len(calls) == 3:
            raise RuntimeError("boom\nsecond line")
        return x

    runner = load_model(flaky, LoadOptions(inputs=(X,)))
    data = EvalData({"x": np.zeros((10, 8), np.float32)})
    with pytest.raises(ModelRunError, match=r"eval batch 2 \(rows 8–9\): RuntimeError: boom$") as e:
        model_outputs(runner, data, batch_size=4)
    assert e.value.iteration == 2 and e.value.phase == "evaluate"

    runner = load_model(lambda x: x.sum(), LoadOptions(inputs=(X,)))
    with pytest.raises(ModelRunError, match="one row per input row"):
        model_outputs(runner, data)


def test_evaluate_refuses_what_it_cannot_do(tmp_path: Path, mlp: MLP, eval_file: Path, pymodule) -> None:
    runner = load_model(mlp)
    data = load_eval(eval_file, require_inputs(runner, []))
    with pytest.raises(UsageError, match="unknown metric 'acc'"):
        evaluate(runner, data, metric="acc")
    with pytest.raises(UsageError, match="does not resolve"):
        evaluate(runner, data, metric="nowhere_xyz:score")
    unlabelled = EvalData(dict(data.inputs))
    with pytest.raises(UsageError, match="needs labels"):
        evaluate(runner, unlabelled, metric="accuracy")
    with pytest.raises(UsageError, match="nothing to evaluate"):
        evaluate(runner, unlabelled)
    with pytest.raises(InputError, match="outputs' shape"):
        evaluate(runner, data, metric="mse")  # class ids against [n, 4] scores
    name = pymodule(
        """
        def broken(outputs, labels):
            raise ValueError("bad")
        def vector(outputs, labels):
            return outputs
        """
    )
    with pytest.raises(UsageError, match="raised ValueError: bad"):
        evaluate(runner, data, metric=f"{name}:broken")
    with pytest.raises(UsageError, match="not a number"):
        evaluate(runner, data, metric=f"{name}:vector")
    with pytest.raises(UsageError, match="batch size 0"):
        model_outputs(runner, data, batch_size=0)


def test_importing_evaluate_does_not_import_torch() -> None:
    code = "import sys, infermeter.optimize.evaluate; assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture
def pymodule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a fresh importable module in tmp_path; return its name."""
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"im_evalmod_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return name

    return write


def test_onnxruntime_io_binding_and_ortvalue_outputs_become_numpy(tmp_path: Path, mlp: MLP) -> None:
    """What the ONNX runner returns on CUDA (an I/O binding), exercised on the CPU."""
    ort = pytest.importorskip("onnxruntime")
    from infermeter.optimize.evaluate import _to_numpy

    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mlp, (torch.zeros(2, 8),), str(path), dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "cpu")
    session.run_with_iobinding(binding)
    (got,) = _to_numpy(binding)
    want = session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
    (value,) = _to_numpy(ort.OrtValue.ortvalue_from_numpy(want))
    np.testing.assert_array_equal(value, want)
    assert [a.dtype for a in _to_numpy({"a": np.zeros(2, np.int64), "b": torch.ones(2, dtype=torch.float16)})] == [
        np.float32, np.float32,
    ]
