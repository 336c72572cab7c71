"""Option types shared by the commands (one definition per flag)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing import Annotated

BatchOpt = Annotated[str, typer.Option("--batch", "-b", help="batch sizes, comma-separated: 1,8,32")]
InputOpt = Annotated[
    Optional[List[str]],
    typer.Option("--input", "-i", help="input spec NAME:DTYPE[DIMS], B = batch dim, e.g. x:float32[B,3,224,224]; repeat per input"),
]
DimOpt = Annotated[Optional[List[str]], typer.Option("--dim", "-d", help="set a symbolic dim: seq=128 (repeatable)")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help=".npy or .npz of input rows (axis 0) instead of random data")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="float32, float16 or bfloat16 (PyTorch)")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", "-t", min=1, help="intra-op threads (PyTorch, ONNX Runtime)")]
ProviderOpt = Annotated[
    Optional[List[str]], typer.Option("--provider", help="ONNX Runtime execution provider (repeatable), e.g. CPUExecutionProvider")
]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="stop when the 95% CI of the median is within this of it: 1% or 0.01")]
MaxTimeOpt = Annotated[float, typer.Option("--max-time", min=0.001, help="seconds per batch size at most")]
MinTimeOpt = Annotated[float, typer.Option("--min-time", min=0.0, help="seconds per batch size at least")]
MinItersOpt = Annotated[Optional[int], typer.Option("--min-iters", min=1, help="samples at least")]
MaxItersOpt = Annotated[Optional[int], typer.Option("--max-iters", min=1, help="samples at most")]
KeepGcOpt = Annotated[bool, typer.Option("--keep-gc", help="leave Python's garbage collector on while timing")]
HangTimeoutOpt = Annotated[
    float, typer.Option("--hang-timeout", min=1.0, help="seconds without progress (a call or the load that never returns) before giving up")
]
TagOpt = Annotated[Optional[List[str]], typer.Option("--tag", help="label the runs: name=value (repeatable); find them with runs list --tag")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random inputs and of the server scenario's arrivals")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="write this invocation's results (schema infermeter.result/1)")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="results store (SQLite); default INFERMETER_STORE or the user data dir")]
NoSaveOpt = Annotated[bool, typer.Option("--no-save", help="do not save the runs to the store")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]

# Scenarios (scenarios/settings.py checks them; a setting of another scenario is a usage error)
ScenarioOpt = Annotated[
    str, typer.Option("--scenario", "-s", help="single-stream (p90 latency) | multi-stream (p99 per query) | offline (throughput) | server (open-loop QPS)")
]
SamplesPerQueryOpt = Annotated[Optional[int], typer.Option("--samples-per-query", help="multi-stream: rows per query (default: 8)")]
OfflineSamplesOpt = Annotated[
    Optional[int], typer.Option("--offline-samples", help="offline: samples to run (default: enough for --min-duration)")
]
QpsOpt = Annotated[Optional[float], typer.Option("--qps", help="server: offered queries per second (Poisson arrivals, seeded by --seed)")]
MaxBatchOpt = Annotated[Optional[int], typer.Option("--max-batch", help="server: queries batched into one model call at most (default: 1)")]
MaxWaitOpt = Annotated[
    Optional[float], typer.Option("--max-wait-ms", help="server: wait at most this after a batch's first query for more (default: 0)")
]
LatencyBoundOpt = Annotated[
    Optional[float], typer.Option("--latency-bound-ms", help="server: the target-percentile latency must stay within this")
]
TargetPercentileOpt = Annotated[
    Optional[float], typer.Option("--target-percentile", help="percentile judged (default: 90 single-stream, 99 multi-stream and server)")
]
MinDurationOpt = Annotated[
    Optional[float],
    typer.Option("--min-duration", help="seconds a VALID run lasts at least (default: 5 for server and offline; single/multi-stream: --min-time)"),
]
MinQueriesOpt = Annotated[Optional[int], typer.Option("--min-queries", help="queries a VALID run issues at least (default: 100; offline 1)")]
FindPeakOpt = Annotated[bool, typer.Option("--find-peak", help="server: search the highest QPS that stays VALID under --latency-bound-ms")]
PeakStepsOpt = Annotated[Optional[int], typer.Option("--peak-steps", help="--find-peak: server runs at most (default: 8)")]
PeakTimeOpt = Annotated[Optional[float], typer.Option("--peak-time", help="--find-peak: seconds at most (default: 180)")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks")]


def parse_fraction(text: str, flag: str) -> float:
    """``1%`` or ``0.01`` → 0.01; a value outside (0, 1) is a usage error."""
    from ..errors import UsageError

    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"cannot read {flag} '{text}'; use a percentage such as 1% or a fraction such as 0.01") from None
    if not 0 < value < 1:
        raise UsageError(f"{flag} {text} must be between 0 and 100%")
    return value


def parse_tags(items: Optional[List[str]]) -> dict[str, str]:
    """``--tag branch=main --tag ci=1`` → {"branch": "main", "ci": "1"}."""
    from ..errors import UsageError

    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise UsageError(f"cannot read --tag '{item}'; expected NAME=VALUE such as --tag branch=main")
        out[key.strip()] = value.strip()
    return out
