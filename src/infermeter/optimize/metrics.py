"""Metrics of a model's outputs against labels: accuracy, top-5, macro F1, MSE, MAE,
or a user's ``module:function``; each knows whether higher is better.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np

from ..errors import InfermeterError, InputError, UsageError

__all__ = ["Outputs", "Metric", "METRICS", "resolve_metric", "accuracy", "top5", "f1", "mse", "mae"]

#: One array per model output, rows on axis 0; a single output is a bare array.
Outputs = Union[np.ndarray, list[np.ndarray]]


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _first(outputs: Outputs) -> np.ndarray:
    return outputs[0] if isinstance(outputs, list) else outputs


# --------------------------------------------------------------------------- metrics
#
# Ties: class scores are ranked with ties going to the lower class index, as
# np.argmax does, so top-k at k=1 equals accuracy and both equal the fidelity
# top-1 agreement rule, whatever order the classes come in.


def _class_ids(outputs: np.ndarray, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    scores = _first(outputs)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise UsageError(
            f"metric {metric} needs class scores of shape [n, classes]; the model gives {tuple(scores.shape)}; "
            "use --metric mse or mae for other outputs"
        )
    labels = np.asarray(labels)
    n, c = scores.shape
    if labels.ndim == 2 and labels.shape == scores.shape:
        raise InputError(
            f"labels for {metric} have shape {labels.shape}, like one-hot rows; save class ids of shape ({n},) "
            "(labels.argmax(1))"
        )
    if labels.shape != (n,):
        raise InputError(f"labels for {metric} must be class ids of shape ({n},); got shape {labels.shape}")
    if labels.dtype.kind not in "biuf" or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
        raise InputError(f"labels for {metric} must be integer class ids; got {labels.dtype} values that are not whole")
    ids = labels.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= c):
        raise InputError(f"labels for {metric} must lie in [0, {c}) for {c} classes; found {ids.min()}..{ids.max()}")
    return scores, ids


def _topk(outputs: Outputs, labels: np.ndarray, k: int, metric: str) -> float:
    scores, ids = _class_ids(_first(outputs), labels, metric)
    rows = np.arange(len(ids))
    own = scores[rows, ids][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    ahead = (scores > own) | ((scores == own) & (cols < ids[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))


def accuracy(outputs: Outputs, labels: np.ndarray) -> float:
    """Share of rows whose highest-scoring class is the label."""
    return _topk(outputs, labels, 1, "accuracy")


def top5(outputs: Outputs, labels: np.ndarray) -> float:
    """Share of rows whose label is among the five highest-scoring classes (all of them if fewer)."""
    return _topk(outputs, labels, 5, "top5")


def f1(outputs: Outputs, labels: np.ndarray) -> float:
    """Macro F1 as scikit-learn defines it: F1 = 2TP / (2TP + FP + FN) per class,
    0 where undefined, averaged over classes present in the labels or predictions."""
    scores, ids = _class_ids(_first(outputs), labels, "f1")
    pred = scores.argmax(axis=1)
    classes = np.union1d(ids, pred)
    tp = np.array([np.sum((pred == c) & (ids == c)) for c in classes], dtype=np.float64)
    fp = np.array([np.sum((pred == c) & (ids != c)) for c in classes], dtype=np.float64)
    fn = np.array([np.sum((pred != c) & (ids == c)) for c in classes], dtype=np.float64)
    denom = 2 * tp + fp + fn
    per_class = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(per_class.mean())


def _targets(outputs: Outputs, labels: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    out = _first(outputs).astype(np.float64)
    labels = np.asarray(labels)
    if labels.shape != out.shape:
        if labels.ndim == 1 and out.shape == (len(labels), 1):  # [n] targets for an [n, 1] head
            labels = labels[:, None]
        else:
            raise InputError(
                f"labels for {metric} must have the outputs' shape {tuple(out.shape)}; got {labels.shape}; "
                "save one target per output value"
            )
    if labels.dtype.kind not in "biuf":
        raise InputError(f"labels for {metric} must be numbers; got {labels.dtype}")
    return out, labels.astype(np.float64)


def mse(outputs: Outputs, labels: np.ndarray) -> float:
    """Mean squared error over every output value."""
    out, y = _targets(outputs, labels, "mse")
    return float(np.mean((out - y) ** 2))


def mae(outputs: Outputs, labels: np.ndarray) -> float:
    """Mean absolute error over every output value."""
    out, y = _targets(outputs, labels, "mae")
    return float(np.mean(np.abs(out - y)))


@dataclass(frozen=True)
class Metric:
    """A named score of (outputs, labels); ``higher_is_better`` says which way is good."""

    name: str
    fn: Callable[[Any, np.ndarray], float]
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, True),
    "top5": Metric("top5", top5, True),
    "f1": Metric("f1", f1, True),
    "mse": Metric("mse", mse, False),
    "mae": Metric("mae", mae, False),
}
_SPEC = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")


def resolve_metric(spec: str) -> Metric:
    """A built-in name or ``module:function``. A custom function takes (outputs,
    labels) and returns a float; it counts as higher-is-better unless it carries
    ``higher_is_better = False`` as an attribute (losses, errors)."""
    text = (spec or "").strip()
    builtins = ", ".join(METRICS)
    if text.lower() in METRICS:
        return METRICS[text.lower()]
    m = _SPEC.match(text)
    if not m:
        raise UsageError(f"unknown metric '{spec}'; use one of {builtins}, or module:function taking (outputs, labels)")
    try:
        obj: Any = importlib.import_module(m.group("module"))
        for part in m.group("attr").split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise UsageError(
            f"metric '{text}' does not resolve ({type(exc).__name__}: {_first_line(exc)}); "
            f"check the module is importable from here, or use one of {builtins}"
        ) from None
    if not callable(obj):
        raise UsageError(f"metric '{text}' is a {type(obj).__name__}, not a function of (outputs, labels); use one of {builtins}")
    return Metric(text, obj, bool(getattr(obj, "higher_is_better", True)))


def _score(metric: Metric, outputs: Outputs, labels: np.ndarray) -> float:
    """Apply ``metric`` to the first output; user code failing is one line, not a traceback."""
    try:
        value = metric.fn(_first(outputs), labels)
    except InfermeterError:
        raise
    except Exception as exc:
        raise UsageError(f"metric '{metric.name}' raised {type(exc).__name__}: {_first_line(exc)}") from None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"metric '{metric.name}' returned {type(value).__name__}, not a number; return a float") from None


# --------------------------------------------------------------------------- fidelity
