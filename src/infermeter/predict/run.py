"""``predict()``: count a model's work, pick the machine, predict per batch size, and
optionally measure on this machine beside the prediction.

The machine is ``this`` (the newest calibrated profile in the store for the
device asked for), a name from the shipped hardware table, or a file: a
calibrated profile (``infermeter calibrate --out``) or a spec sheet
(``HardwareSpec`` as YAML/JSON). Spec sheets borrow efficiency curves from a
calibrated reference machine of the same kind (the user's own calibrations
first, then the profiles shipped with infermeter) and say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import UsageError
from ..inputs import InputSpec
from ..models.base import LoadOptions
from .machine import Machine, machine_for_profile, machine_for_spec
from .schema import HardwareProfile, HardwareSpec, Prediction

__all__ = ["predict", "predict_model", "resolve_machine", "reference_for"]


def _device_kind(device: str) -> str:
    return "gpu" if device.startswith("cuda") else "cpu"


def reference_for(spec: HardwareSpec, store: Any = None) -> HardwareProfile:
    """The calibrated machine whose efficiency curves a spec-sheet target borrows."""
    from .profiles import reference_profiles, stored_profiles

    want = "cpu" if spec.kind == "cpu" else "gpu"
    candidates = [p for p in stored_profiles(store) + reference_profiles() if p.kind == want]
    if not candidates:
        raise UsageError(
            f"no calibrated {want} profile to derive {spec.name}'s efficiency curves from; "
            f"run infermeter calibrate{' --device cuda' if want == 'gpu' else ''} on a {want} first"
        )
    return candidates[0]


def resolve_machine(hardware: str, *, device: str = "cpu", store: Any = None) -> Machine:
    """``this`` | a table name | a profile or spec file → a Machine."""
    from .hardware import get_spec
    from .profiles import profile_from_yaml, spec_of_profile, stored_profiles

    text = hardware.strip()
    if text.lower() in ("this", "here", "local"):
        kind = _device_kind(device)
        for p in stored_profiles(store):
            if p.kind == kind:
                return machine_for_profile(p)
        raise UsageError(
            f"no calibrated {kind} profile of this machine in the store; run infermeter calibrate"
            f"{' --device cuda' if kind == 'gpu' else ''} first (about a minute)"
        )
    path = Path(text).expanduser()
    if path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file():
        body = path.read_text()
        if "gemm:" in body or '"gemm"' in body:
            return machine_for_profile(profile_from_yaml(body))
    spec = get_spec(text)
    ref = reference_for(spec, store)
    return machine_for_spec(spec, ref, spec_of_profile(ref))


def predict(
    model: Any,
    *,
    hardware: str = "this",
    batch_sizes: Sequence[int] = (1,),
    dims: dict[str, int] | None = None,
    inputs: Sequence[InputSpec] = (),
    options: LoadOptions | None = None,
    store: Any = None,
    measure: bool = False,
    measure_time_s: float = 10.0,
) -> list[Prediction | Any]:
    """Predict ``model`` at each batch size on ``hardware``.

    Returns :class:`Prediction` objects; with ``measure=True`` returns the
    measured ``Result`` of each batch size with ``.prediction`` filled and the
    measured p50 and profiled per-class times written into the prediction.
    """
    from ..models import load_model
    from .count import count_runner
    from .roofline import predict_work

    opts = options or LoadOptions(inputs=tuple(inputs))
    machine = resolve_machine(hardware, device=opts.device, store=store)
    if measure and not machine.calibrated:
        raise UsageError(f"--measure compares with this machine; '{hardware}' is a spec sheet: predict for 'this' to measure")
    runner = load_model(model, opts)
    try:
        preds = []
        for b in batch_sizes:
            work = count_runner(runner, batch_size=int(b), dims=dict(dims or {}), inputs=list(inputs))
            preds.append(predict_work(work, machine, threads=opts.threads))
    finally:
        runner.close()
    if not measure:
        return preds
    return [_measured(model, p, opts, dims, inputs, measure_time_s) for p in preds]


def _measured(model: Any, pred: Prediction, opts: LoadOptions, dims: Any, inputs: Any, max_time: float) -> Any:
    from ..measure import bench
    from .profile import profile_model

    result = bench(model, inputs=list(inputs), batch_size=pred.batch_size, dims=dict(dims or {}),
                   device=opts.device, dtype=opts.dtype, threads=opts.threads, providers=opts.providers,
                   max_time_s=max_time, store=False)
    if result.latency is not None:
        pred.measured_latency_s = result.latency.p50.value
    prof = profile_model(model, batch_size=pred.batch_size, dims=dict(dims or {}), inputs=list(inputs),
                         options=opts, iterations=10, warmup=3)
    if prof.op_profile is not None:
        by_class: dict[str, float] = {}
        for t in prof.op_profile.by_type:
            key = t.op_class or "unknown"
            by_class[key] = by_class.get(key, 0.0) + t.per_iter_s
        pred.measured_by_class = by_class
    result.prediction = pred
    return result


#: the name the public API exports (``infermeter.predict`` is this package)
predict_model = predict
