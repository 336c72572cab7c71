"""``--engine ray``: the same model and routes on Ray Serve, on a real local Ray instance.

One Ray instance and one Serve proxy for the module; two applications deploy
into them under their own route prefixes: zoo:mlp (one replica) and
:func:`pid_rows` (two replicas), which tells which process answered each row.
The option mapping and the CLI's refusals are checked without Ray.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import pytest

from infermeter.errors import UsageError
from infermeter.serve.app import ServeConfig, bind
from infermeter.serve.ray_engine import check_ray_config, deployment_options

from .conftest import Client, run_alone, tensor


def pid_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Served by the replicas: ``x * 2`` and, per row, the pid of the process that ran it."""
    if (x < 0).any():
        raise ValueError("negative inputs are not allowed")
    return x * 2, np.full((x.shape[0], 1), os.getpid(), dtype=np.int64)


pid_rows.infermeter_inputs = ["x:float32[B,4]"]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- without Ray


def test_mapping_of_options_to_ray_serve() -> None:
    cfg = ServeConfig(model="zoo:mlp", max_batch=8, max_wait_ms=5, workers=2, threads=2, max_queue=64)
    opts = deployment_options(cfg, 3)
    assert opts["num_replicas"] == 3
    assert opts["max_queued_requests"] == 64
    assert opts["max_ongoing_requests"] == 2 * 8 * 2  # a batch running and one forming, per worker
    assert opts["ray_actor_options"] == {"num_cpus": 4}  # workers × threads
    assert opts["backpressure_config"] == {"status_code": 503, "retry_after_s": 1}
    assert deployment_options(ServeConfig(model="zoo:mlp"), 1)["max_ongoing_requests"] == 5
    gpu = deployment_options(ServeConfig(model="zoo:mlp", device="cuda"), 4, gpus=2.0)
    assert gpu["ray_actor_options"]["num_gpus"] == 0.5
    with pytest.raises(UsageError, match="no GPU"):
        deployment_options(ServeConfig(model="zoo:mlp", device="cuda"), 1, gpus=0.0)


