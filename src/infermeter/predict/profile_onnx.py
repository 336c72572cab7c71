"""Per-operator time of an ONNX model, from ONNX Runtime's session profiling.

Profiling is a session option, fixed when a session is made, so a second session is
built from the runner's file with the runner's settings (providers, threads, graph
optimisation) and ``enable_profiling``; the runner's own session is never slowed.
ORT records from session creation on, so the trace holds the warm-up too: each call
is a ``model_run`` event, and only the kernels inside the profiled calls' windows
are counted. Kernels are ``cat == "Node"`` events named ``<node>_kernel_time`` with
``args.op_name``; they are summed by op type (after ORT's fusions: ``FusedMatMul``,
``SkipLayerNormalization`` …) and by node name (the exporter's module path, such as
``/layers.0/qkv/MatMul``). The trace is written in a temporary directory and deleted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import ModelRunError, UsageError
from .opclass import classify_onnx
from .profile import OpTally, OpTimes

try:
    import onnxruntime as ort
except ImportError as _exc:  # pragma: no cover - the runner exists, so onnxruntime does
    from ..errors import BackendUnavailable

    raise BackendUnavailable(f"onnxruntime is not installed ({_exc}); pip install infermeter[onnx]") from None

__all__ = ["PROFILER", "profile_ops", "h2d_copy", "output_copy", "read_trace"]

PROFILER = "onnxruntime session profiling"
_KERNEL = "_kernel_time"


def h2d_copy(runner: Any, batch: Mapping[str, np.ndarray]) -> Callable[[], object] | None:
    """On CUDA: copy the batch to device memory as ``prepare`` binds it; None on the host."""
    if not getattr(runner, "_on_cuda", False):
        return None
    device_id = runner._device_id
    arrays = [np.ascontiguousarray(a) for a in batch.values()]
    return lambda: [ort.OrtValue.ortvalue_from_numpy(a, "cuda", device_id) for a in arrays]


def output_copy(runner: Any, prepared: Any) -> Callable[[], object] | None:
    """On CUDA: copy one call's bound outputs to host arrays; None on the host, where
    ``session.run`` returns numpy arrays already."""
    if not getattr(runner, "_on_cuda", False):
        return None
    binding = runner(prepared)
    return lambda: binding.copy_outputs_to_cpu()


def _session(runner: Any, prefix: Path) -> Any:
    """A profiling session with the runner's settings."""
    path = getattr(runner, "_path", None)
    if path is None:
        raise UsageError(f"'{runner.spec}' was not loaded from a file; profile an .onnx file so a profiling session can be built")
    old = runner._session.get_session_options()
    so = ort.SessionOptions()
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level", "execution_mode"):
        setattr(so, attr, getattr(old, attr))
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(prefix)
    providers = list(runner._session.get_providers())
    options = runner._session.get_provider_options()
    return ort.InferenceSession(
        str(path), sess_options=so, providers=providers, provider_options=[options.get(p, {}) for p in providers]
    )


def profile_ops(runner: Any, batch: Mapping[str, np.ndarray], prepared: Any, *, iterations: int, warmup: int) -> OpTimes:
    """Warm up, then profile ``iterations`` calls in a profiling session. A raise during
    warm-up is a ModelRunError; during the profiled calls it ends them and is returned."""
    from ..models.onnx import OnnxRunner

    done, error = 0, None
    with tempfile.TemporaryDirectory(prefix="infermeter-ort-") as tmp:
        session = _session(runner, Path(tmp) / "ort")
        twin = OnnxRunner(session, runner.spec, runner._path, runner._options, runner._facts)
        try:
            feed = twin.prepare(batch)
            for i in range(warmup):
                try:
                    twin(feed)
                except Exception as exc:
                    raise ModelRunError(
                        f"onnxruntime raised {type(exc).__name__}: {exc} during profile warm-up at iteration {i}; "
                        "fix the model or its inputs and run again", phase="profile-warm-up", iteration=i,
                    ) from exc
            for i in range(iterations):
                try:
                    twin(feed)
                except Exception as exc:
                    error = ModelRunError(
                        f"onnxruntime raised {type(exc).__name__}: {exc} during profile at iteration {i}; "
                        "fix the model or its inputs and run again", phase="profile", iteration=i,
                    )
                    break
                done += 1
        finally:
            trace = session.end_profiling()
            twin.close()
        events = json.loads(Path(trace).read_text(encoding="utf-8"))
    times = read_trace(events, warmup=warmup, iterations=done)
    times.error = error
    times.device = runner.device
    return times


def read_trace(events: list[dict[str, Any]], *, warmup: int, iterations: int) -> OpTimes:
    """Sum the kernels of runs ``warmup .. warmup + iterations`` of an ORT trace."""
    runs = sorted((int(e["ts"]), int(e["ts"]) + int(e.get("dur", 0)))
                  for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    kept = runs[warmup:warmup + iterations]
    by_type, by_node = OpTally(), OpTally()
    notes: list[str] = ["kernel time of each node (ORT's _kernel_time events)"]
    if len(runs) < warmup + iterations:
        notes.append(f"the trace holds {len(runs)} runs where {warmup + iterations} were made; "
                     "ORT may have stopped recording (it caps the events per trace)")
    starts = np.asarray([a for a, _ in kept], dtype=np.int64)
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith(_KERNEL) or not kept:
            continue
        ts = int(e.get("ts", 0))
        k = int(np.searchsorted(starts, ts, side="right")) - 1
        if k < 0 or ts > kept[k][1]:
            continue  # a warm-up run's kernel, or between runs
        args = e.get("args") or {}
        op = str(args.get("op_name") or "unknown")
        seconds = int(e.get("dur", 0)) * 1e-6
        cls = classify_onnx(op)
        by_type.add(op, seconds, cls)
        by_node.add(name[: -len(_KERNEL)] or op, seconds, cls)
    return OpTimes(
        profiler=PROFILER, device="cpu", iterations=len(kept), warmup=warmup, by_type=by_type, by_node=by_node,
        iteration_s=[(b - a) * 1e-6 for a, b in kept], notes=notes,
    )
