from __future__ import annotations

import numpy as np
import pytest

from infermeter.errors import InputError, UsageError
from infermeter.inputs import INPUT_SYNTAX, parse_input
from infermeter.models import load_model, require_inputs
from infermeter.models.base import LoadOptions
from infermeter.models.python import PythonRunner


def test_keyword_call_and_describe() -> None:
    def model(x, y):
        return x + y

    runner = load_model(model)
    assert isinstance(runner, PythonRunner) and runner.backend == "python"
    assert runner.inputs() == []
    out = runner(runner.prepare({"x": np.ones(2), "y": np.ones(2)}))
    np.testing.assert_array_equal(out, [2.0, 2.0])
    d = runner.describe()
    assert d["backend"] == "python" and d["params"] is None and d["details"]["call"] == "keyword"
    assert d["details"]["callable"].endswith("model")


def test_single_positional_parameter() -> None:
    runner = load_model(lambda arr: arr * 2)
    assert runner(runner.prepare({"input": np.ones(3)})).tolist() == [2.0, 2.0, 2.0]
    assert runner.describe()["details"]["call"] == "positional"


def test_kwargs_accepts_anything() -> None:
    runner = load_model(lambda **batch: sorted(batch))
    assert runner(runner.prepare({"b": np.zeros(1), "a": np.zeros(1)})) == ["a", "b"]


def test_signature_mismatch() -> None:
    def model(x, y):
        return x

    runner = load_model(model)
    with pytest.raises(InputError, match=r"does not accept z.*needs y"):
        runner.prepare({"x": np.ones(1), "z": np.ones(1)})
    with pytest.raises(InputError, match="does not accept"):  # caught at load when --input names are known
        load_model(model, LoadOptions(inputs=(parse_input("a:float32[B]"), parse_input("b:float32[B]"))))


def test_declared_inputs() -> None:
    def model(input_ids):
        return input_ids.sum()

    model.infermeter_inputs = ["input_ids:int64[B,seq]@0:100"]
    runner = load_model(model)
    assert [s.text() for s in runner.inputs()] == ["input_ids:int64[B,seq]@0:100"]
    assert require_inputs(runner, [parse_input("input_ids:int64[B,16]")])[0].shape == ("B", 16)

    def wrong(x):
        return x

    wrong.infermeter_inputs = ["a:float32[B]", "b:float32[B]"]
    with pytest.raises(InputError):
        load_model(wrong)


def test_require_inputs_without_any() -> None:
    runner = load_model(lambda **kw: None)
    with pytest.raises(InputError) as info:
        require_inputs(runner, [])
    assert INPUT_SYNTAX in str(info.value)
    specs = require_inputs(runner, [parse_input("x:float32[B,4]")])
    assert [s.text() for s in specs] == ["x:float32[B,4]"]


def test_device_and_dtype_refused() -> None:
    with pytest.raises(UsageError, match="--device cpu"):
        load_model(lambda x: x, LoadOptions(device="cuda"))
    with pytest.raises(UsageError, match="--dtype"):
        load_model(lambda x: x, LoadOptions(dtype="float16"))


def test_runner_returned_as_is() -> None:
    runner = load_model(lambda x: x)
    assert load_model(runner) is runner
