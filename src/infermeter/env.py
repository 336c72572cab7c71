"""Hardware, software and settings captured with each result, and the noise
warnings that apply to this machine right now.

Never records environment-variable values (they may hold secrets): at most the
*names* of the thread-count variables that are set, so a reader knows a setting
came from outside.

Capture is cheap and has no side effects: the static part (CPU, versions,
``nvidia-smi``) is read once per process; load, governor, frequency, affinity,
free memory and thread settings are re-read on every call. Heavy libraries are
never imported to describe them: versions come from package metadata, and
torch's thread counts are reported only when torch is already imported.
"""

from __future__ import annotations

import copy
import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
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
    memory_available_bytes: int | None = Field(None, description="available (not just free) memory when captured")
    load_avg_1m: float | None = None
    versions: dict[str, str] = Field(default_factory=dict, description="infermeter, numpy, scipy, torch, onnxruntime … that are installed")
    threads: dict[str, Any] = Field(default_factory=dict, description="thread settings in force, as the libraries report them")
    gpus: list[dict[str, Any]] = Field(default_factory=list, description="name, memory, driver, capability per visible GPU")
    noise: list[str] = Field(default_factory=list, description="noise warnings that applied when captured")


# Distributions whose versions change what a measurement means. Read from
# metadata, never imported.
_PACKAGES = (
    "infermeter",
    "numpy",
    "scipy",
    "pydantic",
    "psutil",
    "torch",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "onnxscript",
)

_X86_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)
# /proc/cpuinfo "Features" names on aarch64; "neon" is derived from asimd.
_ARM_FLAGS = ("neon", "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2", "fphp", "asimdhp")

# Names only, never values.
_THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TORCH_NUM_THREADS",
)

_GOVERNOR_PATH = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
_LOW_MEMORY_FRACTION = 0.10


def capture_env(*, probe_gpu: bool = False) -> Env:
    """Describe this machine and process now.

    ``probe_gpu=True`` may import torch (when installed) to ask CUDA for exact
    device properties; without it GPUs are described by torch only when torch
    has already initialised CUDA, else by ``nvidia-smi`` when it exists, so
    capture never creates a CUDA context behind the caller's back.
    """
    data = copy.deepcopy(_static())
    data.update(_dynamic())
    gpus = _gpus_from_torch(probe_gpu)
    data["gpus"] = gpus if gpus is not None else copy.deepcopy(_gpus_from_nvidia_smi())
    env = Env(**data)
    env.noise = noise_warnings(env)
    return env


def noise_warnings(env: Env) -> list[str]:
    """One-line warnings about conditions that make timings noisier than they need be."""
    warnings: list[str] = []
    if env.governor and env.governor != "performance":
        warnings.append(
            f"CPU governor is {env.governor!r}: frequency scaling adds noise; "
            "set it to performance (cpupower frequency-set -g performance)"
        )
    cores = env.cores_logical
    if env.load_avg_1m is not None and cores and env.load_avg_1m > cores:
        warnings.append(
            f"load average {env.load_avg_1m:.1f} is above the {cores} cores: other processes "
            "compete for the CPU; stop them or measure on an idle machine"
        )
    if env.memory_total_bytes and env.memory_available_bytes is not None:
        if env.memory_available_bytes < _LOW_MEMORY_FRACTION * env.memory_total_bytes:
            avail_gib = env.memory_available_bytes / 2**30
            total_gib = env.memory_total_bytes / 2**30
            warnings.append(
                f"only {avail_gib:.1f} of {total_gib:.1f} GiB memory available: paging and cache "
                "pressure add noise; close other programs or use a smaller model"
            )
    return warnings


# -- static part, read once per process ------------------------------------------------


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    import psutil

    model, flags = _cpu_model_and_flags()
    try:
        mem_total: int | None = int(psutil.virtual_memory().total)
    except Exception:
        mem_total = None
    return {
        "hostname": _safe(socket.gethostname, ""),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cpu_model": model,
        "cpu_arch": platform.machine(),
        "cpu_flags": flags,
        "cores_physical": _safe(lambda: psutil.cpu_count(logical=False), None),
        "cores_logical": _safe(lambda: psutil.cpu_count(logical=True), None) or os.cpu_count(),
        "memory_total_bytes": mem_total,
        "versions": _versions(),
    }


