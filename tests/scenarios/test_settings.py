"""Bad scenario input: one clear UsageError, before any model is loaded; the CLI prints one line, exit 2."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.measure import bench
from infermeter.errors import UsageError

TESTS = Path(__file__).resolve().parents[1]


class NeverLoaded:
    def __call__(self, x):  # pragma: no cover - must not be reached
        raise AssertionError("the model ran although the settings were bad")


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(scenario="sever"), "unknown scenario 'sever'; use one of: single-stream, multi-stream, offline, server"),
        (dict(scenario="server", qps=0), "--qps must be above 0"),
        (dict(scenario="server", qps=-5.0), "--qps must be above 0"),
        (dict(scenario="server", qps=math.nan), "--qps must be a finite number"),
        (dict(scenario="server"), "needs --qps"),
        (dict(find_peak=True), "--find-peak searches the server scenario"),
        (dict(scenario="server", find_peak=True), "--find-peak needs --latency-bound-ms"),
        (dict(qps=10), "--qps applies to the server scenario"),
        (dict(scenario="offline", max_batch=4), "--max-batch applies to the server scenario"),
        (dict(scenario="multi-stream", batch_size=4), "multi-stream sets the batch"),
        (dict(samples_per_query=4), "--samples-per-query applies to the multi-stream scenario"),
        (dict(scenario="server", qps=10, target_percentile=100), "--target-percentile must be between 0 and 100"),
        (dict(scenario="server", qps=10, latency_bound_ms=0), "--latency-bound-ms must be above 0"),
        (dict(scenario="server", qps=10, max_wait_ms=-1), "--max-wait-ms must be at least 0"),
        (dict(scenario="server", qps=10, peak_steps=3), "--peak-steps applies to --find-peak"),
        (dict(scenario="offline", offline_samples=0), "--offline-samples must be a whole number >= 1"),
    ],
)
def test_bad_scenario_settings(kw, match) -> None:
    with pytest.raises(UsageError, match=match.replace("(", r"\(").replace("[", r"\[")):
        bench(NeverLoaded(), inputs=["x:float32[B,2]"], store=False, **kw)


def _cli(args, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    env["INFERMETER_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--scenario", "server", "--qps", "0"], "--qps must be above 0"),
        (["--scenario", "server", "--qps", "-3"], "--qps must be above 0"),
        (["--find-peak"], "--find-peak searches the server scenario"),
    ],
)
def test_cli_bad_scenario_is_one_line_exit_2(args, needle, tmp_path) -> None:
    p = _cli(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", *args], tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_cli_server_run_renders_headline_and_verdict(tmp_path) -> None:
    import json

    out = tmp_path / "r.json"
    p = _cli(["bench", "spin:predict_200us", "--input", "x:float32[B,2]", "--scenario", "server", "--qps", "300",
              "--latency-bound-ms", "50", "--min-duration", "1", "--max-time", "4", "--quiet", "--json", str(out)],
             tmp_path)
    assert p.returncode == 0, p.stderr
    for label in ("server", "headline p99 latency", "offered 300.0 QPS", "schedule lag", "batches formed"):
        assert label in p.stdout, p.stdout
    assert "VALID" in p.stdout
    doc = json.loads(out.read_text())["results"][0]
    assert doc["scenario"] == "server" and doc["headline"]["metric"] == "p99 latency"
    assert doc["verdict"]["valid"] in (True, False) and "checks" in doc["verdict"]
    assert doc["config"]["qps"] == 300.0 and doc["config"]["latency_bound_s"] == 0.05
