"""How good are a model's answers: the accuracy half of ``infermeter optimize``.

A candidate (quantized, pruned, compiled …) is only worth its speed if its
answers hold up. With labels in the eval file we score it with a metric; without
them we compare it with the original model's outputs (fidelity). Both paths go
through the same :class:`~infermeter.models.Runner` seam the timed path uses, so
what is evaluated is exactly what is measured. numpy only: no torch, no sklearn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..errors import InfermeterError, InputError, ModelRunError, UsageError
from ..inputs import INPUT_SYNTAX, InputSpec, numpy_dtype
from ..models.base import Runner
from .metrics import METRICS, Metric, Outputs, _first, _first_line, _score, accuracy, f1, mae, mse, resolve_metric, top5

__all__ = [
    "EvalData", "load_eval", "model_outputs", "Outputs", "Metric", "METRICS", "resolve_metric",
    "accuracy", "top5", "f1", "mse", "mae", "fidelity", "Evaluation", "evaluate", "headline_figure",
]


LABEL_KEYS = ("labels", "y")
_SAVE_HINT = "save it with numpy.savez(path, <input name>=rows, labels=labels)"


# --------------------------------------------------------------------------- eval data


@dataclass
class EvalData:
    """Rows to evaluate on: arrays keyed by input name (rows on axis 0), optional labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InputError(f"eval data {self.source or ''} holds no input arrays; {_SAVE_HINT}")
        counts = {k: _rows(v) for k, v in self.inputs.items()}
        if self.labels is not None:
            counts["labels"] = _rows(self.labels)
        if len(set(counts.values())) != 1 or 0 in counts.values():
            shown = ", ".join(f"{k}: {v}" for k, v in counts.items())
            raise InputError(
                f"eval data {self.source or ''} arrays must share a non-empty row axis 0, found {shown}; "
                "give every array (inputs and labels) one row per sample"
            )

    @property
    def n(self) -> int:
        """Number of rows (samples)."""
        return _rows(next(iter(self.inputs.values())))


def _rows(a: np.ndarray) -> int:
    return int(a.shape[0]) if a.ndim else 0