def _safe(fn: Any, default: Any) -> Any:
    try:
        return fn()
    except Exception:
        return default


def _os_name() -> str:
    system = platform.system()
    if system == "Linux":
        pretty = _os_release().get("PRETTY_NAME")
        return f"Linux ({pretty})" if pretty else "Linux"
    if system == "Darwin":
        ver = platform.mac_ver()[0]
        return f"macOS {ver}" if ver else "macOS"
    if system == "Windows":
        return f"Windows {platform.version()}"
    return system or sys.platform


def _os_release() -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = value.strip().strip('"')
        return out
    return {}


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except Exception:  # not installed, or broken metadata
            continue
    return versions


def _cpu_model_and_flags() -> tuple[str, dict[str, bool]]:
    system = platform.system()
    model, flags = "", {}
    if system == "Linux":
        model, flags = _linux_cpu()
    elif system == "Darwin":
        model, flags = _macos_cpu()
    if not model:
        model = platform.processor() or platform.machine()
    return model, flags


def _linux_cpu() -> tuple[str, dict[str, bool]]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", {}
    fields: dict[str, str] = {}
    # The first processor block describes the machine well enough; flags are
    # the same on every core of the systems we care about.
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Hardware") or fields.get("Model") or fields.get("cpu") or ""
    if not model:
        try:
            model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n")
        except OSError:
            model = ""
        if not model and "CPU implementer" in fields:
            model = f"implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    if "flags" in fields:
        present = set(fields["flags"].split())
        flags = {f: f in present for f in _X86_FLAGS}
    elif "Features" in fields:
        present = set(fields["Features"].split())
        flags = {f: f in present for f in _ARM_FLAGS}
        flags["neon"] = "asimd" in present or "neon" in present
    else:
        flags = {}
    return model, flags


def _sysctl(*names: str) -> dict[str, str]:
    if not shutil.which("sysctl"):
        return {}
    out = {}
    for name in names:
        try:
            proc = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=1.0)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0:
            out[name] = proc.stdout.strip()
    return out


def _macos_cpu() -> tuple[str, dict[str, bool]]:
    if platform.machine() == "arm64":
        values = _sysctl(
            "machdep.cpu.brand_string",
            "hw.optional.neon",
            "hw.optional.arm.FEAT_BF16",
            "hw.optional.arm.FEAT_I8MM",
            "hw.optional.arm.FEAT_DotProd",
            "hw.optional.arm.FEAT_FP16",
            "hw.optional.arm.FEAT_SME",
        )
        flags = {
            "neon": values.get("hw.optional.neon") == "1",
            "asimddp": values.get("hw.optional.arm.FEAT_DotProd") == "1",
            "i8mm": values.get("hw.optional.arm.FEAT_I8MM") == "1",
            "bf16": values.get("hw.optional.arm.FEAT_BF16") == "1",
            "fphp": values.get("hw.optional.arm.FEAT_FP16") == "1",
            "sme": values.get("hw.optional.arm.FEAT_SME") == "1",
        }
        return values.get("machdep.cpu.brand_string", ""), flags
    values = _sysctl("machdep.cpu.brand_string", "machdep.cpu.features", "machdep.cpu.leaf7_features")
    present = set(
        (values.get("machdep.cpu.features", "") + " " + values.get("machdep.cpu.leaf7_features", "")).lower().split()
    )
    # macOS spells some flags differently (AVX1.0, AVX512VNNI …).
    present |= {p.replace(".0", "").replace("avx512", "avx512_") for p in present}
    aliases = {"avx": "avx1", "avx512f": "avx512_f"}
    flags = {f: f in present or aliases.get(f, "") in present for f in _X86_FLAGS}
    return values.get("machdep.cpu.brand_string", ""), flags


# -- dynamic part, re-read on every call ------------------------------------------------


def _dynamic() -> dict[str, Any]:
    import psutil

    out: dict[str, Any] = {
        "cpu_affinity": _affinity(),
        "governor": _governor(),
        "threads": _threads(),
    }
    try:
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        out["load_avg_1m"] = None
    try:
        freq = psutil.cpu_freq()
        out["cpu_freq_mhz"] = round(float(freq.current), 1) if freq and freq.current else None
    except Exception:
        out["cpu_freq_mhz"] = None
    try:
        out["memory_available_bytes"] = int(psutil.virtual_memory().available)
    except Exception:
        out["memory_available_bytes"] = None
    return out


