"""infermeter: how long does this model take to answer, why, and how could it take less?

The public API. Names are imported on first use so that ``import infermeter``
(and ``infermeter --help``) stays fast and pulls in no backend.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "bench": "infermeter.measure",
    "BenchInterrupted": "infermeter.measure",
    "Result": "infermeter.result",
    "load_result": "infermeter.result",
    "SCHEMA": "infermeter.result",
    "InputSpec": "infermeter.inputs",
    "parse_input": "infermeter.inputs",
    "load_model": "infermeter.models",
    "list_zoo": "infermeter.models",
    "Runner": "infermeter.models.base",
    "LoadOptions": "infermeter.models.base",
    "run_sweep": "infermeter.sweep",
    "count_work": "infermeter.predict.count",
    "profile_model": "infermeter.predict.profile",
    "calibrate": "infermeter.predict.calibrate",
    "predict_model": "infermeter.predict.run",
    "implied": "infermeter.predict.implied",
    "Claim": "infermeter.predict.implied",
    "optimize_model": "infermeter.optimize.run",
    "OptimizeOptions": "infermeter.optimize.run",
    "Store": "infermeter.store",
    "default_store_path": "infermeter.store",
    "capture_env": "infermeter.env",
    "Env": "infermeter.env",
    "compare_samples": "infermeter.stats",
    "describe_latency": "infermeter.stats",
    "InfermeterError": "infermeter.errors",
    "UsageError": "infermeter.errors",
    "SpecError": "infermeter.errors",
    "InputError": "infermeter.errors",
    "BackendUnavailable": "infermeter.errors",
    "ModelLoadError": "infermeter.errors",
    "ModelRunError": "infermeter.errors",
    "StoreError": "infermeter.errors",
    "OutputError": "infermeter.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'infermeter' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .measure import BenchInterrupted, bench
    from .env import Env, capture_env
    from .errors import (BackendUnavailable, InfermeterError, InputError, ModelLoadError, ModelRunError,
                         OutputError, SpecError, StoreError, UsageError)
    from .inputs import InputSpec, parse_input
    from .models import list_zoo, load_model
    from .models.base import LoadOptions, Runner
    from .result import SCHEMA, Result, load_result
    from .stats import compare_samples, describe_latency
    from .store import Store, default_store_path
    from .sweep import run_sweep
    from .predict.calibrate import calibrate
    from .predict.count import count_work
    from .predict.implied import Claim, implied
    from .optimize.run import OptimizeOptions, optimize_model
    from .predict.profile import profile_model
    from .predict.run import predict_model
