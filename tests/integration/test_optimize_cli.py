"""`infermeter optimize` end to end, in subprocesses, on the trained digits models:
the table, the saved model and recipe (which rebuilds the candidate), the store
and the HTML report's Pareto chart, and each bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_cli import one_line_error, run  # tests/integration is on sys.path (no package)

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("sklearn")
pytest.importorskip("torch_pruning")

FAST = ["--max-time", "1", "--quiet"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, str]:
    """One digits training for the module (cached there), not one per test."""
    return {"INFERMETER_CACHE": str(tmp_path_factory.mktemp("cache"))}


def test_optimize_table_outputs_store_report_and_recipe(tmp_path, cache):
    out = tmp_path / "out"
    p = run(["optimize", "zoo:digits-mlp", "--only", "export,prune", *FAST, "--out", str(out), "--json", "rep.json"],
            tmp_path, timeout=600, env_extra=cache)
    assert p.returncode == 0, p.stderr
    for name in ("baseline", "ort-all", "prune-50%", "prune-90%", "prune-structured-50%"):
        assert name in p.stdout
    rep = json.loads((tmp_path / "rep.json").read_text())
    rows = {r["record"]["name"]: r for r in rep["rows"]}
    for name in ("prune-50%", "prune-90%"):  # when magnitude pruning is not faster, the verdict says why
        v = rows[name]["verdict"]
        assert v in ("faster within budget", "accuracy budget exceeded") or "dense kernels ignore unstructured sparsity" in v, v
    assert "accuracy budget exceeded" in rows["prune-90%"]["verdict"]
    assert rows["baseline"]["record"]["accuracy"] > 0.9  # real held-out digits accuracy
    assert rows["prune-90%"]["accuracy_delta"] < 0  # 90% of the weights gone costs accuracy
    assert rows["ort-all"]["speedup"] > 0 and rows["ort-all"]["speedup_ci_low"] <= rows["ort-all"]["speedup"]
    chosen = rep["choice"]["chosen"]
    if chosen is not None:  # something was significantly faster within 1 point: it and its recipe are saved
        assert Path(rep["model_path"]).is_file() and Path(rep["recipe_path"]).is_file()
        again = run(["optimize", "zoo:digits-mlp", "--recipe", rep["recipe_path"], *FAST, "--json", "again.json"],
                    tmp_path, timeout=300, env_extra=cache)
        assert again.returncode == 0, again.stderr
        rows2 = json.loads((tmp_path / "again.json").read_text())["rows"]
        assert [r["record"]["name"] for r in rows2] == ["baseline", chosen, "baseline-repeat"]
        assert rows2[1]["record"]["steps"] == rows[chosen]["record"]["steps"]
    assert (out / "report.json").is_file()
    html = run(["report", "--invocation", rep["session"], "--html", "r.html"], tmp_path, env_extra=cache)
    if html.returncode == 0:  # matplotlib present
        page = (tmp_path / "r.html").read_text()
        assert f"pareto-{rep['session']}" in page and "prune-90%" in page


def test_bad_eval_file_metric_out_and_only_are_one_line(tmp_path, cache):
    bad = tmp_path / "bad.npz"
    np.savez(bad, pixels=np.zeros((5, 64), np.float32))
    line = one_line_error(run(["optimize", "zoo:digits-mlp", "--eval", str(bad), *FAST], tmp_path, env_extra=cache), 2)
    assert "no array for input 'x'" in line
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((5, 64), np.float32), labels=np.zeros((5, 3)))
    line = one_line_error(run(["optimize", "zoo:digits-mlp", "--eval", str(wrong), "--metric", "accuracy", *FAST], tmp_path,
                              env_extra=cache), 2)
    assert "accuracy" in line
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((5, 64), np.float32), labels=np.zeros(5, np.int64))
    line = one_line_error(run(["optimize", "zoo:digits-mlp", "--eval", str(good), "--metric", "nosuchmod:fn", *FAST], tmp_path,
                              env_extra=cache), 2)
    assert "nosuchmod" in line
    (tmp_path / "afile").write_text("x")
    line = one_line_error(run(["optimize", "zoo:digits-mlp", "--out", str(tmp_path / "afile" / "sub"), *FAST], tmp_path,
                              env_extra=cache), 2)
    assert "--out" in line
    line = one_line_error(run(["optimize", "zoo:digits-mlp", "--only", "quantise", *FAST], tmp_path, env_extra=cache), 2)
    assert "--only" in line and "quantize" in line
    line = one_line_error(run(["optimize", "zoo:nope", *FAST], tmp_path, env_extra=cache), 2)
    assert "unknown zoo model" in line


def test_time_budget_keeps_finished_candidates(tmp_path, cache):
    p = run(["optimize", "zoo:digits-mlp", "--budget", "25s", *FAST, "--json", "rep.json"], tmp_path, timeout=300,
            env_extra=cache)
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["budget_exhausted"] is True
    reasons = [r["record"]["reason"] for r in rep["rows"]]
    assert any("time budget exhausted" in why for why in reasons)
    assert rep["rows"][0]["record"]["status"] == "ok"  # the baseline was measured and kept
    assert "time budget" in p.stdout
    from infermeter.store import Store

    with Store(tmp_path / "store.db") as st:  # every candidate, run or not, is in the store
        kept = st.invocation(rep["session"])
    assert {r.tags["candidate"] for r in kept} == {r["record"]["name"] for r in rep["rows"]}
