"""The optimize run's plan (which candidates, which skipped and why), its option
parsing, and the report it derives from measurements: speed-ups with CIs from
real samples of known service times, verdicts, the front and the choice."""

from __future__ import annotations

import numpy as np
import pytest

from infermeter.errors import UsageError
from infermeter.optimize.candidates import parse_only, plan_candidates
from infermeter.optimize.run import _resolve_drop, parse_budget, parse_drop
from infermeter.optimize.schema import CandidateRecord
from infermeter.optimize.summary import build_report, reports_of
from infermeter.result import Estimate, LatencyStats, ModelInfo, Result
from infermeter.stats.percentiles import describe_latency


def test_torch_plan_covers_every_family_and_says_why_it_skips():
    plans = plan_candidates("torch", objective="latency-p50", batch_sizes=[1], has_train=False, cpu_count=2,
                            dtype_support={"bfloat16": (True, "avx512_bf16"), "float16": (False, "no avx512_fp16/amx_fp16")})
    assert plans[0].name == "baseline"
    families = {p.family for p in plans}
    assert families >= {"export", "quantize", "precision", "prune", "distill", "compile", "runtime"}
    by = {p.name: p for p in plans}
    assert by["fp16"].skip.startswith("no avx512_fp16")
    assert by["bf16"].skip == ""
    assert "--train" in by["distill-shallow"].skip
    assert by["ort-all"].runtime["ort_level"] == "all" and by["ort-all"].steps[0].op == "export-onnx"
    assert by["threads-1"].runtime == {"batch_size": 1, "threads": 1}
    assert [s.op for s in by["compile-bf16"].steps] == ["cast", "compile"]
    assert by["ort-int8-dynamic"].lineage() == ["export-onnx(opset=17)", "quantize-dynamic(per_channel=False, weight_type=int8)"]
    assert by["threads-1"].lineage() == ["runtime(threads=1)"]


def test_onnx_plan_skips_pytorch_only_transforms_and_only_filters():
    plans = plan_candidates("onnx", objective="throughput", batch_sizes=[1, 8], only={"quantize", "runtime"}, cpu_count=1)
    by = {p.name: p for p in plans}
    assert by["ort-int8-dynamic"].skip == "" and by["ort-int8-dynamic"].steps[0].op == "quantize-dynamic"
    assert "PyTorch" in by["torch-int8-dynamic"].skip
    assert by["batch-8"].runtime["batch_size"] == 8 and by["batch-8"].lineage() == ["runtime(batch_size=8)"]
    assert "threads-1" not in by  # one core: nothing to vary
    assert {p.family for p in plans} == {"baseline", "quantize", "runtime"}


@pytest.mark.parametrize("bad", ["quantise", "", "prune,nope"])
def test_only_rejects_unknown_families(bad):
    with pytest.raises(UsageError, match="--only"):
        parse_only(bad)


def test_drop_and_budget_parsing():
    assert parse_drop("1%") == (0.01, True)
    assert parse_drop("0.5") == (0.5, False)
    assert parse_budget("10m") == 600 and parse_budget("90s") == 90 and parse_budget("1h") == 3600 and parse_budget("45") == 45
    with pytest.raises(UsageError, match="max-accuracy-drop"):
        parse_drop("a lot")
    with pytest.raises(UsageError, match="budget"):
        parse_budget("soon")
    with pytest.raises(UsageError):
        parse_budget("0s")
    # a percentage is points for accuracy-like figures, relative for errors
    assert _resolve_drop(0.01, True, "accuracy", True, 0.97) == 0.01
    assert _resolve_drop(0.01, True, "fidelity: cosine", True, 1.0) == 0.01
    assert _resolve_drop(0.10, True, "mse", False, 2.0) == pytest.approx(0.2)
    assert _resolve_drop(0.3, False, "mse", False, 2.0) == 0.3


def _result(samples: np.ndarray, batch: int, name: str) -> Result:
    lat = describe_latency(samples)
    return Result(id=f"r-{name}", invocation="s1", model=ModelInfo(spec="m", backend="torch"), batch_size=batch, latency=lat)


def _record(name: str, family: str, kind: str, accuracy: float | None, status: str = "ok", reason: str = "") -> CandidateRecord:
    return CandidateRecord(session="s1", name=name, family=family, kind=kind, status=status, reason=reason, accuracy=accuracy,
                           accuracy_name="accuracy", max_drop=0.01)


