"""Reduced-precision candidates: a copy of a PyTorch model in bfloat16 or float16,
and whether this machine computes in that dtype at all.

A narrow dtype halves the bytes every weight and activation moves, but it is
only faster where the hardware has arithmetic for it. Without it, every kernel
converts to float32, computes, and converts back: more work, not less. So the
optimiser asks :func:`dtype_support` first and says *why* a candidate was
skipped or came out slower, naming the CPU flags it looked for:

* CPU bfloat16: ``avx512_bf16`` or ``amx_bf16`` on x86 (Cooper Lake, Sapphire
  Rapids and later; AMD Zen 4), ``bf16`` on Arm (Armv8.6 BF16);
* CPU float16: ``avx512_fp16`` or ``amx_fp16`` on x86 (Sapphire / Granite
  Rapids), ``fphp``/``asimdhp`` on Arm (Armv8.2 half-precision arithmetic);
* CUDA: bfloat16 where ``torch.cuda.is_bf16_supported()`` (Ampere and later),
  float16 on every GPU torch supports.

The CPU's flags come from :func:`infermeter.env.capture_env` (``/proc/cpuinfo``
or ``sysctl``) unless given, which is how the tests and a report of another
machine ask about hardware that is not this one.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import parse_device, short_error

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["dtype_support", "cast_module", "NARROW_DTYPES"]

#: The reduced-precision dtypes a model can be cast to, by canonical name.
NARROW_DTYPES = ("bfloat16", "float16")

_ALIASES = {
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float32": "float32", "fp32": "float32", "float": "float32",
}
_SHORT = {"bfloat16": "bf16", "float16": "fp16"}

# CPU flags (as infermeter.env names them) that mean native arithmetic in a dtype.
_X86 = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}
_ARM = {"bfloat16": ("bf16",), "float16": ("fphp", "asimdhp")}
# Flags only an Arm CPU reports: they tell which architecture's names to cite as missing.
_ARM_ONLY = ("neon", "asimd", "asimddp", "asimdhp", "fphp", "bf16", "i8mm", "sve", "sve2", "sme")


def _canonical(dtype: str, allowed: tuple[str, ...]) -> str:
    name = _ALIASES.get(str(dtype).strip().lower().replace("torch.", ""))
    if name not in allowed:
        raise UsageError(f"dtype '{dtype}' is not one of {', '.join(allowed)} (or bf16/fp16)")
    return name


def dtype_support(dtype: str, device: str = "cpu", cpu_flags: Mapping[str, bool] | None = None) -> tuple[bool, str]:
    """(whether ``device`` computes in ``dtype`` natively, a one-line reason naming what was found or missing)."""
    name = _canonical(dtype, NARROW_DTYPES)
    kind, index = parse_device(device)
    if kind == "cuda":
        return _cuda_support(name, index)
    if cpu_flags is None:
        from ..env import capture_env

        cpu_flags = capture_env().cpu_flags
    short = _SHORT[name]
    if not cpu_flags:
        return False, (f"this CPU's flags are unknown (not read on this OS): cannot tell whether it has native {short}; "
                       f"assume {short} is converted to float32 and back")
    arm = any(f in cpu_flags for f in _ARM_ONLY)
    wanted = (_ARM if arm else _X86)[name]
    found = [f for f in _X86[name] + _ARM[name] if cpu_flags.get(f)]
    if found:
        return True, f"{' and '.join(found)} in this CPU's flags: {short} arithmetic is native"
    return False, f"no {'/'.join(wanted)} in this CPU's flags: {short} would be converted to float32 and back"


def _cuda_support(name: str, index: int | None) -> tuple[bool, str]:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"asking CUDA about {name} needs torch ({exc}); pip install 'infermeter[torch]'") from None
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA GPU: {name} on CUDA cannot run here"
    dev = index if index is not None else torch.cuda.current_device()
    gpu = f"{torch.cuda.get_device_name(dev)} (compute capability {'.'.join(map(str, torch.cuda.get_device_capability(dev)))})"
    if name == "float16":
        return True, f"{gpu} computes float16 natively"
    with torch.cuda.device(dev):
        ok = bool(torch.cuda.is_bf16_supported())
    if ok:
        return True, f"{gpu} computes bfloat16 natively"
    return False, f"{gpu} has no native bfloat16 (it needs compute capability 8.0, Ampere, or later)"


def cast_module(module: Any, dtype: str) -> "nn.Module":
    """A deep copy of ``module`` with its floating parameters and buffers in ``dtype``
    (integer buffers, such as position ids, are left as they are). The original is untouched.
    ``float32`` is accepted too, to cast a narrow model back."""
    name = _canonical(dtype, NARROW_DTYPES + ("float32",))
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"casting a model to {name} needs torch ({exc}); pip install 'infermeter[torch]'") from None
    try:
        out = copy.deepcopy(module)
        out.to(getattr(torch, name))
    except Exception as exc:
        raise TransformError(f"cast to {name} failed: {short_error(exc)}") from None
    return out
