"""`infermeter serve`, `infermeter load` and `infermeter plan` end to end, in subprocesses,
on loopback: a served model under open- and closed-loop load, bad targets as one line,
and a capacity plan from a bench invocation over batch sizes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_cli import one_line_error, run  # tests/integration is on sys.path (no package)

pytest.importorskip("torch")
pytest.importorskip("uvicorn")
pytest.importorskip("aiohttp")

TESTS = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path, *options):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "infermeter", "serve", "zoo:mlp", "--port", str(port), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode())
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError("the server did not become ready")
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture()
def server(tmp_path):
    yield from _serve(tmp_path, "--max-batch", "8", "--max-wait-ms", "2")


@pytest.fixture()
def cached_server(tmp_path):
    yield from _serve(tmp_path, "--cache", "100000")


def test_open_and_closed_loop_against_the_served_model(tmp_path, server):
    p = run(["load", server, "--model", "mlp", "--rate", "100", "--arrival", "constant", "--duration", "2", "--json", "open.json"],
            tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "open loop" in p.stdout
    (r,) = json.loads((tmp_path / "open.json").read_text())["results"]
    d = r["scenario_details"]
    assert r["scenario"] == "load-open" and d["offered_rate"] == pytest.approx(100, rel=0.01)
    assert d["achieved_rate"] == pytest.approx(100, rel=0.15)
    assert sum(d["errors"].values()) == 0 and d["succeeded"] == d["requests"] > 150
    assert r["latency"]["p50"]["value"] < 0.5
    p = run(["load", server, "--model", "mlp", "--concurrency", "2", "--duration", "1", "--json", "closed.json"], tmp_path,
            timeout=120)
    assert p.returncode == 0, p.stderr
    assert "CLOSED LOOP" in p.stdout
    (r,) = json.loads((tmp_path / "closed.json").read_text())["results"]
    assert r["scenario"] == "load-closed" and r["scenario_details"]["succeeded"] > 10


def test_unreachable_target_and_bad_options_are_one_line(tmp_path):
    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    line = one_line_error(run(["load", f"http://127.0.0.1:{port}", "--rate", "10", "--duration", "1", "--protocol", "http-json"],
                              tmp_path, timeout=60), 2)
    assert "connect" in line and time.monotonic() - t0 < 30
    line = one_line_error(run(["load", "http://127.0.0.1:1", "--rate", "10", "--concurrency", "2"], tmp_path), 2)
    assert "one of --rate" in line
    bad = tmp_path / "trace.txt"
    bad.write_text("0.0\n0.1\nsoon\n")
    line = one_line_error(run(["load", f"http://127.0.0.1:{port}", "--trace", str(bad), "--protocol", "http-json"], tmp_path), 2)
    assert "line 3" in line


def test_plan_from_a_bench_invocation_over_batch_sizes(tmp_path):
    p = run(["bench", "spin:per_sample_100us", "--input", "x:float32[B,4]", "--batch", "1,4,16", "--max-time", "1",
             "--precision", "5%", "--quiet", "--json", "b.json"], tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    inv = json.loads((tmp_path / "b.json").read_text())["results"][0]["invocation"]
    p = run(["plan", "--invocation", inv, "--rate", "2000", "--slo", "p99<50ms", "--max-batch", "16", "--max-wait-ms", "2",
             "--requests", "20000"], tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "replicas needed:" in p.stdout
    line = one_line_error(run(["plan", "--invocation", inv, "--rate", "100", "--max-batch", "64"], tmp_path), 2)
    assert "largest measured batch size 16" in line


def test_rate_curve_with_repeated_requests_hits_the_servers_cache(tmp_path, cached_server):
    p = run(["load", cached_server, "--model", "mlp", "--rates", "50,100", "--repeat", "0.5", "--duration", "1.5",
             "--slo", "p99<500ms", "--json", "curve.json", "--no-save"], tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    results = json.loads((tmp_path / "curve.json").read_text())["results"]
    assert [r["scenario_details"]["search"]["offered"] for r in results] == [50.0, 100.0]
    assert all(r["scenario_details"]["search"]["phase"] == "curve" for r in results)
    sent = sum(r["scenario_details"]["requests"] for r in results)
    repeated = sum(r["scenario_details"]["repeat"]["realised"] * r["scenario_details"]["requests"] for r in results)
    assert 0.35 < repeated / sent < 0.65
    with urllib.request.urlopen(cached_server + "/v2/models/mlp/stats", timeout=5) as r:
        cache = json.loads(r.read())["cache"]
    # each run repeats within its own bodies (the same seed: the second run's fresh bodies are the first's
    # again, so its "fresh" requests hit too); the two probes are the only other requests
    assert cache["hits"] + cache["misses"] == sent + 2
    assert cache["hits"] >= repeated - 2
    p = run(["load", cached_server, "--model", "mlp", "--rates", "50,x"], tmp_path)
    assert "--rates" in one_line_error(p, 2)
