"""Per-operator time of a PyTorch model, from ``torch.profiler``.

Self time (CPU; on a GPU, the device time of the kernels each op launched) of every
dispatched op, summed by op name (``aten::addmm``) and by the module it ran in.

Module paths (``layers.0.qkv``): ``torch.profiler``'s ``with_modules`` records them
only for TorchScript, and ``with_stack`` gives source lines, not modules. So while
profiling, a forward pre-hook on every submodule opens a ``record_function`` scope
named after its path and a forward hook (``always_call``, so a raise still closes
it) ends it; an op belongs to the innermost scope above it. The scopes, and the
scope around each iteration, are ours: they are left out of the op times, so the
shares sum to 1 over real ops. TorchScript and ``torch.export`` programs take no
such hooks (their calls are compiled): their layers are op name + input shapes.

Kineto prints stage lines on stderr at the first profile of a process unless
``KINETO_LOG_LEVEL`` says otherwise; it is set for that moment and put back.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import ModelRunError
from .opclass import classify_torch
from .profile import OpTally, OpTimes

try:
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function
except ImportError as _exc:  # pragma: no cover - the runner exists, so torch does
    from ..errors import BackendUnavailable

    raise BackendUnavailable(f"torch is not installed ({_exc}); pip install infermeter[torch]") from None

__all__ = ["PROFILER", "profile_ops", "h2d_copy", "output_copy", "SCOPE", "ITERATION", "ROOT"]

PROFILER = "torch.profiler"
SCOPE = "infermeter::module::"  # + module path
ITERATION = "infermeter::iteration#"  # + index
ROOT = "(root)"  # ops run by the top module's own forward, not inside a submodule
_USER_SCOPE = 7  # at::RecordScope::USER_SCOPE: record_function scopes
_TORCHSCRIPT_FUNCTION = 2  # at::RecordScope::TORCHSCRIPT_FUNCTION: a scripted method's frame, not an op
_PROFILER_OWN = frozenset({"Activity Buffer Request"})  # CUPTI's buffer requests, seen on a GPU


def h2d_copy(runner: Any, batch: Mapping[str, np.ndarray]) -> Callable[[], object] | None:
    """On a GPU: copy the batch's host tensors to the device (what ``prepare`` does
    besides converting); None on the host, where nothing is copied."""
    device = getattr(runner, "_device", None)
    if device is None or device.type == "cpu":
        return None
    host = [torch.from_numpy(np.ascontiguousarray(a)) for a in batch.values()]
    return lambda: [t.to(device, non_blocking=True) for t in host]


def output_copy(runner: Any, prepared: Any) -> Callable[[], object] | None:
    """On a GPU: copy one call's outputs to host numpy arrays; None on the host."""
    device = getattr(runner, "_device", None)
    if device is None or device.type == "cpu":
        return None
    out = runner(prepared)
    runner.sync()
    return lambda: _to_host(out)


