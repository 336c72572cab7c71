"""Compiled candidates: ``torch.compile`` of a PyTorch model, compiled here and now.

``torch.compile`` is lazy: it returns at once and compiles on the first call,
which is also where a missing C++ compiler, an unsupported operator or a
forward that does not fit the inputs shows up. :func:`compile_module` makes that
first call itself, on the example inputs under ``torch.inference_mode()`` (as
the runner will call it), so that a compile failure is a :class:`TransformError`
of this transform rather than an error in the middle of a measurement, and so
that the compile time is reported apart from the latency. A second call on the
same inputs makes sure nothing is left to compile for that shape.

``freezing`` (inductor only, on by default) folds the weights into the graph as
constants, which lets oneDNN pre-pack them for its GEMM kernels; it is only
valid for inference, which is all infermeter does with the result. It is given
as an inductor option of this ``torch.compile`` (together with the options the
``mode`` stands for) instead of by patching the global config around the first
call: the option applies to every later recompile of this module too, where a
patch would be gone by then and a recompiled graph would be measured unfrozen.

Shapes stay static: the graph is compiled for the example inputs' shapes only,
with no dim marked dynamic. A call with another batch size compiles again
(dynamo's "automatic dynamic" then makes that dim dynamic, so a third size does
not), and that compile happens on the first call with the new size: warm up at
every batch size before timing it, as the measurement loop does anyway.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error

__all__ = ["compile_module", "COMPILE_MODES"]

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _no_grad_call(compiled: Any) -> Any:
    """A module that calls ``compiled`` under ``no_grad`` outside inference mode: PT2E int8
    graphs compile (oneDNN weight prepacking under freezing) only there, while runners call
    models inside ``inference_mode``."""
    import torch

    class NoGradCall(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            with torch.inference_mode(False), torch.no_grad():
                return self.inner(*args, **kwargs)

    return NoGradCall(compiled)


def compile_module(module: Any, example_inputs: tuple, *, mode: str = "default", freezing: bool = True,
                   backend: str = "inductor", grad_mode: str = "inference") -> tuple[Any, float]:
    """``torch.compile(module)``, compiled on ``example_inputs`` before returning.

    Returns (the compiled module, seconds the first call took: compiling and one run).
    ``module`` is put in eval mode. ``mode`` and ``freezing`` apply to the inductor backend.
    ``grad_mode="no_grad"`` compiles and runs it under ``no_grad`` instead of ``inference_mode``
    (as PT2E-quantized graphs need), wrapped so callers in inference mode get that too.
    """
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"torch.compile needs torch ({exc}); pip install 'infermeter[torch]'") from None
    if mode not in COMPILE_MODES:
        raise UsageError(f"compile mode '{mode}' is not one of {', '.join(COMPILE_MODES)}")
    if backend != "inductor" and mode != "default":
        raise UsageError(f"compile mode '{mode}' is an inductor setting; backend '{backend}' takes mode 'default' only")
    args = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    what = f"torch.compile ({backend}, mode={mode})"
    module.eval()
    try:
        if backend == "inductor":
            import torch._inductor  # noqa: F401 - list_mode_options lives there

            options = dict(torch._inductor.list_mode_options(mode))
            if grad_mode == "no_grad" and freezing:
                # PT2E int8 graphs need freezing set in inductor's global config (as an option their
                # oneDNN prepack op fails fake-tensor propagation); this sets it for the process,
                # which is fine in optimize's one-candidate worker
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True
            else:
                options["freezing"] = bool(freezing)
            compiled = torch.compile(module, backend=backend, options=options or None)
        else:
            compiled = torch.compile(module, backend=backend)
    except Exception as exc:  # an unknown backend is the user's mistake, anything else the transform's
        if type(exc).__name__ == "InvalidBackend":
            raise UsageError(f"compile backend '{backend}' is not one torch knows; use one of "
                             f"{', '.join(torch._dynamo.list_backends())}") from None
        raise TransformError(f"{what} failed: {_reason(exc)}") from None
    # Past dynamo's recompile limit for this forward (other compiles of the same model
    # class in this process), dynamo would quietly run it eagerly: make that an error here.
    strict = {"fail_on_recompile_limit_hit": True} if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit") else {}
    if grad_mode not in ("inference", "no_grad"):
        raise UsageError(f"grad mode '{grad_mode}' is not 'inference' or 'no_grad'")
    runnable = compiled if grad_mode == "inference" else _no_grad_call(compiled)
    try:
        with torch._dynamo.config.patch(**strict), torch.inference_mode():
            start = time.perf_counter()
            runnable(*args)
            seconds = time.perf_counter() - start
            runnable(*args)  # nothing left to compile for these shapes
    except Exception as exc:
        raise TransformError(f"{what} failed: {_reason(exc)}") from None
    return runnable, seconds


def _reason(exc: BaseException) -> str:
    """The cause inside dynamo's wrapping, e.g. the shape error its fake-tensor run hit."""
    text = str(exc)
    m = re.search(r"got (\w+(?:Error|Exception))\((['\"])(.+?)\2\)", text)
    if m:
        return short_error(RuntimeError(f"{m.group(1)}: {m.group(3)}"))
    return short_error(exc)