@pytest.mark.parametrize("cfg, replicas, reason", [
    (ServeConfig(model="zoo:mlp", workers_kind="process"), 1, "replicas"),
    (ServeConfig(model="zoo:mlp", device="cuda:1"), 1, "--device cuda"),
    (ServeConfig(model="zoo:mlp"), 0, ">= 1"),
])
def test_what_ray_cannot_honour_is_refused(cfg: ServeConfig, replicas: int, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        check_ray_config(cfg, replicas)


@pytest.mark.parametrize("args, words", [
    (["--engine", "starlette", "--replicas", "2"], "--workers"),
    (["--engine", "kubernetes"], "starlette or ray"),
    (["--engine", "ray", "--replicas", "0"], "1 or more"),
    (["--engine", "ray", "--workers-kind", "process"], "--replicas"),
])
def test_cli_refuses_with_one_line_and_exit_2(args: list[str], words: str) -> None:
    from typer.testing import CliRunner

    from infermeter.cli import app

    result = CliRunner().invoke(app, ["serve", "zoo:mlp", *args], env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.output


def test_without_ray_serve_the_cli_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from infermeter.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    result = CliRunner().invoke(app, ["serve", f"{__name__}:pid_rows", "--engine", "ray"], env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'infermeter[ray]'" in lines[0], result.output


# --------------------------------------------------------------------------- on a local Ray instance


@pytest.fixture(scope="module")
def ray_port() -> Iterator[int]:
    pytest.importorskip("ray.serve")
    import ray
    from ray import serve

    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 _node_ip_address="127.0.0.1")
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    serve.start(http_options={"host": "127.0.0.1", "port": port},
                logging_config={"log_level": "WARNING", "enable_access_log": False})
    try:
        yield port
    finally:
        serve.shutdown()
        if started:
            ray.shutdown()


def _deploy(cfg: ServeConfig, replicas: int, port: int, name: str) -> Iterator[Client]:
    from infermeter.serve.ray_engine import RayServer

    server = RayServer(cfg, replicas, port=port, app_name=name, route_prefix=f"/{name}")
    url = server.start()
    try:
        yield Client(url, server, None)  # type: ignore[arg-type]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mlp(ray_port: int) -> Iterator[Client]:
    yield from _deploy(ServeConfig(model="zoo:mlp", max_batch=8, max_wait_ms=20), 1, ray_port, "mlp")


@pytest.fixture(scope="module")
def pids(ray_port: int) -> Iterator[Client]:
    yield from _deploy(ServeConfig(model=f"{__name__}:pid_rows", name="pids", max_batch=4, max_wait_ms=20),
                       2, ray_port, "pids")


def test_metadata_and_json_infer_match_the_model(mlp: Client, mlp_runner: Any) -> None:
    assert mlp.get("/v2/health/live").json() == {"live": True}
    assert mlp.get("/v2/health/ready").json() == {"ready": True}
    meta = mlp.get("/v2/models/mlp").json()
    assert meta["name"] == "mlp" and meta["platform"] == "pytorch_torch"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 784]}]
    assert meta["outputs"] == [{"name": "output_0", "datatype": "FP32", "shape": [-1, 10]}]
    assert mlp.get("/v2/models/nope").status == 404

    x = np.random.default_rng(1).standard_normal((3, 784)).astype(np.float32)
    r = mlp.infer("mlp", {"id": "r1", "inputs": [tensor("x", x)]})
    assert r.status == 200, r.body
    doc = r.json()
    assert doc["model_name"] == "mlp" and doc["id"] == "r1"
    (out,) = doc["outputs"]
    assert out["shape"] == [3, 10] and out["datatype"] == "FP32"
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(3, 10), run_alone(mlp_runner, x),
                               rtol=1e-4, atol=1e-5)

    # binary tensors both ways, through Ray's proxy
    head = json.dumps({"inputs": [{"name": "x", "shape": [3, 784], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    r = mlp.request("POST", "/v2/models/mlp/infer", head + x.tobytes(),
                    {"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"})
    assert r.status == 200, r.body
    n = int(r.headers["inference-header-content-length"])
    (out,) = json.loads(r.body[:n])["outputs"]
    np.testing.assert_allclose(np.frombuffer(r.body[n:], dtype="<f4").reshape(out["shape"]), run_alone(mlp_runner, x),
                               rtol=1e-4, atol=1e-5)

    effective = mlp.stats("mlp")["config"]["effective"]
    assert effective["engine"] == "ray" and effective["batching_by"] == "ray.serve.batch"


def test_wrong_shape_and_dtype_answer_400_with_the_reason(mlp: Client) -> None:
    r = mlp.infer("mlp", {"inputs": [tensor("x", np.zeros((2, 5), np.float32))]})
    assert r.status == 400 and "dim 1 must be 784" in r.json()["error"], r.body
    r = mlp.infer("mlp", {"inputs": [tensor("x", np.zeros((1, 784), np.int32), "INT32")]})
    assert r.status == 400 and "datatype INT32" in r.json()["error"], r.body


def test_concurrent_requests_ride_in_shared_batches(mlp: Client, mlp_runner: Any) -> None:
    rows = np.random.default_rng(2).standard_normal((16, 1, 784)).astype(np.float32)
    before = mlp.stats("mlp")["batches"]
    barrier = threading.Barrier(16)

    def one(i: int) -> Any:
        barrier.wait()
        return mlp.infer("mlp", {"inputs": [tensor("x", rows[i])]})

    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(one, range(16)))
    for i, r in enumerate(replies):
        assert r.status == 200, r.body
        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(1, 10)
        np.testing.assert_allclose(got, run_alone(mlp_runner, rows[i]), rtol=1e-4, atol=1e-5)
    after = mlp.stats("mlp")["batches"]  # one replica: these are all of its batches
    hist = {int(k): v - before["size_histogram"].get(k, 0) for k, v in after["size_histogram"].items()}
    assert sum(k * v for k, v in hist.items()) == 16
    assert max(k for k, v in hist.items() if v) > 1 and max(hist) <= 8, hist


def test_a_short_load_run_against_it_has_no_errors(mlp: Client) -> None:
    from infermeter.load.config import LoadConfig
    from infermeter.load.generator import run_load

    out = run_load(LoadConfig(url=mlp.base, model="mlp", protocol="oip", rate=50, duration_s=2))
    assert out.requests >= 50 and out.succeeded == out.requests, out.counts


def test_two_replicas_both_answer(pids: Client) -> None:
    x = np.arange(4, dtype=np.float32).reshape(1, 4)

    def one(_: int) -> int:
        r = pids.infer("pids", {"inputs": [tensor("x", x)]})
        assert r.status == 200, r.body
        doubled, pid = r.json()["outputs"]
        assert doubled["data"] == [0.0, 2.0, 4.0, 6.0]
        return int(pid["data"][0])

    with ThreadPoolExecutor(8) as pool:
        seen = set(pool.map(one, range(32)))
    assert len(seen) == 2 and os.getpid() not in seen, seen


def test_a_model_that_raises_answers_500_and_the_replicas_keep_serving(pids: Client) -> None:
    bad = pids.infer("pids", {"inputs": [tensor("x", -np.ones((1, 4), np.float32))]})
    assert bad.status == 500 and "negative inputs are not allowed" in bad.json()["error"], bad.body
    ok = pids.infer("pids", {"inputs": [tensor("x", np.ones((2, 4), np.float32))]})
    assert ok.status == 200 and ok.json()["outputs"][0]["data"] == [2.0] * 8, ok.body

    # in a batch, the bad request fails alone: the batch is run again request by request
    barrier = threading.Barrier(6)

    def one(i: int) -> int:
        barrier.wait()
        sign = -1 if i == 0 else 1
        return pids.infer("pids", {"inputs": [tensor("x", sign * np.ones((1, 4), np.float32))]}).status

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(one, range(6)))
    assert statuses == [500] + [200] * 5, statuses
