"""The server end to end: uvicorn on a free port, requests over HTTP."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from infermeter.errors import InfermeterError
from infermeter.serve.app import ServeConfig, make_server

from .conftest import MODELS, run_alone, serving, tensor


def test_metadata_json_and_binary_round_trip(mlp_runner):
    x = np.random.default_rng(1).standard_normal((3, 784)).astype(np.float32)
    want = run_alone(mlp_runner, x)
    with serving(ServeConfig(model="zoo:mlp")) as c:
        assert c.get("/v2/health/live").status == 200
        assert c.get("/v2/health/ready").json() == {"ready": True}
        meta = c.get("/v2/models/mlp").json()
        assert meta["name"] == "mlp" and meta["platform"] == "pytorch_torch"
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 784]}]
        assert meta["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [-1, 10]}]
        assert c.get("/v2/models/nope").status == 404

        r = c.infer("mlp", {"id": "r1", "inputs": [tensor("x", x)]})
        assert r.status == 200, r.body
        doc = r.json()
        assert doc["model_name"] == "mlp" and doc["id"] == "r1"
        (out,) = doc["outputs"]
        assert out["name"] == "output_0" and out["datatype"] == "FP32" and out["shape"] == [3, 10]
        np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(3, 10), want, rtol=1e-5, atol=1e-6)

        # binary tensor extension, both ways
        head = json.dumps({"inputs": [{"name": "x", "shape": [3, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "parameters": {"binary_data_output": True}}).encode()
        r = c.request("POST", "/v2/models/mlp/infer", head + x.tobytes(),
                      {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"})
        assert r.status == 200, r.body
        n = int(r.headers["inference-header-content-length"])
        (out,) = json.loads(r.body[:n])["outputs"]
        assert out["parameters"]["binary_data_size"] == 3 * 10 * 4
        got = np.frombuffer(r.body[n:], dtype="<f4").reshape(out["shape"])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

        # binary in, JSON out; the versioned route
        head = json.dumps({"inputs": [{"name": "x", "shape": [3, 784], "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}]}).encode()
        r = c.request("POST", "/v2/models/mlp/versions/1/infer", head + x.tobytes(),
                      {"Inference-Header-Content-Length": str(len(head))})
        assert r.status == 200, r.body
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(3, 10), want,
                                   rtol=1e-5, atol=1e-6)


def test_dynamic_batching_answers_every_row_correctly(mlp_runner):
    rows = np.random.default_rng(2).standard_normal((16, 1, 784)).astype(np.float32)
    with serving(ServeConfig(model="zoo:mlp", max_batch=8, max_wait_ms=20)) as c:
        barrier = threading.Barrier(16)

        def one(i: int):
            barrier.wait()
            return c.infer("mlp", {"inputs": [tensor("x", rows[i])]})

        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(one, range(16)))
        stats = c.stats("mlp")
    for i, r in enumerate(replies):
        assert r.status == 200, r.body
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(1, 10)
        np.testing.assert_allclose(got, run_alone(mlp_runner, rows[i]), rtol=1e-4, atol=1e-5)
    hist = {int(k): v for k, v in stats["batches"]["size_histogram"].items()}
    assert sum(k * v for k, v in hist.items()) == 16
    assert max(hist) > 1 and max(hist) <= 8, hist
    assert stats["batches"]["count"] < 16
    assert stats["config"]["effective"]["batching"] == "on"


def test_cache_hit_and_ttl(mlp_runner):
    x = np.random.default_rng(3).standard_normal((1, 784)).astype(np.float32)
    with serving(ServeConfig(model="zoo:mlp", cache=4)) as c:
        first = c.infer("mlp", {"inputs": [tensor("x", x)]})
        second = c.infer("mlp", {"inputs": [tensor("x", x)]})
        assert first.status == second.status == 200
        assert first.json()["outputs"] == second.json()["outputs"]
        s = c.stats("mlp")
        assert (s["cache"]["hits"], s["cache"]["misses"]) == (1, 1)
        assert s["batches"]["count"] == 1  # the hit never reached the model
        text = c.get("/metrics").body.decode()
        assert 'infermeter_cache_hits_total{model="mlp"} 1.0' in text
        assert 'infermeter_cache_misses_total{model="mlp"} 1.0' in text

    import time

    with serving(ServeConfig(model=f"{MODELS}:double", name="d", cache=4, cache_ttl_s=0.05)) as c:
        doc = {"inputs": [tensor("x", np.ones((1, 4), np.float32))]}
        assert c.infer("d", doc).status == 200
        time.sleep(0.3)  # far past the 50 ms TTL
        assert c.infer("d", doc).status == 200
        cache = c.stats("d")["cache"]
        assert (cache["hits"], cache["misses"], cache["expired"]) == (0, 2, 1)


def test_bad_requests_answer_400_413_with_reasons():
    with serving(ServeConfig(model=f"{MODELS}:double", name="d", max_request_bytes=2000)) as c:
        ok = c.infer("d", {"inputs": [tensor("x", np.ones((2, 4), np.float32))]})
        assert ok.status == 200 and ok.json()["outputs"][0]["data"] == [2.0] * 8

        r = c.infer("d", {"inputs": [tensor("x", np.ones((2, 5), np.float32))]})
        assert r.status == 400 and "'x'" in r.json()["error"] and "[2, 5]" in r.json()["error"], r.body
        r = c.infer("d", {"inputs": [tensor("y", np.ones((2, 4), np.float32))]})
        assert r.status == 400 and "unknown input 'y'" in r.json()["error"]
        r = c.infer("d", {"inputs": [tensor("x", np.ones((2, 4), np.int64), "INT64")]})
        assert r.status == 400 and "INT64" in r.json()["error"] and "FP32" in r.json()["error"]
        r = c.infer("d", {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 7}]})
        assert r.status == 400 and "7 values" in r.json()["error"]
        r = c.request("POST", "/v2/models/d/infer", b"{not json", {"content-type": "application/json"})
        assert r.status == 400 and "JSON" in r.json()["error"]
        r = c.infer("d", {"inputs": [tensor("x", np.ones((100, 4), np.float32))]})
        assert r.status == 413 and "2000" in r.json()["error"]
        s = c.stats("d")["requests"]["by_status"]
        assert s == {"200": 1, "400": 5, "413": 1}


def test_full_queue_answers_503_at_once():
    with serving(ServeConfig(model=f"{MODELS}:slow", name="s", max_queue=1)) as c:
        doc = {"inputs": [tensor("x", np.ones((1, 4), np.float32))]}
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(c.infer, "s", doc)
            c.wait_for("s", lambda s: s["requests"]["in_flight"] == 1 and s["requests"]["queued"] == 0)
            waiting = pool.submit(c.infer, "s", doc)
            c.wait_for("s", lambda s: s["requests"]["queued"] == 1)
            refused = c.infer("s", doc)
            assert refused.status == 503 and refused.headers.get("retry-after") == "1"
            assert "max_queue 1" in refused.json()["error"]
            assert running.result().status == 200 and waiting.result().status == 200


def test_model_error_is_500_and_the_server_keeps_serving():
    cfg = ServeConfig(model=f"{MODELS}:fails_on_negative", name="f", inputs=["x:float32[B,4]"],
                      max_batch=8, max_wait_ms=50)
    with serving(cfg) as c:
        bad = {"inputs": [tensor("x", -np.ones((1, 4), np.float32))]}
        good = {"inputs": [tensor("x", np.ones((1, 4), np.float32))]}
        r = c.infer("f", bad)
        assert r.status == 500 and "ValueError: negative inputs are not allowed" in r.json()["error"]
        assert c.infer("f", good).status == 200
        # a bad request batched with good ones fails alone
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda d: c.infer("f", d), [good, bad, good, good]))
        assert [r.status for r in replies] == [200, 500, 200, 200]
        assert all(r.json()["outputs"][0]["data"] == [2.0] * 4 for r in replies if r.status == 200)


def test_metrics_and_stats_keep_queue_and_compute_apart():
    with serving(ServeConfig(model=f"{MODELS}:slow", name="s")) as c:
        doc = {"inputs": [tensor("x", np.ones((1, 4), np.float32))]}
        with ThreadPoolExecutor(2) as pool:
            replies = list(pool.map(lambda _: c.infer("s", doc), range(2)))
        assert [r.status for r in replies] == [200, 200]
        s = c.stats("s")
        assert s["queue_time_s"]["count"] == 2 and s["compute_time_s"]["count"] == 2
        assert s["compute_time_s"]["mean"] >= 0.35  # each call spins 0.4 s
        assert s["queue_time_s"]["total"] > 0.1  # one of the two waited for the other's call
        assert s["latency_s"]["total"] >= s["queue_time_s"]["total"] + s["compute_time_s"]["total"] * 0.99
        assert s["batches"]["size_histogram"] == {"1": 2}
        text = c.get("/metrics").body.decode()
    for name in ("infermeter_requests_total", "infermeter_request_latency_seconds_bucket",
                 "infermeter_queue_time_seconds_bucket", "infermeter_compute_time_seconds_bucket",
                 "infermeter_batch_size_bucket", "infermeter_cache_hits_total", "infermeter_queue_depth"):
        assert name in text, name
    assert 'infermeter_requests_total{model="s",status="200"} 2.0' in text


def test_graceful_shutdown_finishes_the_request_in_flight():
    with serving(ServeConfig(model=f"{MODELS}:slow", name="s")) as c:
        doc = {"inputs": [tensor("x", np.ones((1, 4), np.float32))]}
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(c.infer, "s", doc)
            c.wait_for("s", lambda s: s["requests"]["in_flight"] == 1)
            c.server.should_exit = True  # what Ctrl-C does
            reply = pending.result(timeout=30)
        c.thread.join(30)
        assert not c.thread.is_alive()
    assert reply.status == 200 and reply.json()["outputs"][0]["data"] == [2.0] * 4


def test_process_workers_and_symbolic_dims():
    with serving(ServeConfig(model=f"{MODELS}:pair", name="p", workers=2, workers_kind="process",
                             max_batch=4, max_wait_ms=30)) as c:
        meta = c.get("/v2/models/p").json()
        assert [i["shape"] for i in meta["inputs"]] == [[-1, -1], [-1, -1]]
        ids = np.arange(6, dtype=np.int64).reshape(2, 3)
        mask = np.ones((2, 3), np.int64)
        r = c.infer("p", {"inputs": [tensor("input_ids", ids, "INT64"), tensor("attention_mask", mask, "INT64")]})
        assert r.status == 200, r.body
        assert r.json()["outputs"][0]["data"] == [3.0, 12.0]
        r = c.infer("p", {"inputs": [tensor("input_ids", ids, "INT64"), tensor("attention_mask", mask[:, :2], "INT64")]})
        assert r.status == 400 and "seq" in r.json()["error"]

        # two sequence lengths at once: never batched together, both right
        docs = [{"inputs": [tensor("input_ids", np.ones((1, n), np.int64), "INT64"),
                            tensor("attention_mask", np.ones((1, n), np.int64), "INT64")]} for n in (2, 5, 2, 5)]
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda d: c.infer("p", d), docs))
        assert [r.json()["outputs"][0]["data"] for r in replies] == [[2.0], [5.0], [2.0], [5.0]]


def test_bad_model_fails_fast_with_one_line():
    with pytest.raises(InfermeterError) as info:
        make_server(ServeConfig(model="zoo:no-such-model"))
    assert "unknown zoo model" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InfermeterError, match="cannot tell the inputs"):
        make_server(ServeConfig(model=f"{MODELS}:fails_on_negative"))
