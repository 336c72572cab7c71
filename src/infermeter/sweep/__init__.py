"""Sweeps: many points of the bench path, each in fresh worker processes, through an executor.

::

    from infermeter.sweep import run_sweep
    outcome = run_sweep("sweep.yaml", store="results.db")        # or a SweepConfig, or a dict
    for r in outcome.results: print(r.sweep.axes, r.status, r.latency.p50.value if r.latency else None)

Names load on first use, so the worker (``python -m infermeter.sweep.worker``)
starts without pydantic configs, YAML or executors.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "run_sweep": ".run",
    "check_outcome": ".run",
    "SweepOutcome": ".run",
    "SweepInterrupted": ".run",
    "SweepFailed": ".run",
    "SweepConfig": ".config",
    "SweepConfigError": ".config",
    "RayConfig": ".config",
    "Point": ".config",
    "load_config": ".config",
    "config_from_dict": ".config",
    "parse_grid": ".axes",
    "WorkerOutcome": ".process",
    "run_worker": ".process",
    "merge_repeats": ".merge",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'infermeter.sweep' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .axes import parse_grid
    from .config import Point, RayConfig, SweepConfig, SweepConfigError, config_from_dict, load_config
    from .merge import merge_repeats
    from .process import WorkerOutcome, run_worker
    from .run import SweepFailed, SweepInterrupted, SweepOutcome, check_outcome, run_sweep