def _affinity() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0))
        except OSError:
            pass
    try:
        import psutil

        return len(psutil.Process().cpu_affinity())  # type: ignore[arg-type]
    except Exception:
        return None


def _governor() -> str | None:
    try:
        return _GOVERNOR_PATH.read_text().strip() or None
    except OSError:
        return None


def _threads() -> dict[str, Any]:
    threads: dict[str, Any] = {"os_cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            threads["torch_intraop"] = torch.get_num_threads()
            threads["torch_interop"] = torch.get_num_interop_threads()
        except Exception:
            pass
    # Native thread pools already loaded (numpy's BLAS, OpenMP), if threadpoolctl
    # happens to be installed; it inspects loaded libraries and loads nothing.
    try:
        import threadpoolctl
    except ImportError:
        pass
    else:
        try:
            threads["native_pools"] = [
                {k: info.get(k) for k in ("user_api", "internal_api", "num_threads", "version")}
                for info in threadpoolctl.threadpool_info()
            ]
        except Exception:
            pass
    env_set = [name for name in _THREAD_ENV_VARS if name in os.environ]
    if env_set:
        threads["env_vars_set"] = env_set  # names only: values are never recorded
    return threads


# -- GPUs ----------------------------------------------------------------------------


def _gpus_from_torch(probe_gpu: bool) -> list[dict[str, Any]] | None:
    """Exact GPU facts from torch, or ``None`` when torch should not be asked."""
    torch = sys.modules.get("torch")
    if torch is None:
        if not probe_gpu:
            return None
        try:
            import torch  # noqa: F811 - importing is what probe_gpu asks for
        except Exception:
            return None
    try:
        # Without probe_gpu, ask only if CUDA is already initialised: querying
        # device properties creates a CUDA context (slow, and breaks fork).
        if not probe_gpu and not torch.cuda.is_initialized():
            return None
        if not torch.cuda.is_available():
            return None
        return copy.deepcopy(_torch_gpu_facts(torch.cuda.device_count()))
    except Exception:
        return None


@functools.lru_cache(maxsize=4)
def _torch_gpu_facts(count: int) -> list[dict[str, Any]]:
    import torch

    driver = _nvidia_driver_version()
    gpus = []
    for i in range(count):
        props = torch.cuda.get_device_properties(i)
        gpu: dict[str, Any] = {
            "index": i,
            "name": props.name,
            "memory_total_bytes": int(props.total_memory),
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": getattr(props, "multi_processor_count", None),
            "cuda": torch.version.cuda,
            "source": "torch",
        }
        if getattr(torch.version, "hip", None):
            gpu["hip"] = torch.version.hip
        if driver:
            gpu["driver"] = driver
        gpus.append(gpu)
    return gpus


def _nvidia_driver_version() -> str | None:
    gpus = _gpus_from_nvidia_smi()
    return gpus[0].get("driver") if gpus else None


_SMI_FIELDS = ("name", "driver_version", "memory.total", "compute_cap")


@functools.lru_cache(maxsize=1)
def _gpus_from_nvidia_smi() -> list[dict[str, Any]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    # compute_cap needs a recent driver; retry without it on older ones.
    for fields in (_SMI_FIELDS, _SMI_FIELDS[:3]):
        try:
            proc = subprocess.run(
                [exe, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=3.0,
            )
        except (OSError, subprocess.SubprocessError):
            return []
        if proc.returncode == 0:
            return _parse_nvidia_smi(proc.stdout, fields)
    return []


def _parse_nvidia_smi(text: str, fields: tuple[str, ...] = _SMI_FIELDS) -> list[dict[str, Any]]:
    gpus = []
    for index, line in enumerate(l for l in text.splitlines() if l.strip()):
        values = dict(zip(fields, (v.strip() for v in line.split(","))))
        gpu: dict[str, Any] = {"index": index, "name": values.get("name", ""), "source": "nvidia-smi"}
        if values.get("driver_version"):
            gpu["driver"] = values["driver_version"]
        try:
            gpu["memory_total_bytes"] = int(float(values.get("memory.total", "")) * 2**20)  # MiB
        except ValueError:
            pass
        cap = values.get("compute_cap", "")
        if cap and cap[0].isdigit():
            gpu["capability"] = cap
        gpus.append(gpu)
    return gpus
