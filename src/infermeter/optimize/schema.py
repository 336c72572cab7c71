"""The data of an optimize run: steps and recipes (how a candidate is made), the
record kept with each candidate's measurement, and the report of the whole run.

Plain pydantic models, so they travel as JSON between the command and its
worker processes, sit in ``Result.scenario_details["optimize"]`` in the store,
and are written as the recipe YAML that rebuilds a chosen model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .evaluate import Evaluation
from .pareto import Choice

__all__ = ["Step", "Recipe", "CandidatePlan", "CandidateRecord", "Row", "OptimizeReport", "FAMILIES", "OBJECTIVES"]

#: Families of candidates, as ``--only`` names them.
FAMILIES = ("export", "quantize", "precision", "prune", "distill", "compile", "runtime")
OBJECTIVES = ("latency-p50", "latency-p99", "throughput")


def _param_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


class Step(BaseModel):
    """One transform: ``op`` names it (``export-onnx``, ``quantize-dynamic``, ``cast`` …),
    ``params`` hold its settings exactly as it was run."""

    model_config = ConfigDict(extra="forbid")

    op: str
    params: dict[str, Any] = Field(default_factory=dict)

    def text(self) -> str:
        """The lineage entry: ``quantize-dynamic(per_channel=False, weight_type=int8)``."""
        inner = ", ".join(f"{k}={_param_text(v)}" for k, v in self.params.items())
        return f"{self.op}({inner})" if inner else self.op


class Recipe(BaseModel):
    """What rebuilds a candidate from its base model: the steps in order, and the
    runtime settings it was measured with. Written as YAML next to a saved model."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="the model spec the steps start from")
    candidate: str = ""
    steps: list[Step] = Field(default_factory=list)
    runtime: dict[str, Any] = Field(default_factory=dict, description="threads, batch_size, compile … as measured")
    infermeter: str = Field("", description="the infermeter version that made it")
    note: str = ""


class CandidatePlan(BaseModel):
    """A candidate before it runs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    family: str = Field(description="one of FAMILIES, or 'baseline'")
    kind: str = Field(description="what pareto.verdict reasons about: quantize-dynamic, prune-unstructured, bfloat16 …")
    steps: list[Step] = Field(default_factory=list)
    runtime: dict[str, Any] = Field(default_factory=dict, description="threads, batch_size for the measurement")
    skip: str = Field("", description="why it will not run here (set before running; the row says so)")
    base_batch: int | None = Field(None, description="the baseline's batch size: the lineage names a different one")

    def lineage(self) -> list[str]:
        """The steps, then the runtime settings that differ from the baseline's."""
        rt = [f"{k}={v}" for k, v in self.runtime.items() if k != "batch_size" or v != (self.base_batch or v)]
        return [s.text() for s in self.steps] + ([f"runtime({', '.join(rt)})"] if rt else [])


class CandidateRecord(BaseModel):
    """What one candidate's worker found, beside its Result (``scenario_details["optimize"]``)."""

    model_config = ConfigDict(extra="forbid")

    session: str = Field(description="id shared by the candidates of one optimize run")
    name: str
    family: str
    kind: str
    steps: list[Step] = Field(default_factory=list)
    lineage: list[str] = Field(default_factory=list)
    runtime: dict[str, Any] = Field(default_factory=dict)
    status: Literal["ok", "failed", "skipped"] = "ok"
    reason: str = ""
    objective: str = "latency-p50"
    batch_size: int = 1
    evaluation: Evaluation | None = None
    accuracy: float | None = Field(None, description="the figure the budget is judged on (metric, or fidelity when no labels)")
    accuracy_name: str = Field("", description="'accuracy', 'mse', 'fidelity: cosine', 'fidelity: top-1 agreement' …")
    higher_is_better: bool = True
    size_bytes: int | None = Field(None, description="the candidate's model file on disk")
    artifact: str | None = Field(None, description="where the candidate's model file was written")
    artifact_format: str | None = Field(None, description="onnx, pt2, torchscript")
    build_s: float | None = Field(None, description="seconds spent making the candidate (export, quantize, train …)")
    max_drop: float = Field(0.01, description="the accuracy budget, in the accuracy figure's units")
    notes: list[str] = Field(default_factory=list)


class Row(BaseModel):
    """A candidate as the report shows it: the record, its speed-up against the baseline, verdict, front."""

    model_config = ConfigDict(extra="forbid")

    record: CandidateRecord
    result_id: str | None = None
    objective_value_s: float | None = Field(None, description="p50/p99 latency in s, or None for throughput")
    throughput: float | None = Field(None, description="samples/s")
    speedup: float | None = None
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    accuracy_delta: float | None = Field(None, description="candidate − baseline, in the figure's units")
    peak_memory_bytes: int | None = None
    verdict: str = ""
    on_front: bool = False
    chosen: bool = False


class OptimizeReport(BaseModel):
    """The whole run: what ``infermeter optimize`` prints, saves and reports."""

    model_config = ConfigDict(extra="forbid")

    session: str
    model: str
    objective: str
    batch_size: int
    accuracy_name: str
    higher_is_better: bool = True
    max_drop: float
    rows: list[Row]
    choice: Choice
    confidence: float = 0.95
    notes: list[str] = Field(default_factory=list)
    out_dir: str | None = None
    model_path: str | None = None
    recipe_path: str | None = None
    budget_s: float | None = None
    elapsed_s: float | None = None
    budget_exhausted: bool = False
