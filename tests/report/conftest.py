"""Results for the report tests: real ones (a busy-wait callable at several batch sizes) and,
derived from them, every kind the report draws differently: sweep points, server runs with
verdicts, a failed run, and strings that try to break out of the HTML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# Every character that means something in HTML, JS or mathtext.
EVIL = "<script>alert('x')</script>&amp; $\\frac{a}{b}$ \"q\" </svg>"


@pytest.fixture(scope="session")
def real_results():
    pytest.importorskip("matplotlib")
    import infermeter
    import spin

    return infermeter.bench(
        spin.per_sample_100us, inputs=["x:float32[B,4]"], batch_sizes=[1, 2, 4], max_time_s=0.4,
        precision=0.05, store=False,
    )


@pytest.fixture(scope="session")
def variety(real_results):
    """Sweep (threads x batch, plus a categorical axis), server runs over offered QPS with
    verdicts, a failed run and a malicious spec, built from the real results' samples."""
    from infermeter.result import Headline, SweepPoint, Verdict

    out = []
    for t in (1, 4):
        for r in real_results:
            c = r.model_copy(deep=True)
            c.id = f"sweepb{r.batch_size}t{t}"
            axes = {"batch_size": r.batch_size, "threads": t, "engine": "eager" if t < 4 else "compiled"}
            c.sweep = SweepPoint(sweep_id="sweep0001", point_key=json.dumps(axes, sort_keys=True), axes=axes)
            c.tags = {"note": EVIL}
            out.append(c)
    for i, qps in enumerate((100, 400, 800)):
        c = real_results[0].model_copy(deep=True)
        c.id, c.scenario = f"server{i}", "server"
        c.scenario_details = {"offered_qps": qps, "achieved_qps": min(qps, 500) * 0.98, "queries": 1000}
        c.verdict = Verdict(valid=qps < 800, reasons=[] if qps < 800 else [f"p99 over the bound {EVIL}"],
                            recommendations=[] if qps < 800 else ["lower --qps"])
        c.headline = Headline(metric="p99", value=c.latency.p99.value, unit="s", ci_low=c.latency.p99.ci_low)
        out.append(c)
    c = real_results[1].model_copy(deep=True)
    c.id, c.status, c.latency, c.throughput, c.error = "failed01", "failed", None, None, f"boom {EVIL}"
    out.append(c)
    c = real_results[1].model_copy(deep=True)
    c.id = "evil0001"
    c.model.spec = EVIL
    c.warnings = [*c.warnings, f"warning {EVIL}"]
    c.config = {**c.config, "note": EVIL}
    c.headline = Headline(metric="throughput", value=1234.5, unit="samples/s")
    out.append(c)
    return out


@pytest.fixture(scope="session")
def full_html(real_results, variety):
    """The report of every kind of result, titled with the malicious string, rendered once."""
    from infermeter.report.html import render_html

    return render_html([*real_results, *variety], title=EVIL)


def run_cli(args, tmp_path, timeout=120):
    """``python -m infermeter ARGS`` as a user runs it (pattern of tests/integration/test_cli.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = str(TESTS) + os.pathsep + env.get("PYTHONPATH", "")
    env["INFERMETER_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "infermeter", *args], capture_output=True, text=True, timeout=timeout,
        cwd=tmp_path, env=env,
    )


@pytest.fixture
def cli(tmp_path):
    """Run the CLI with its store at tmp_path/store.db."""
    return lambda *args, timeout=120: run_cli(list(args), tmp_path, timeout)


@pytest.fixture(scope="session")
def evil():
    return EVIL