def test_report_speedups_verdicts_front_and_choice_from_samples():
    rng = np.random.default_rng(0)
    base = 0.010 * (1 + 0.02 * rng.standard_normal(400))
    fast = 0.004 * (1 + 0.02 * rng.standard_normal(400))  # 2.5x faster
    faster_bad = 0.002 * (1 + 0.02 * rng.standard_normal(400))  # 5x faster, too inaccurate
    same = 0.010 * (1 + 0.02 * rng.standard_normal(400))  # no faster
    pairs = [
        (_record("baseline", "baseline", "baseline", 0.97), _result(base, 1, "b")),
        (_record("bf16", "precision", "bfloat16", 0.965), _result(fast, 1, "f")),
        (_record("prune-90%", "prune", "prune-unstructured", 0.50), _result(faster_bad, 1, "p")),
        (_record("prune-50%", "prune", "prune-unstructured", 0.97), _result(same, 1, "s")),
        (_record("fp16", "precision", "float16", None, "skipped", "no avx512_fp16"), None),
        (_record("compile", "compile", "compile", None, "failed", "torch.compile failed: no compiler"), None),
    ]
    rep = build_report(pairs, cpu_flags={"avx512_bf16": True})
    rows = {r.record.name: r for r in rep.rows}
    assert rows["bf16"].speedup == pytest.approx(2.5, rel=0.05)
    assert rows["bf16"].speedup_ci_low < 2.5 < rows["bf16"].speedup_ci_high
    assert rows["bf16"].verdict == "faster within budget" and rows["bf16"].chosen
    assert rows["prune-90%"].verdict == "accuracy budget exceeded"
    assert rows["prune-50%"].verdict.startswith("not faster: dense kernels ignore unstructured sparsity")
    assert rows["fp16"].verdict == "skipped: no avx512_fp16"
    assert rows["compile"].verdict.startswith("failed: torch.compile failed")
    assert rows["bf16"].on_front and rows["prune-90%"].on_front and not rows["prune-50%"].on_front
    assert rows["bf16"].accuracy_delta == pytest.approx(-0.005)
    assert rep.choice.chosen == "bf16"


def test_throughput_speedup_counts_samples_per_batch():
    rng = np.random.default_rng(1)
    b1 = 0.010 * (1 + 0.01 * rng.standard_normal(300))
    b8 = 0.040 * (1 + 0.01 * rng.standard_normal(300))  # 8 rows in 4x the time: 2x the throughput
    rec = _record("baseline", "baseline", "baseline", 1.0)
    rec.objective = "throughput"
    pairs = [(rec, _result(b1, 1, "b")), (_record("batch-8", "runtime", "runtime", 1.0), _result(b8, 8, "8"))]
    rep = build_report(pairs)
    assert rep.rows[1].speedup == pytest.approx(2.0, rel=0.03)


def test_reports_of_groups_stored_results_by_session():
    rng = np.random.default_rng(2)
    res = []
    for name, fam, t in (("baseline", "baseline", 0.01), ("bf16", "precision", 0.005)):
        r = _result(t * (1 + 0.01 * rng.standard_normal(200)), 1, name)
        r.scenario_details = {"optimize": _record(name, fam, "bfloat16" if fam != "baseline" else "baseline", 0.9).model_dump(mode="json")}
        res.append(r)
    other = _result(np.full(10, 0.01) + rng.random(10) * 1e-4, 1, "other")
    reps = reports_of(res + [other])
    assert len(reps) == 1 and reps[0].choice.chosen == "bf16"
    assert isinstance(reps[0].rows[0].speedup, float)
    assert Estimate  # the schema's estimate type is what speed-ups are computed from
    assert LatencyStats


def test_speedups_use_the_faster_of_the_two_baseline_measurements_and_say_so():
    rng = np.random.default_rng(3)
    slow_base = 0.016 * (1 + 0.02 * rng.standard_normal(300))  # a noisy moment at the start
    base_again = 0.010 * (1 + 0.02 * rng.standard_normal(300))
    cand = 0.010 * (1 + 0.02 * rng.standard_normal(300))  # really no faster than the baseline
    pairs = [
        (_record("baseline", "baseline", "baseline", 0.9), _result(slow_base, 1, "b")),
        (_record("prune-50%", "prune", "prune-unstructured", 0.9), _result(cand, 1, "p")),
        (_record("baseline-repeat", "baseline-repeat", "baseline", 0.9), _result(base_again, 1, "b2")),
    ]
    rep = build_report(pairs)
    rows = {r.record.name: r for r in rep.rows}
    assert rows["prune-50%"].speedup == pytest.approx(1.0, abs=0.03)  # not the 1.6x the slow start would give
    assert rows["prune-50%"].verdict.startswith("not faster: dense kernels")
    assert rows["baseline-repeat"].speedup == 1.0 and "measured again" in rows["baseline-repeat"].verdict
    assert rep.choice.chosen is None
    assert any("drifted" in n for n in rep.notes)
