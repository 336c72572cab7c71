"""The one object every output reads: CLI tables, the Python API, the store, JSON.

Results are data (torch.utils.benchmark's ``Measurement``): raw samples and a
frozen description of what was measured; statistics are derived from them by
``stats`` and stored beside them; rendering lives in ``report/``.

Units: seconds everywhere in the object and in JSON; the console shows ms.

Schema history (``SCHEMA``):
  infermeter.result/1 — first version. Later additions are optional fields with
  defaults (tags, verdict, headline, scenario_details, sweep, op_profile,
  prediction), so every /1
  document written before them still loads.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .env import Env
from .predict.schema import OpProfile, Prediction

__all__ = [
    "SCHEMA",
    "Estimate",
    "LatencyStats",
    "Throughput",
    "Memory",
    "Phases",
    "TimerInfo",
    "ModelInfo",
    "Verdict",
    "Headline",
    "SweepPoint",
    "Result",
    "load_result",
    "results_to_json",
]

SCHEMA = "infermeter.result/1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Estimate(_Model):
    """A statistic with its confidence interval. A bound is ``None`` when the
    sample is too small to give it (e.g. the upper bound of p99.9 from 500 samples)."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None


class LatencyStats(_Model):
    unit: Literal["s"] = "s"
    count: int = Field(description="number of samples the statistics are computed from")
    per: Literal["call", "block"] = Field(
        "call", description="'block': each sample is the mean of block_size back-to-back calls"
    )
    block_size: int = 1
    percentile_definition: str = "nearest-rank"
    ci_method: str = ""
    confidence: float = 0.95
    mean: Estimate
    std: float
    min: float
    max: float
    p50: Estimate
    p90: Estimate
    p95: Estimate
    p99: Estimate
    p999: Estimate
    samples: list[float] = Field(default_factory=list, description="raw samples, seconds, in issue order")


class Throughput(_Model):
    unit: Literal["samples/s"] = "samples/s"
    samples_per_s: Estimate
    method: str = ""


class Memory(_Model):
    load_peak_rss_bytes: int | None = None
    inference_peak_rss_bytes: int | None = None
    rss_accounting: str = ""
    device_peak_bytes: int | None = None
    device_accounting: str | None = None


class Phases(_Model):
    import_s: float | None = Field(None, description="importing the backend library (torch, onnxruntime); not in load_s")
    load_s: float | None = Field(None, description="from spec (file) to a runner ready to call, backend already imported")
    first_inference_s: float | None = Field(None, description="first (cold) call, synced")
    warmup_iters: int = 0
    warmup_s: float = 0.0
    warmup_samples: list[float] = Field(default_factory=list, description="warm-up latencies, seconds, in call order")
    measure_s: float = 0.0


class TimerInfo(_Model):
    clock: str = "host"
    overhead_s: float | None = Field(None, description="harness cost of one timed no-op call")
    block_size: int = 1
    gc_disabled: bool = True
    gc_collections: int = 0
    device_host_ratio: float | None = Field(
        None, description="device clock: median host-clock time over median device-clock time (cross-check)"
    )


class ModelInfo(_Model):
    spec: str
    backend: str
    device: str = "cpu"
    dtype: str | None = None
    params: int | None = None
    file_size_bytes: int | None = None
    inputs: list[str] = Field(default_factory=list, description="input specs, as --input takes them")
    details: dict[str, Any] = Field(default_factory=dict, description="backend facts: providers, threads in force …")


class Verdict(_Model):
    """VALID or INVALID, with LoadGen's kinds of reasons and what to do about them."""

    valid: bool
    reasons: list[str] = Field(default_factory=list, description="why INVALID (empty when VALID)")
    recommendations: list[str] = Field(default_factory=list, description="what to change: 'lower --qps', 'run longer' …")
    checks: dict[str, Any] = Field(default_factory=dict, description="each rule's inputs and outcome")

    @property
    def label(self) -> str:
        return "VALID" if self.valid else "INVALID"


class Headline(_Model):
    """The one figure a scenario is judged by (p90 for single-stream, throughput for offline …)."""

    metric: str
    value: float
    unit: str
    ci_low: float | None = None
    ci_high: float | None = None


class SweepPoint(_Model):
    """Where a result sits in a sweep: which sweep, which point, which repeat."""

    sweep_id: str
    point_key: str = Field(description="canonical JSON of the point's axis values; the resume key")
    axes: dict[str, Any] = Field(default_factory=dict)
    index: int = 0
    repeat: int | None = Field(None, description="process index when a point is repeated in N processes; None for the merged result")
    processes: int = 1
    executor: str = "local"
    parallel: int = Field(1, description="points run at once; >1 means points disturbed each other's timing")


class Result(_Model):
    schema_: str = Field(SCHEMA, alias="schema")
    id: str
    invocation: str = Field(description="id shared by the results of one command (one per batch size)")
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None
    model: ModelInfo
    batch_size: int
    scenario: str = "single-stream"
    config: dict[str, Any] = Field(default_factory=dict, description="the exact settings asked for")
    env: Env | None = None
    phases: Phases = Field(default_factory=Phases)
    latency: LatencyStats | None = None
    throughput: Throughput | None = None
    memory: Memory = Field(default_factory=Memory)
    timer: TimerInfo = Field(default_factory=TimerInfo)
    stop_reason: str | None = None
    warnings: list[str] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict, description="user labels (--tag name=value)")
    headline: Headline | None = None
    verdict: Verdict | None = None
    scenario_details: dict[str, Any] = Field(default_factory=dict, description="scenario facts: offered/achieved QPS, batches formed …")
    sweep: SweepPoint | None = None
    op_profile: OpProfile | None = Field(None, description="per-operator time (infermeter profile)")
    prediction: Prediction | None = Field(None, description="predicted figures (infermeter predict)")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def load_result(data: dict[str, Any] | str) -> Result:
    """Read a result of any known schema version."""
    if isinstance(data, str):
        data = json.loads(data)
    version = data.get("schema")
    if version == SCHEMA:
        return Result.model_validate(data)
    raise ValueError(f"unknown result schema {version!r}; this infermeter reads {SCHEMA}")


def results_to_json(results: list[Result]) -> str:
    """The document ``--json`` writes: the invocation's results, one per batch size."""
    return json.dumps({"schema": SCHEMA, "results": [r.to_json_dict() for r in results]}, indent=2)