def load_eval(path: str | Path, specs: Sequence[InputSpec]) -> EvalData:
    """Read an ``--eval`` ``.npz`` and check it against the model's inputs ``specs``.

    Each mismatch is caught here, before any model runs, as one :class:`InputError`
    line naming the array, what was expected, and how to fix it. Unknown keys are
    refused rather than ignored: a misspelt ``label`` would otherwise silently turn
    an accuracy run into a fidelity run.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--eval file '{p}' does not exist; give a .npz of input rows (and labels), {_SAVE_HINT}")
    if not specs:
        raise InputError(f"the model's inputs are unknown, so --eval '{p}' cannot be checked; describe them with {INPUT_SYNTAX}")
    if p.suffix.lower() != ".npz":
        raise InputError(f"--eval '{p}' is not a .npz file; {_SAVE_HINT}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # corrupt file, pickled object arrays, …
        raise InputError(f"cannot read --eval '{p}': {exc}; {_SAVE_HINT}") from None
    held = ", ".join(arrays) or "nothing"

    inputs: dict[str, np.ndarray] = {}
    for s in specs:
        key = s.name if s.name in arrays else ("x" if len(specs) == 1 and "x" in arrays else None)
        if key is None:
            alias = " (or 'x')" if len(specs) == 1 and s.name != "x" else ""
            raise InputError(
                f"--eval '{p}' has no array for input '{s.name}'{alias}; it holds {held}; "
                f"the model takes {', '.join(t.text() for t in specs)}; {_SAVE_HINT}"
            )
        inputs[s.name] = arrays.pop(key)
    label_keys = [k for k in LABEL_KEYS if k in arrays]
    if len(label_keys) > 1:
        raise InputError(f"--eval '{p}' holds both 'labels' and 'y'; keep one array of labels")
    labels = arrays.pop(label_keys[0]) if label_keys else None
    if arrays:
        raise InputError(
            f"--eval '{p}' holds array(s) {', '.join(repr(k) for k in arrays)} that name no model input and are not labels; "
            f"inputs are {', '.join(s.name for s in specs)}, labels go under 'labels' or 'y'"
        )

    checked = {s.name: _check_input(p, s, inputs[s.name]) for s in specs}
    _check_symbols(p, specs, checked)
    if labels is not None and labels.dtype.kind not in "biuf":
        raise InputError(f"--eval '{p}' labels are {labels.dtype}; save numeric labels (class ids or target values)")
    return EvalData(checked, labels, source=f"'{p}'")


def _check_input(p: Path, spec: InputSpec, arr: np.ndarray) -> np.ndarray:
    want = numpy_dtype(spec.dtype)
    if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, want, casting="same_kind"):
        raise InputError(
            f"--eval '{p}' array '{spec.name}' is {arr.dtype} but the model wants {spec.dtype} ({spec.text()}); "
            f"convert it with .astype('{want}') before saving"
        )
    row = spec.shape[1:]
    if spec.shape and (arr.ndim != len(spec.shape) or any(isinstance(d, int) and d != a for d, a in zip(row, arr.shape[1:]))):
        raise InputError(
            f"--eval '{p}' array '{spec.name}' has rows of shape {tuple(arr.shape[1:])} but the model wants "
            f"[{','.join(str(d) for d in row)}] per row ({spec.text()}, axis 0 is the row axis); reshape the array"
        )
    return arr.astype(want, copy=False)


def _check_symbols(p: Path, specs: Sequence[InputSpec], arrays: dict[str, np.ndarray]) -> None:
    """A symbolic dim (``seq``) may take any size, but the same size in every input."""
    seen: dict[str, tuple[str, int]] = {}
    for s in specs:
        for d, size in zip(s.shape[1:], arrays[s.name].shape[1:]):
            if not isinstance(d, str):
                continue
            if d in seen and seen[d][1] != size:
                raise InputError(
                    f"--eval '{p}' gives dim '{d}' size {seen[d][1]} in '{seen[d][0]}' but {size} in '{s.name}'; "
                    "inputs sharing a dim must agree"
                )
            seen.setdefault(d, (s.name, int(size)))


# --------------------------------------------------------------------------- running the model


def model_outputs(runner: Runner, data: EvalData, *, batch_size: int = 64) -> Outputs:
    """Run ``runner`` over every row in order and gather its outputs as float numpy.

    One output → one array; several (a tuple, a dict, ONNX's list) → a list of
    arrays, first output first. Metrics read the first; fidelity reads them all.
    """
    if batch_size <= 0:
        raise UsageError(f"batch size {batch_size} is not positive; use a positive integer such as 64")
    gathered: list[list[np.ndarray]] = []
    for index, start in enumerate(range(0, data.n, batch_size)):
        batch = {k: v[start : start + batch_size] for k, v in data.inputs.items()}
        rows = _rows(next(iter(batch.values())))
        try:
            raw = runner(runner.prepare(batch))
            runner.sync()
            outs = _to_numpy(raw)
        except InfermeterError:
            raise
        except Exception as exc:
            raise ModelRunError(
                f"'{runner.spec or runner.backend}' failed on eval batch {index} (rows {start}–{start + rows - 1}): "
                f"{type(exc).__name__}: {_first_line(exc)}",
                phase="evaluate",
                iteration=index,
            ) from exc
        for k, o in enumerate(outs):
            if o.ndim == 0 or o.shape[0] != rows:
                raise ModelRunError(
                    f"output {k} of '{runner.spec or runner.backend}' has shape {tuple(o.shape)} for a batch of {rows} rows; "
                    "evaluation needs outputs with one row per input row on axis 0",
                    phase="evaluate",
                    iteration=index,
                )
        if gathered and len(outs) != len(gathered[0]):
            raise ModelRunError(f"eval batch {index} gave {len(outs)} outputs, batch 0 gave {len(gathered[0])}",
                                phase="evaluate", iteration=index)
        gathered.append(outs)
    merged = [np.concatenate([b[k] for b in gathered]) for k in range(len(gathered[0]))]
    return merged[0] if len(merged) == 1 else merged


def _to_numpy(out: Any) -> list[np.ndarray]:
    """Flatten what a backend returns into float arrays: torch tensors, OrtValues,
    an ONNX Runtime I/O binding on CUDA, numpy, and tuples/lists/dicts of them."""
    if hasattr(out, "copy_outputs_to_cpu"):  # onnxruntime IOBinding
        return [_float(np.asarray(a)) for a in out.copy_outputs_to_cpu()]
    if isinstance(out, Mapping):  # dict outputs, Hugging Face ModelOutput
        return [a for v in out.values() for a in _to_numpy(v)]
    if isinstance(out, (list, tuple)):
        return [a for v in out for a in _to_numpy(v)]
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # torch.Tensor, without importing torch
        return [out.detach().float().cpu().numpy()]
    if hasattr(out, "numpy") and not isinstance(out, np.ndarray):  # OrtValue and friends
        return [_float(np.asarray(out.numpy()))]
    return [_float(np.asarray(out))]


def _float(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "f" and a.dtype.itemsize >= 4:
        return a
    if a.dtype.kind not in "biuf":
        raise TypeError(f"the model returned a {a.dtype} array, not numbers")
    return a.astype(np.float32)


def fidelity(reference: Outputs, candidate: Outputs) -> dict[str, float | int]:
    """How far ``candidate``'s outputs stray from ``reference``'s, without labels.

    Differences cover every output; ``top1_agreement`` (share of rows with the same
    argmax) appears when the first output is class scores [n, classes>1].
    ``cosine`` is the mean over rows of the cosine similarity of the row's values,
    all outputs flattened together (two zero rows count as 1, one zero row as 0).
    """
    refs = reference if isinstance(reference, list) else [reference]
    cands = candidate if isinstance(candidate, list) else [candidate]
    if len(refs) != len(cands):
        raise ModelRunError(f"candidate gives {len(cands)} outputs but the reference gives {len(refs)}", phase="evaluate")
    for k, (r, c) in enumerate(zip(refs, cands)):
        if np.shape(r) != np.shape(c):
            raise ModelRunError(
                f"candidate output {k} has shape {np.shape(c)} but the reference's has {np.shape(r)}; "
                "an optimised model must answer in the original's shape",
                phase="evaluate",
            )
    n = _rows(np.asarray(refs[0]))
    a = np.concatenate([np.asarray(r, dtype=np.float64).reshape(n, -1) for r in refs], axis=1)
    b = np.concatenate([np.asarray(c, dtype=np.float64).reshape(n, -1) for c in cands], axis=1)
    diff = np.abs(a - b)
    out: dict[str, float | int] = {"rows": n, "outputs": len(refs)}
    first_ref, first_cand = np.asarray(refs[0]), np.asarray(cands[0])
    if first_ref.ndim == 2 and first_ref.shape[1] > 1:
        out["top1_agreement"] = float(np.mean(first_ref.argmax(axis=1) == first_cand.argmax(axis=1)))
    out["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
    out["mean_abs_diff"] = float(diff.mean()) if diff.size else 0.0
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(both_zero, 1.0, np.einsum("ij,ij->i", a, b) / np.where(na * nb == 0, np.inf, na * nb))
    out["cosine"] = float(np.clip(cos, -1.0, 1.0).mean())
    return out


# --------------------------------------------------------------------------- evaluate


class Evaluation(BaseModel):
    """What an evaluation found, as data (JSON-friendly) for the optimize report.

    ``metric_source`` says whether the user named the metric or it was chosen from
    the shape of the outputs; ``note`` says why, in words.
    """

    model_config = ConfigDict(extra="forbid")

    metric: str | None = None
    value: float | None = None
    higher_is_better: bool | None = None
    metric_source: Literal["given", "auto"] | None = None
    rows: int
    labels: bool
    fidelity: dict[str, float | int] | None = None
    note: str | None = None


def evaluate(
    runner: Runner,
    data: EvalData,
    *,
    metric: str | Metric | None = None,
    reference: Outputs | None = None,
    batch_size: int = 64,
    outputs: Outputs | None = None,
) -> Evaluation:
    """Score ``runner`` on ``data``: a metric when there are labels, fidelity to
    ``reference`` (the original model's :func:`model_outputs`) when given, or both.
    ``outputs``: the runner's outputs on ``data`` when already computed."""
    if data.labels is None and metric is not None:
        name = metric.name if isinstance(metric, Metric) else metric
        raise UsageError(
            f"metric '{name}' needs labels but the eval data {data.source or ''} has none; "
            "add a 'labels' array, or drop --metric to measure fidelity to the original model"
        )
    if data.labels is None and reference is None:
        raise UsageError(
            f"nothing to evaluate: the eval data {data.source or ''} has no labels and no reference outputs were given; "
            "add a 'labels' array or compare with the original model's outputs"
        )
    chosen = resolve_metric(metric) if isinstance(metric, str) else metric  # fail before running the model
    if outputs is None:
        outputs = model_outputs(runner, data, batch_size=batch_size)
    result = Evaluation(rows=data.n, labels=data.labels is not None)
    if data.labels is not None:
        source: Literal["given", "auto"] = "given"
        if chosen is None:
            source = "auto"
            first = _first(outputs)
            classifier = first.ndim == 2 and first.shape[1] > 1 and np.ndim(data.labels) == 1
            chosen = METRICS["accuracy" if classifier else "mse"]
            result.note = (
                f"no metric given: {chosen.name}, since outputs {tuple(first.shape)} "
                f"{'are class scores and labels are class ids' if classifier else 'are not class scores with class-id labels'}"
            )
        result.metric, result.metric_source = chosen.name, source
        result.higher_is_better = chosen.higher_is_better
        result.value = _score(chosen, outputs, data.labels)
    if reference is not None:
        result.fidelity = fidelity(reference, outputs)
    return result


def headline_figure(ev: Evaluation) -> tuple[float | None, str, bool]:
    """The figure an accuracy budget is judged on: the metric with labels, else fidelity
    (top-1 agreement for class scores, mean cosine otherwise)."""
    if ev.metric is not None:
        return ev.value, ev.metric, bool(ev.higher_is_better)
    f = ev.fidelity or {}
    if "top1_agreement" in f:
        return float(f["top1_agreement"]), "fidelity: top-1 agreement", True
    if "cosine" in f:
        return float(f["cosine"]), "fidelity: cosine", True
    return None, "", True
