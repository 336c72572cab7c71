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
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random inputs")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", help="write this invocation's results (schema infermeter.result/1)")]
StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="results store (SQLite); default INFERMETER_STORE or the user data dir")]
NoSaveOpt = Annotated[bool, typer.Option("--no-save", help="do not save the runs to the store")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
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