def _to_host(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        host = out.detach().cpu()
        # numpy has no bfloat16: the copy to the host is the phase; keep it a tensor then
        return host if host.dtype == torch.bfloat16 else host.numpy()
    if isinstance(out, Mapping):
        return {k: _to_host(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return [_to_host(v) for v in out]
    return out


class _ModuleScopes:
    """While entered: a ``record_function`` scope around every submodule's forward."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.handles: list[Any] = []
        self.open: list[Any] = []

    @staticmethod
    def supported(model: Any) -> bool:
        if isinstance(model, torch.jit.ScriptModule):
            return False
        return not isinstance(model, torch.fx.GraphModule)  # torch.export: one flat graph, no submodule calls

    def __enter__(self) -> "_ModuleScopes":
        for name, mod in self.model.named_modules():
            label = SCOPE + (name or ROOT)
            self.handles.append(mod.register_forward_pre_hook(self._opener(label)))
            self.handles.append(mod.register_forward_hook(self._close, always_call=True))
        return self

    def _opener(self, label: str) -> Callable[..., None]:
        def pre(module: Any, args: Any) -> None:
            scope = record_function(label)
            scope.__enter__()
            self.open.append(scope)

        return pre

    def _close(self, module: Any, args: Any, output: Any) -> None:
        if self.open:
            self.open.pop().__exit__(None, None, None)

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        while self.open:  # a raise between hooks: close what is still open
            self.open.pop().__exit__(None, None, None)


@contextmanager
def _quiet_kineto() -> Iterator[None]:
    old = os.environ.get("KINETO_LOG_LEVEL")
    if old is None:
        os.environ["KINETO_LOG_LEVEL"] = "6"  # errors only
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("KINETO_LOG_LEVEL", None)


def profile_ops(runner: Any, batch: Mapping[str, np.ndarray], prepared: Any, *, iterations: int, warmup: int) -> OpTimes:
    """Warm up (hooks on), then profile ``iterations`` calls. A raise during warm-up is a
    ModelRunError; during the profiled calls it ends them and is returned in ``error``."""
    model = runner.model
    on_gpu = runner.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    scoped = _ModuleScopes.supported(model)
    hooks = _ModuleScopes(model) if scoped else None
    done, error = 0, None
    with _scopes(hooks):
        for i in range(warmup):
            try:
                runner(prepared)
                runner.sync()
            except Exception as exc:
                raise ModelRunError(
                    f"the model raised {type(exc).__name__}: {exc} during profile warm-up at iteration {i}; "
                    "fix the model or its inputs and run again", phase="profile-warm-up", iteration=i,
                ) from exc
        with _quiet_kineto(), warnings.catch_warnings():
            # "Profiler clears events at the end of each cycle": there is one cycle, read once
            warnings.filterwarnings("ignore", message=".*clears events at the end of each cycle.*")
            with profile(activities=activities, record_shapes=True) as prof:
                for i in range(iterations):
                    try:
                        with record_function(f"{ITERATION}{i}"):
                            runner(prepared)
                            runner.sync()
                    except Exception as exc:
                        error = ModelRunError(
                            f"the model raised {type(exc).__name__}: {exc} during profile at iteration {i}; "
                            "fix the model or its inputs and run again", phase="profile", iteration=i,
                        )
                        break
                    done += 1
    times = _aggregate(prof.events(), done, on_gpu, scoped)
    times.warmup, times.error = warmup, error
    times.device = runner.device
    if not scoped:
        kind = "TorchScript" if isinstance(model, torch.jit.ScriptModule) else "torch.export"
        times.notes.append(f"by node: a {kind} model takes no module hooks, so layers are op name + input shapes")
    return times


@contextmanager
def _scopes(hooks: _ModuleScopes | None) -> Iterator[None]:
    if hooks is None:
        yield
        return
    with hooks:
        yield


def _aggregate(events: Any, done: int, on_gpu: bool, scoped: bool) -> OpTimes:
    """Self time of real ops in completed iterations, by op name and by module (or shapes)."""
    by_type, by_node = OpTally(), OpTally()
    walls: dict[int, float] = {}
    for e in events:
        name = e.name
        if name.startswith(ITERATION):
            idx = int(name[len(ITERATION):])
            if idx < done:
                walls[idx] = e.cpu_time_total * 1e-6
            continue
        if name.startswith("infermeter::") or _is_wrapper(e):
            continue
        node, idx = _where(e)
        if idx is None or idx >= done:
            continue  # outside our iterations, or in the call that raised
        seconds = (e.self_device_time_total if on_gpu else e.self_cpu_time_total) * 1e-6
        if on_gpu and seconds <= 0:
            continue  # a host-only op: no device time
        cls = classify_torch(name)
        by_type.add(name, seconds, cls)
        by_node.add(node if scoped else _shape_key(e), seconds, cls)
    return OpTimes(
        profiler=PROFILER, device="cuda" if on_gpu else "cpu", iterations=done, warmup=0,
        by_type=by_type, by_node=by_node, iteration_s=[walls[i] for i in sorted(walls)],
        notes=["self device time of the kernels each op launched" if on_gpu else "self CPU time of each op"],
    )


def _is_wrapper(e: Any) -> bool:
    """Events that are not ops: record_function scopes, a TorchScript method's frame,
    Python frames, and anything the profiler sees on a device (kernels are counted
    through the op that launched them)."""
    if getattr(e, "is_user_annotation", False) or getattr(e, "is_python_function", False):
        return True
    if e.name in _PROFILER_OWN:
        return True
    if e.scope in (_USER_SCOPE, _TORCHSCRIPT_FUNCTION):
        return True
    return e.device_type != DeviceType.CPU


def _where(e: Any) -> tuple[str, int | None]:
    """(innermost module path, iteration index) of an op, from its chain of parents."""
    node: str | None = None
    p = e.cpu_parent
    while p is not None:
        name = p.name
        if node is None and name.startswith(SCOPE):
            node = name[len(SCOPE):]
        elif name.startswith(ITERATION):
            return node or ROOT, int(name[len(ITERATION):])
        p = p.cpu_parent
    return node or ROOT, None


def _shape_key(e: Any) -> str:
    shapes = "; ".join("x".join(str(d) for d in s) if s else "-" for s in (e.input_shapes or []))
    return f"{e.name} ({shapes})" if shapes else e.name
