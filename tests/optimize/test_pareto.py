"""Pareto front, the choice within an accuracy budget, and verdicts, on hand-made candidates."""

from __future__ import annotations

from infermeter.optimize.pareto import Candidate, accuracy_drop, choose, pareto_front, verdict

BASE = Candidate(name="baseline", kind="baseline", speedup=1.0, speedup_ci_low=1.0, speedup_ci_high=1.0, accuracy=0.98)


def c(name: str, kind: str, speedup: float, low: float, acc: float, **kw) -> Candidate:
    return Candidate(name=name, kind=kind, speedup=speedup, speedup_ci_low=low, speedup_ci_high=speedup * 1.05,
                     accuracy=acc, **kw)


CANDS = [
    BASE,
    c("int8", "quantize-dynamic", 2.0, 1.9, 0.975),
    c("bf16", "bfloat16", 3.0, 2.8, 0.90),
    c("pruned", "prune-unstructured", 1.0, 0.97, 0.97),
    c("onnx", "export-onnx", 1.8, 1.7, 0.98),
    Candidate(name="compiled", kind="compile", status="failed", reason="inductor needs a C++ compiler"),
]


def test_front_holds_exactly_the_undominated_candidates() -> None:
    # int8 (2.0x, -0.005) is not dominated by onnx (1.8x, 0) nor bf16 (3x, -0.08); pruned and the baseline are
    assert sorted(pareto_front(CANDS, BASE)) == ["bf16", "int8", "onnx"]


def test_choice_is_the_fastest_within_budget_and_says_so() -> None:
    ch = choose(CANDS, BASE, max_drop=0.01)
    assert ch.chosen == "int8" and ch.within_budget and "2.00x" in ch.message
    ch = choose(CANDS, BASE, max_drop=0.1)
    assert ch.chosen == "bf16"
    ch = choose(CANDS, BASE, max_drop=0.0)
    assert ch.chosen == "onnx"  # no accuracy lost at all


def test_a_budget_nothing_meets_names_the_closest() -> None:
    cands = [BASE, c("bf16", "bfloat16", 3.0, 2.8, 0.90), c("int4", "quantize-weight", 4.0, 3.9, 0.80)]
    ch = choose(cands, BASE, max_drop=0.01)
    assert ch.chosen is None and not ch.within_budget and ch.closest == "bf16" and "closest" in ch.message


def test_noise_is_not_a_gain() -> None:
    ch = choose([BASE, c("meh", "threads", 1.03, 0.99, 0.98)], BASE, max_drop=0.01)
    assert ch.chosen is None and "keep the baseline" in ch.message


def test_verdicts_explain_why_not_faster() -> None:
    assert verdict(CANDS[1], BASE, 0.01) == "faster within budget"
    assert verdict(CANDS[2], BASE, 0.01) == "accuracy budget exceeded"
    assert "unstructured sparsity" in verdict(CANDS[3], BASE, 0.01)
    assert verdict(CANDS[5], BASE, 0.01).startswith("failed: inductor")
    slow_int8 = c("int8", "quantize-dynamic", 1.0, 0.98, 0.98)
    assert "no int8 dot-product" in verdict(slow_int8, BASE, 0.01, cpu_flags={"avx2": True})
    assert "re-quantizes" in verdict(slow_int8, BASE, 0.01, cpu_flags={"avx512_vnni": True})


def test_drop_respects_the_metric_direction() -> None:
    err_base = Candidate(name="b", kind="baseline", accuracy=0.10, higher_is_better=False)
    worse = Candidate(name="w", accuracy=0.15, higher_is_better=False)
    assert abs(accuracy_drop(worse, err_base) - 0.05) < 1e-12
