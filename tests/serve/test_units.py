"""The pieces without HTTP: batcher (fake execute), cache (fake clock), OIP codec, config."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest

from infermeter.errors import InfermeterError, InputError, UsageError
from infermeter.inputs import parse_input
from infermeter.serve.app import ServeConfig, bind, derive_name, make_server
from infermeter.serve.batcher import Batcher, QueueFull, ShuttingDown, concat_parts, split_rows
from infermeter.serve.cache import ResponseCache, inputs_key
from infermeter.serve.oip import Decoded, OipError, decode_request, encode_response, validate


class FakeModel:
    """Doubles its input; records the rows of every call; can be held until released."""

    def __init__(self, fail_negative: bool = False, scalar: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail_negative = fail_negative
        self.scalar = scalar
        self.gate: asyncio.Event | None = None

    async def __call__(self, parts):
        self.calls.append([len(p["x"]) for p in parts])
        if self.gate is not None:
            await self.gate.wait()
        x = concat_parts(parts)["x"]
        if self.fail_negative and (x < 0).any():
            raise ValueError("negative")
        return ([np.float32(x.sum())] if self.scalar else [x * 2]), 1000


def rows(n: int, value: float = 1.0, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.full((n, width), value, np.float32)}


def run(coro):
    return asyncio.run(coro)


def test_batches_fill_to_max_batch_rows_and_split_back():
    async def main():
        model = FakeModel()
        b = Batcher(model, max_batch=4, max_wait_ms=30)
        b.start()
        reqs = [rows(1, i) for i in range(5)] + [rows(3, 9)]
        results = await asyncio.gather(*(b.submit(r, len(r["x"])) for r in reqs))
        await b.stop()
        return model, reqs, results

    model, reqs, results = run(main())
    assert model.calls == [[1, 1, 1, 1], [1, 3]]  # the 3-row request did not fit the first batch
    for r, res in zip(reqs, results):
        np.testing.assert_array_equal(res.outputs[0], r["x"] * 2)
    assert [res.batch_rows for res in results] == [4, 4, 4, 4, 4, 4]
    assert results[0].compute_ns == 1000 and all(res.queue_ns >= 0 for res in results)


def test_different_shapes_and_oversized_requests_run_apart():
    async def main():
        model = FakeModel()
        b = Batcher(model, max_batch=4, max_wait_ms=10)
        b.start()
        reqs = [rows(1, width=2), rows(1, width=3), rows(1, width=2), rows(6), rows(1, width=3)]
        results = await asyncio.gather(*(b.submit(r, len(r["x"])) for r in reqs))
        await b.stop()
        return model, reqs, results

    model, reqs, results = run(main())
    assert model.calls == [[1, 1], [1, 1], [6]]
    for r, res in zip(reqs, results):
        np.testing.assert_array_equal(res.outputs[0], r["x"] * 2)


def test_unbatchable_requests_do_not_wait():
    async def main():
        model = FakeModel()
        b = Batcher(model, max_batch=8, max_wait_ms=10_000)  # would wait 10 s for company
        b.start()
        res = await asyncio.wait_for(b.submit(rows(1), 1, batchable=False), 5)
        await b.stop()
        return res

    assert run(main()).batch_requests == 1


def test_queue_full_and_shutdown():
    async def main():
        model = FakeModel()
        model.gate = asyncio.Event()
        b = Batcher(model, max_batch=1, max_queue=1)
        b.start()
        first = asyncio.ensure_future(b.submit(rows(1), 1))
        while not model.calls:
            await asyncio.sleep(0.001)
        second = asyncio.ensure_future(b.submit(rows(1), 1))
        await asyncio.sleep(0.01)
        assert b.depth == 1 and b.in_flight == 1
        with pytest.raises(QueueFull):
            await b.submit(rows(1), 1)
        stopping = asyncio.ensure_future(b.stop())  # drains: both still answered
        await asyncio.sleep(0.01)
        with pytest.raises(ShuttingDown):
            await b.submit(rows(1), 1)
        model.gate.set()
        await stopping
        return await first, await second

    a, b = run(main())
    assert a.outputs[0].shape == b.outputs[0].shape == (1, 2)


def test_a_failed_batch_is_retried_request_by_request():
    async def main():
        model = FakeModel(fail_negative=True)
        b = Batcher(model, max_batch=8, max_wait_ms=20)
        b.start()
        out = await asyncio.gather(*(b.submit(rows(1, v), 1) for v in (1, -1, 2)), return_exceptions=True)
        await b.stop()
        return model, out

    model, out = run(main())
    assert model.calls == [[1, 1, 1], [1], [1], [1]]
    assert isinstance(out[1], ValueError)
    assert out[0].outputs[0][0, 0] == 2 and out[2].outputs[0][0, 0] == 4


def test_outputs_without_rows_turn_batching_off():
    async def main():
        model = FakeModel(scalar=True)
        b = Batcher(model, max_batch=8, max_wait_ms=20)
        b.start()
        first = await asyncio.gather(*(b.submit(rows(1), 1) for _ in range(2)))
        later = await asyncio.gather(*(b.submit(rows(1), 1) for _ in range(2)))
        await b.stop()
        return model, b, first, later

    model, b, first, later = run(main())
    assert b.solo and model.calls == [[1, 1], [1], [1], [1], [1]]
    assert all(float(r.outputs[0]) == 2.0 for r in first + later)


def test_split_rows_is_concat_inverse():
    parts = [rows(2, 1), rows(1, 2), rows(3, 3)]
    batch = concat_parts(parts)["x"]
    shares = split_rows([batch, batch[:, :1]], [2, 1, 3])
    for part, share in zip(parts, shares):
        np.testing.assert_array_equal(share[0], part["x"])
        np.testing.assert_array_equal(share[1], part["x"][:, :1])


# --------------------------------------------------------------------------- cache


def test_cache_lru_ttl_and_keys():
    now = [0.0]
    cache = ResponseCache(2, ttl_s=10, clock=lambda: now[0])
    a, b, c = (inputs_key({"x": np.full(3, v, np.float32)}) for v in (1, 2, 3))
    cache.put(a, "A")
    cache.put(b, "B")
    assert cache.get(a) == "A"  # a is now the most recent
    cache.put(c, "C")  # evicts b
    assert cache.get(b) is None and cache.get(c) == "C"
    now[0] = 10.5
    assert cache.get(a) is None  # expired
    assert cache.snapshot()["hits"] == 2 and cache.snapshot()["misses"] == 2 and cache.expired == 1
    same_bytes = np.zeros(4, np.float32)
    keys = {inputs_key({"x": same_bytes}), inputs_key({"x": same_bytes.view(np.int32)}),
            inputs_key({"x": same_bytes.reshape(2, 2)}), inputs_key({"y": same_bytes})}
    assert len(keys) == 4  # dtype, shape and name all count
    assert not ResponseCache(0).enabled


# --------------------------------------------------------------------------- the OIP codec


def test_binary_request_with_mixed_datatypes():
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    x = np.linspace(0, 1, 4, dtype=np.float32).reshape(2, 2)
    head = json.dumps({"inputs": [
        {"name": "ids", "shape": [2, 3], "datatype": "INT64", "parameters": {"binary_data_size": ids.nbytes}},
        {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": x.ravel().tolist()},
        {"name": "m", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
    ]}).encode()
    d = decode_request(head + ids.tobytes() + b"\x01\x00", str(len(head)))
    np.testing.assert_array_equal(d.inputs["ids"], ids)
    np.testing.assert_array_equal(d.inputs["x"], x)
    assert d.inputs["m"].tolist() == [True, False]
    with pytest.raises(OipError, match="left over"):
        decode_request(head + ids.tobytes() + b"\x01\x00\x00", str(len(head)))
    with pytest.raises(OipError, match="runs past"):
        decode_request(head + ids.tobytes(), str(len(head)))
    with pytest.raises(OipError, match="BYTES"):
        decode_request(json.dumps({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}).encode(), None)


def test_validate_symbolic_dims_and_pins():
    specs = [parse_input("ids:int64[B,seq]"), parse_input("mask:int64[B,seq]")]
    ok = {"ids": np.zeros((3, 7), np.int64), "mask": np.zeros((3, 7), np.int64)}
    assert validate(ok, specs, {}) == 3
    with pytest.raises(OipError, match="seq=7"):
        validate({"ids": ok["ids"], "mask": np.zeros((3, 6), np.int64)}, specs, {})
    with pytest.raises(OipError, match="dim 1 must be 8"):
        validate(ok, specs, {"seq": 8})
    with pytest.raises(OipError, match="missing input 'mask'"):
        validate({"ids": ok["ids"]}, specs, {})


def test_encode_selected_outputs():
    outs = [np.ones((1, 2), np.float32), np.zeros((1,), np.int64)]
    d = Decoded({}, outputs=["output_1"], binary_outputs=set())
    body, headers = encode_response("m", ["output_0", "output_1"], outs, d)
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["outputs"] == [{"name": "output_1", "datatype": "INT64", "shape": [1], "data": [0]}]
    with pytest.raises(OipError, match="unknown output 'z'"):
        encode_response("m", ["output_0"], outs[:1], Decoded({}, outputs=["z"]))


# --------------------------------------------------------------------------- config and startup


def test_config_names_and_validation():
    assert ServeConfig(model="zoo:mlp").name == "mlp"
    assert derive_name("models/resnet-50.onnx") == "resnet-50"
    assert derive_name("pkg.mod:make_net") == "make_net"
    for bad in ({"workers_kind": "fiber"}, {"max_batch": 0}, {"cache_ttl_s": 0}, {"name": "a/b"}, {"dims": {"seq": 0}}):
        with pytest.raises(UsageError):
            ServeConfig(model="zoo:mlp", **bad)
    with pytest.raises(InputError):
        ServeConfig(model="zoo:mlp", inputs=["x:float32[B,"])


def test_taken_port_is_one_line():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1"):
            bind("127.0.0.1", holder.getsockname()[1]).close()
    finally:
        holder.close()


def test_a_load_error_in_a_worker_process_comes_back_as_it_was():
    with pytest.raises(InfermeterError, match="unknown zoo model 'nope'"):
        make_server(ServeConfig(model="zoo:nope", workers_kind="process"))


def test_exported_names():
    import infermeter.serve as serve

    assert sorted(serve.__all__) == ["Batcher", "ResponseCache", "ServeConfig", "build_app", "run_server"]
    assert all(callable(getattr(serve, n)) for n in serve.__all__)
