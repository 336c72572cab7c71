"""The public surface is small and pinned; importing it pulls in no backend."""

import subprocess
import sys

import numpy as np
import pytest

import infermeter
from infermeter.result import SCHEMA, Result, load_result, results_to_json
from infermeter.stats import describe_latency

EXPORTED = {
    "BackendUnavailable", "BenchInterrupted", "Env", "InfermeterError", "InputError", "InputSpec", "LoadOptions",
    "ModelLoadError", "ModelRunError", "OutputError", "Result", "Runner", "SCHEMA", "SpecError", "Store", "StoreError",
    "UsageError", "__version__", "bench", "capture_env", "compare_samples", "default_store_path", "describe_latency",
    "list_zoo", "load_model", "load_result", "parse_input", "run_sweep",
    "count_work", "profile_model", "calibrate", "predict_model", "implied", "Claim", "optimize_model", "OptimizeOptions",
}


def test_exported_names_are_pinned():
    assert set(infermeter.__all__) == EXPORTED
    for name in EXPORTED:
        assert getattr(infermeter, name) is not None
    with pytest.raises(AttributeError):
        infermeter.no_such_name  # noqa: B018


def test_import_is_light():
    code = "import sys, infermeter; print(sorted(m for m in ('torch', 'onnxruntime', 'numpy', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_errors_form_one_tree_with_exit_codes():
    from infermeter import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.InfermeterError)
    assert errors.UsageError("x").exit_code == 2 and errors.ModelRunError("x").exit_code == 1
    assert str(errors.InputError("two\nlines")) == "two lines"


def test_result_json_round_trip_and_schema_guard():
    lat = describe_latency(np.linspace(1e-3, 2e-3, 100))
    r = Result(id="a", invocation="b", model={"spec": "zoo:mlp", "backend": "torch"}, batch_size=1, latency=lat)
    doc = r.to_json_dict()
    assert doc["schema"] == SCHEMA and doc["latency"]["unit"] == "s"
    assert load_result(doc) == r
    assert load_result(r.model_dump_json(by_alias=True)) == r
    assert '"schema": "infermeter.result/1"' in results_to_json([r])
    with pytest.raises(ValueError, match="unknown result schema"):
        load_result({**doc, "schema": "infermeter.result/99"})
