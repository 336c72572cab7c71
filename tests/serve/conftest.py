"""A uvicorn server on a free port in a background thread, and a urllib client."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pytest

from infermeter.serve.app import ServeConfig, bind, make_server

from . import serve_models

MODELS = serve_models.__name__  # spec prefix: f"{MODELS}:double"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    def __init__(self, base: str, server: Any, thread: threading.Thread) -> None:
        self.base = base
        self.server = server
        self.thread = thread

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 60) -> Reply:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def infer(self, model: str, doc: dict[str, Any], **kw: Any) -> Reply:
        return self.request("POST", f"/v2/models/{model}/infer", json.dumps(doc).encode(),
                            {"content-type": "application/json"}, **kw)

    def stats(self, model: str) -> dict[str, Any]:
        return self.get(f"/v2/models/{model}/stats").json()

    def wait_for(self, model: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            s = self.stats(model)
            if predicate(s):
                return s
            if time.monotonic() > end:
                raise AssertionError(f"stats never reached the state wanted: {s}")
            time.sleep(0.01)


def tensor(name: str, arr: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": arr.ravel().tolist()}


@contextlib.contextmanager
def serving(cfg: ServeConfig) -> Iterator[Client]:
    server = make_server(cfg)
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > end:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    client = Client(f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread)
    try:
        yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def mlp_runner() -> Any:
    from infermeter.models import load_model

    runner = load_model("zoo:mlp")
    yield runner
    runner.close()


def run_alone(runner: Any, x: np.ndarray) -> np.ndarray:
    from infermeter.optimize.evaluate import _to_numpy

    return _to_numpy(runner(runner.prepare({"x": x})))[0]
