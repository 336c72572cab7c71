"""Which candidates are worth having: the Pareto front of speed against accuracy,
the best candidate within an accuracy budget, and a verdict per candidate that
says why a change did or did not help.

Speed is a speed-up over the baseline with its confidence interval (from
``stats.compare``); a candidate counts as faster only when the interval's lower
end clears ``1 + min_effect``, so noise never reads as a gain. Accuracy is a
metric where higher is better or an error where lower is better; the budget is
a drop in the metric's own units (``0.01`` = one point of accuracy, or one
point of fidelity such as top-1 agreement).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Candidate", "Choice", "pareto_front", "choose", "verdict", "accuracy_drop"]


class Candidate(BaseModel):
    """One model made from the baseline, as measured and evaluated."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str = Field("", description="quantize-dynamic, prune-unstructured, compile … ('baseline' for the original)")
    lineage: list[str] = Field(default_factory=list, description="the transforms from the baseline, in order")
    status: Literal["ok", "failed"] = "ok"
    reason: str = Field("", description="why it failed, when it did")
    speedup: float | None = Field(None, description="baseline time / candidate time (of the objective)")
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    accuracy: float | None = None
    higher_is_better: bool = True
    size_bytes: int | None = None
    peak_memory_bytes: int | None = None


class Choice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chosen: str | None = Field(description="the fastest candidate within the budget; None if none is faster")
    within_budget: bool
    message: str
    closest: str | None = Field(None, description="when nothing meets the budget: the candidate that comes closest")


def accuracy_drop(c: Candidate, baseline: Candidate) -> float | None:
    """How much worse than the baseline, in the metric's units (negative: better)."""
    if c.accuracy is None or baseline.accuracy is None:
        return None
    d = baseline.accuracy - c.accuracy
    return d if c.higher_is_better else -d


def _ok(c: Candidate) -> bool:
    return c.status == "ok" and c.speedup is not None


def pareto_front(cands: list[Candidate], baseline: Candidate) -> list[str]:
    """Names of the candidates no other candidate beats on both speed-up and accuracy
    (ties on one axis need a strict win on the other). Failed ones never count."""
    pts = [c for c in cands if _ok(c)]
    front = []
    for c in pts:
        dc = accuracy_drop(c, baseline) or 0.0
        dominated = False
        for o in pts:
            if o is c:
                continue
            do = accuracy_drop(o, baseline) or 0.0
            if o.speedup >= c.speedup and do <= dc and (o.speedup > c.speedup or do < dc):  # type: ignore[operator]
                dominated = True
                break
        if not dominated:
            front.append(c.name)
    return front


def _faster(c: Candidate, min_effect: float) -> bool:
    low = c.speedup_ci_low if c.speedup_ci_low is not None else c.speedup
    return low is not None and low > 1.0 + min_effect


def choose(cands: list[Candidate], baseline: Candidate, max_drop: float, *, min_effect: float = 0.02) -> Choice:
    """The fastest candidate that is significantly faster and within ``max_drop``."""
    ok = [c for c in cands if _ok(c) and c.kind != "baseline"]
    fast = [c for c in ok if _faster(c, min_effect)]
    within = [c for c in fast if (accuracy_drop(c, baseline) or 0.0) <= max_drop]
    if within:
        best = max(within, key=lambda c: c.speedup or 0.0)
        drop = accuracy_drop(best, baseline)
        return Choice(chosen=best.name, within_budget=True,
                      message=f"{best.name}: {best.speedup:.2f}x faster"
                      + (f", accuracy drop {drop:+.4g} (budget {max_drop:.4g})" if drop is not None else ""))
    if fast:
        closest = min(fast, key=lambda c: accuracy_drop(c, baseline) or 0.0)
        return Choice(chosen=None, within_budget=False, closest=closest.name,
                      message=f"no faster candidate stays within the accuracy budget {max_drop:.4g}; closest: "
                      f"{closest.name} ({closest.speedup:.2f}x, drop {accuracy_drop(closest, baseline):+.4g})")
    return Choice(chosen=None, within_budget=False,
                  message="no candidate is significantly faster than the baseline; keep the baseline")


def verdict(c: Candidate, baseline: Candidate, max_drop: float, *, min_effect: float = 0.02,
            cpu_flags: dict[str, bool] | None = None) -> str:
    """One line saying what the candidate is worth, and why when it is not faster."""
    if c.status != "ok":
        return f"failed: {c.reason}" if c.reason else "failed"
    if c.kind == "baseline":
        return "baseline"
    drop = accuracy_drop(c, baseline)
    over = drop is not None and drop > max_drop
    if _faster(c, min_effect):
        return "accuracy budget exceeded" if over else "faster within budget"
    why = _not_faster_reason(c, cpu_flags or {})
    high = c.speedup_ci_high if c.speedup_ci_high is not None else c.speedup
    slower = high is not None and high < 1.0 - min_effect
    if slower:
        text = f"slower ({c.speedup:.2f}x)" + (f": {why}" if why else "")
    else:
        text = "not faster" + (f": {why}" if why else f" (the speed-up's CI does not clear +{min_effect:.0%})")
    return text + ("; accuracy budget exceeded" if over else "")


def _not_faster_reason(c: Candidate, flags: dict[str, bool]) -> str:
    kind = c.kind
    if kind == "prune-unstructured":
        return "dense kernels ignore unstructured sparsity (zeros are still multiplied)"
    if kind.startswith("quantize") and flags and not any(
        flags.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    ):
        return "no int8 dot-product instructions on this CPU (VNNI/AMX-INT8/dot-prod), so int8 kernels gain little"
    if kind.startswith("quantize-dynamic"):
        return "dynamic quantization re-quantizes activations every call; at this size that cost eats the int8 gain"
    native = {"bfloat16": ("avx512_bf16", "amx_bf16", "bf16"), "float16": ("avx512_fp16", "amx_fp16", "fphp", "asimdhp")}
    if kind in native and flags and not any(flags.get(f) for f in native[kind]):
        name = "bf16" if kind == "bfloat16" else "fp16"
        return f"no native {name} arithmetic on this CPU: the narrow dtype is converted to float32 and back"
    return ""
