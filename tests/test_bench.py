"""bench(): the whole path from a model to stored Results, on real callables and models."""

import json

import numpy as np
import pytest

import infermeter
from infermeter.measure import BenchInterrupted, bench
from infermeter.errors import InputError, ModelRunError
from infermeter.result import load_result
from infermeter.store import Store

import spin

FAST = dict(max_time_s=3.0, precision=0.02)


def test_callable_with_known_service_time_per_batch(tmp_path):
    db = tmp_path / "r.db"
    results = bench(spin.per_sample_100us, inputs=["x:float32[B,4]"], batch_sizes=[1, 4], store=db, **FAST)
    assert [r.batch_size for r in results] == [1, 4]
    for r, want in zip(results, (100e-6, 400e-6)):
        assert r.status == "ok" and r.error is None
        assert r.latency.p50.value == pytest.approx(want, rel=0.10)
        assert r.latency.p50.ci_low <= r.latency.p50.value <= r.latency.p50.ci_high
        assert r.latency.count == len(r.latency.samples) >= 30
        assert r.throughput.samples_per_s.value == pytest.approx(r.batch_size / r.latency.mean.value)
        assert r.phases.load_s is not None and r.phases.first_inference_s > 0
        assert r.stop_reason in ("precision", "max-time", "max-iters")
        assert r.model.backend == "python" and r.model.inputs == ["x:float32[B,4]"]
        assert r.env is not None and r.env.cpu_model is not None
        assert r.memory.inference_peak_rss_bytes and r.memory.rss_accounting
        assert r.timer.overhead_s and r.timer.overhead_s < 20e-6
    assert results[0].invocation == results[1].invocation and results[0].id != results[1].id
    with Store(db) as st:
        stored = st.get(results[1].id)
    assert stored.latency.samples == results[1].latency.samples
    assert load_result(json.loads(json.dumps(stored.to_json_dict()))) == stored


def test_single_batch_size_returns_one_result():
    r = bench(spin.predict_200us, inputs=["x:float32[B,2]"], batch_size=3, store=False, **FAST)
    assert isinstance(r, infermeter.Result) and r.batch_size == 3


def test_model_that_raises_keeps_what_was_measured(tmp_path):
    db = tmp_path / "r.db"
    spin._calls["n"] = 0
    with pytest.raises(ModelRunError, match=r"RuntimeError.*kaboom.*iteration") as e:
        bench(spin.raises_at_call_300, inputs=["x:float32[B,2]"], batch_size=1, store=db, max_time_s=20, precision=0.001)
    assert "kept as run" in str(e.value)
    with Store(db) as st:
        (row,) = st.list()
        failed = st.get(row.id)
    assert failed.status == "failed" and "kaboom" in failed.error
    assert failed.stop_reason == "error"
    assert failed.latency is not None and 0 < failed.latency.count < 300


def test_failure_at_second_batch_keeps_first(tmp_path):
    db = tmp_path / "r.db"
    with pytest.raises(ModelRunError, match="batch 4"):
        bench(spin.raises_when_batch_is_4, inputs=["x:float32[B,2]"], batch_sizes=[1, 4], store=db, **FAST)
    with Store(db) as st:
        runs = {s.batch_size: s.status for s in st.list()}
    assert runs == {1: "ok", 4: "failed"}


def test_interrupt_keeps_finished_points(tmp_path):
    db = tmp_path / "r.db"
    with pytest.raises(BenchInterrupted) as e:
        bench(spin.interrupt_when_batch_is_2, inputs=["x:float32[B,2]"], batch_sizes=[1, 2, 8], store=db, **FAST)
    assert [r.batch_size for r in e.value.results[:1]] == [1] and e.value.results[0].status == "ok"
    with Store(db) as st:
        assert {s.batch_size for s in st.list()} == {1, 2}


def test_data_rows_feed_the_model(tmp_path):
    seen = []

    def record(x):
        seen.append(x[:, 0].copy())
        spin.spin_ns(30_000)
        return x

    rows = np.arange(40, dtype=np.float32).reshape(20, 2)
    np.save(tmp_path / "d.npy", rows)
    bench(record, inputs=["x:float32[B,2]"], batch_size=5, data=tmp_path / "d.npy", store=False, max_iters=60,
          max_time_s=3)
    firsts = {float(s[0]) for s in seen}
    assert firsts == {0.0, 10.0, 20.0, 30.0}  # four distinct batches of 5 rows, cycled


def test_callable_without_inputs_gets_syntax_hint():
    with pytest.raises(InputError, match=r"--input NAME:DTYPE"):
        bench(spin.predict_1ms, store=False)


def test_torch_module_object_and_onnx_file(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    r = bench(net, inputs=["x:float32[B,16]"], batch_size=2, store=False, threads=1, **FAST)
    assert r.model.backend == "torch" and r.model.params == 16 * 32 + 32 + 32 * 4 + 4
    assert r.latency.p50.value > 0
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.randn(1, 16),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    rs = bench(str(path), batch_sizes=[1, 8], store=False, threads=1, **FAST)
    assert [r.model.backend for r in rs] == ["onnxruntime"] * 2
    assert rs[0].model.inputs == ["x:float32[B,16]"]
    assert rs[0].model.file_size_bytes == path.stat().st_size
