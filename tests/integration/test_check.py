"""`infermeter compare` and `infermeter check` end to end, in subprocesses, as a CI pipeline runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infermeter.result import ModelInfo, Result, SweepPoint
from infermeter.stats import describe_latency, throughput
from infermeter.store import Store, new_id

TESTS = Path(__file__).resolve().parents[1]
FAST = ["--max-time", "1.5", "--precision", "2%", "--min-iters", "400", "--quiet"]


def run(args, tmp_path, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER") and k != "SPIN_COMPARE_FACTOR"}
    env.update(PYTHONPATH=str(TESTS) + os.pathsep + env.get("PYTHONPATH", ""), INFERMETER_STORE=str(tmp_path / "store.db"),
               COLUMNS="200", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)


def one_line_error(p, code):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in p.stderr, p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Four CLI benches of one spec at known speeds, tagged by branch; returns (tmp dir, ids by branch)."""
    tmp = tmp_path_factory.mktemp("check")
    ids = {}
    for branch, factor in (("main", "1.0"), ("same", "1.0"), ("slow3", "1.03"), ("slow20", "1.2")):
        out = tmp / f"{branch}.json"
        p = run(["bench", "spin_compare:tunable", "--input", "x:float32[B,2]", "--tag", f"branch={branch}",
                 "--json", str(out), *FAST], tmp, env_extra={"SPIN_COMPARE_FACTOR": factor})
        assert p.returncode == 0, p.stderr
        ids[branch] = json.loads(out.read_text())["results"][0]["id"]
    return tmp, ids


def test_check_same_code_passes(store):
    # p50 only: the p99 of two runs on a shared machine differs by that machine's noise, which
    # the check rightly calls a difference; the median of a busy-wait spin does not move.
    tmp, ids = store
    p = run(["check", "--baseline", "branch=main", "--candidate", "branch=same", "--max-regression", "5%", "--metrics", "p50"], tmp)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert p.stdout.startswith("## infermeter check: PASS") and "| p50 |" in p.stdout


def test_check_twenty_percent_slower_fails_with_markdown(store):
    tmp, ids = store
    md = tmp / "pr.md"
    p = run(["check", "--baseline", "branch=main", "--candidate", ids["slow20"], "--max-regression", "5%",
             "--metrics", "p50,p99", "--markdown", str(md)], tmp)
    assert p.returncode == 1, (p.stdout, p.stderr)
    text = md.read_text()
    assert text.startswith("## infermeter check: FAIL") and "**regressed" in text and "| p99 |" in text
    assert "| p50 | " in text and text.split("| p50 |")[1].splitlines()[0].endswith("slower)** |")
    assert "FAIL" in p.stdout and p.stderr == ""
    # without --candidate: the newest ok run that is not on main (slow20)
    p = run(["check", "--baseline", "branch=main", "--json"], tmp)
    assert p.returncode == 1 and json.loads(p.stdout)["pairs"][0]["candidate_id"] == ids["slow20"]


def test_check_three_percent_slower_passes_a_five_percent_gate(store):
    tmp, ids = store
    p = run(["check", "--baseline", ids["main"], "--candidate", "branch=slow3", "--max-regression", "5%", "--metrics", "p50"], tmp)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "within 5%" in p.stdout
    p = run(["check", "--baseline", ids["main"], "--candidate", "branch=slow3", "--max-regression", "1%", "--metrics", "p50"], tmp)
    assert p.returncode == 1


def test_compare_many_runs_and_two_run_json(store):
    tmp, ids = store
    p = run(["compare", ids["main"], "branch=same", ids["slow3"], ids["slow20"], "--columns", "p50,mean,throughput,count"], tmp)
    assert p.returncode == 0, p.stderr
    assert f"{ids['main']} (baseline)" in p.stdout and "slower" in p.stdout and "n.s." in p.stdout, p.stdout
    p = run(["compare", ids["main"], ids["slow20"], "--json"], tmp)
    doc = json.loads(p.stdout)
    assert doc["significant"] is True and doc["ratio_p50"]["value"] == pytest.approx(1.2, rel=0.1), p.stdout
    assert {"ratio_p99", "p_value", "rows"} <= set(doc) and doc["baseline"] == ids["main"]
    p = run(["compare", ids["main"], ids["same"], "--json"], tmp)
    assert json.loads(p.stdout)["significant"] is False, p.stdout


def test_compare_sweep_points(tmp_path):
    sid = new_id()
    with Store(tmp_path / "store.db") as st:
        for i, batch in enumerate((1, 2, 4)):
            lat = describe_latency(np.random.default_rng(i).gamma(20.0, batch * 1e-3 / 20.0, 1000))
            st.save(Result(
                id=new_id(), invocation=new_id(), model=ModelInfo(spec="m.onnx", backend="onnx"), batch_size=batch,
                latency=lat, throughput=throughput(lat, batch),
                sweep=SweepPoint(sweep_id=sid, point_key=json.dumps({"batch": batch}), axes={"batch": batch}, index=i),
            ))
    p = run(["compare", "--sweep", sid, "--json"], tmp_path)
    doc = json.loads(p.stdout)
    assert p.returncode == 0 and doc["axes"] == ["batch"] and [r["axes"]["batch"] for r in doc["rows"]] == [1, 2, 4]
    assert doc["rows"][2]["cells"]["p50"]["ratio"]["value"] == pytest.approx(4.0, rel=0.1)
    assert doc["rows"][2]["cells"]["throughput"]["ratio"]["value"] == pytest.approx(1.0, rel=0.1)
    p = run(["compare", "--sweep", sid], tmp_path)
    assert p.returncode == 0 and "batch" in p.stdout and "(baseline)" in p.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["compare", "nosuchrun00", "nosuchrun01"], "nosuchrun00"),
        (["compare"], "--sweep"),
        (["compare", "--sweep", "nosuchsweep"], "nosuchsweep"),
        (["compare", "branch=nope"], "branch=nope"),
        (["check", "--baseline", "nosuchrun00"], "nosuchrun00"),
        (["check", "--baseline", "branch"], "no run"),
        (["check", "--baseline", "branch=nope"], "branch=nope"),
        (["check", "--baseline", "=main"], "NAME=VALUE"),
        (["check", "--baseline", "branch=main", "--max-regression", "x"], "--max-regression"),
        (["check", "--baseline", "branch=main", "--metrics", "p42"], "p42"),
    ],
)
def test_bad_input_one_line(store, args, needle):
    tmp, _ = store
    p = run(args, tmp)
    assert needle in one_line_error(p, 2)
