"""Hardware, software and settings captured with each result, and the noise
warnings that apply to this machine right now.

Never records environment-variable values (they may hold secrets).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Env", "capture_env", "noise_warnings"]


class Env(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hostname: str = ""
    os: str = ""
    kernel: str = ""
    python: str = ""
    python_implementation: str = ""
    cpu_model: str = ""
    cpu_arch: str = ""
    cpu_flags: dict[str, bool] = Field(default_factory=dict, description="flags that matter: avx2, avx512f, avx512_vnni, avx512_bf16, amx …")
    cores_physical: int | None = None
    cores_logical: int | None = None
    cpu_affinity: int | None = Field(None, description="cores this process may run on")
    cpu_freq_mhz: float | None = None
    governor: str | None = None
    memory_total_bytes: int | None = None
    load_avg_1m: float | None = None
    versions: dict[str, str] = Field(default_factory=dict, description="infermeter, numpy, scipy, torch, onnxruntime … that are installed")
    threads: dict[str, Any] = Field(default_factory=dict, description="thread settings in force, as the libraries report them")
    gpus: list[dict[str, Any]] = Field(default_factory=list, description="name, memory, driver, capability per visible GPU")
    noise: list[str] = Field(default_factory=list, description="noise warnings that applied when captured")


def capture_env(*, probe_gpu: bool = False) -> Env:  # implemented below
    raise NotImplementedError


def noise_warnings(env: Env) -> list[str]:  # implemented below
    raise NotImplementedError
