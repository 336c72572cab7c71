"""Knowledge distillation: train a smaller student to reproduce a model's outputs.

* :func:`shallow_student` makes a student of about half the depth: a copy of the
  teacher that keeps every other block of its longest stack of repeated blocks
  (blocks 0, 2, 4, ... as DistilBERT was initialised), so it starts from the
  teacher's own weights rather than from scratch;
* :func:`distill` trains any student, in place, on the teacher's outputs for the
  given inputs: KL divergence on softened class scores (Hinton et al., with T²
  scaling) when the teacher outputs class scores ``[n, C]``, mean squared error
  otherwise, optionally plus cross-entropy on true labels. It stops when its time
  budget or its epochs are spent, whichever comes first.

The teacher is never trained: its outputs are computed once, up front, and
cached. Any failure of the student (a forward that breaks once blocks are gone,
an output of the wrong shape, a loss that diverges) is a :class:`TransformError`
that names the reason, so ``optimize`` keeps it as a failed candidate.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailable, TransformError, UsageError
from ..models import short_error

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["DistillInfo", "shallow_student", "distill", "KL_LOSS", "MSE_LOSS"]

KL_LOSS = "KL(T={t:g}) on class scores"
MSE_LOSS = "MSE on outputs"
_TEACHER_BATCH = 256  # rows per teacher call when caching its outputs
_LAST_STEPS = 10  # loss_last is the mean over at most this many final steps


@dataclass(frozen=True)
class DistillInfo:
    steps: int
    epochs: float
    seconds: float  # training wall time (the teacher's cached outputs not counted)
    rows: int
    loss_first: float  # distillation loss of the first step, before any update
    loss_last: float  # mean distillation loss of the last few steps
    loss: str  # "KL(T=2) on class scores" or "MSE on outputs"
    stopped_by: str  # "time budget" or "epochs"
    description: str  # one line for the lineage and notes


def _torch():  # imported on use: torch is an extra
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"distillation needs torch ({exc}); pip install 'infermeter[torch]'") from None
    return torch


# ---------------------------------------------------------------------------- shallow student


def _param_shapes(module: "nn.Module") -> tuple[tuple[str, tuple[int, ...]], ...]:
    return tuple((name, tuple(p.shape)) for name, p in module.named_parameters())


def _repeated_stacks(model: "nn.Module") -> list[tuple[str, int, str]]:
    """``(path, count, block class)`` for every ModuleList or Sequential whose children
    are >= 2 blocks of one class with identical parameter shapes (and some parameters)."""
    torch = _torch()
    found = []
    for path, mod in model.named_modules():
        if not isinstance(mod, (torch.nn.ModuleList, torch.nn.Sequential)):
            continue
        blocks = list(mod.children())
        if len(blocks) < 2 or len({type(b) for b in blocks}) != 1:
            continue
        shapes = {_param_shapes(b) for b in blocks}
        if len(shapes) != 1 or not next(iter(shapes)):
            continue
        found.append((path, len(blocks), type(blocks[0]).__name__))
    return found


def shallow_student(teacher: "nn.Module") -> tuple["nn.Module", str]:
    """A copy of ``teacher`` with every other block of its longest stack of repeated
    blocks (0, 2, 4, ...), initialised from the teacher's weights; and a note of what
    was kept. The teacher is not changed."""
    torch = _torch()
    if not isinstance(teacher, torch.nn.Module):
        raise UsageError(f"a shallow student needs a torch nn.Module, not {type(teacher).__name__}")
    stacks = _repeated_stacks(teacher)
    if not stacks:
        raise TransformError(
            f"no stack of repeated blocks in {type(teacher).__name__} to halve; a shallow student needs a ModuleList or "
            "Sequential of >= 2 identical layers (as in transformers); try the narrow student"
        )
    path, count, block = max(stacks, key=lambda s: s[1])  # the first of the longest, outermost first
    student = copy.deepcopy(teacher)
    stack = student.get_submodule(path) if path else student
    items = list(stack._modules.items())
    kept = items[::2]
    numeric = all(k.isdigit() for k, _ in items)
    stack._modules.clear()
    for i, (key, mod) in enumerate(kept):
        stack._modules[str(i) if numeric else key] = mod
    where = f"'{path}'" if path else "the model itself"
    return student.train(teacher.training), f"kept {len(kept)} of {count} {block} blocks in {where}"


# ---------------------------------------------------------------------------- distillation


def _first_tensor(out: Any) -> "torch.Tensor | None":
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, Mapping) else out if isinstance(out, (tuple, list)) else ()
    for v in values:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def _as_tensor(name: str, a: np.ndarray) -> "torch.Tensor":
    torch = _torch()
    if a.dtype == np.bool_:
        return torch.from_numpy(np.ascontiguousarray(a))
    if np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if np.issubdtype(a.dtype, np.integer):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    raise UsageError(f"input '{name}' has dtype {a.dtype}; give float, integer or bool arrays")


def _device(module: "nn.Module") -> "torch.device":
    torch = _torch()
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def _shape(t: "torch.Tensor") -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _check_args(inputs: Mapping[str, np.ndarray], input_names: Sequence[str], seconds: float, max_epochs: int,
                batch_size: int, lr: float, temperature: float, label_weight: float) -> tuple[dict[str, np.ndarray], int]:
    if not input_names:
        raise UsageError("distillation needs the model's input names; give input_names in the order the model takes them")
    missing = [n for n in input_names if n not in inputs]
    if missing:
        raise UsageError(f"no rows for input {', '.join(repr(n) for n in missing)} (have {', '.join(map(repr, inputs)) or 'none'}); "
                         "give an array for every input the model takes")
    arrays = {n: np.asarray(inputs[n]) for n in input_names}
    if any(a.ndim == 0 for a in arrays.values()):
        raise UsageError("distillation inputs must have rows on axis 0; give arrays of shape [rows, ...]")
    rows = {a.shape[0] for a in arrays.values()}
    if len(rows) != 1:
        raise UsageError(f"distillation inputs have different row counts {sorted(rows)}; give the same rows for every input")
    n = rows.pop()
    if n == 0:
        raise UsageError("distillation needs some input rows, and got none; give sample inputs (--eval or --calibration rows)")
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise UsageError(f"distillation time budget {seconds} s is not a finite number >= 0; give seconds >= 0")
    for what, value in (("max_epochs", max_epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise UsageError(f"{what} {value} is below 1; give a positive whole number")
    for what, value in (("learning rate", lr), ("temperature", temperature)):
        if not (value > 0 and math.isfinite(value)):
            raise UsageError(f"distillation {what} {value} is not a positive number; give one above 0")
    if not (label_weight >= 0 and math.isfinite(label_weight)):
        raise UsageError(f"label_weight {label_weight} is not a number >= 0; give 0 (outputs only) or more")
    return arrays, n


def _teacher_outputs(teacher: "nn.Module", xs: list["torch.Tensor"], n: int) -> "torch.Tensor":
    """The teacher's first tensor output for all rows, in eval mode, without grad, on the CPU."""
    torch = _torch()
    dev = _device(teacher)
    parts = []
    was_training = teacher.training
    teacher.eval()
    try:
        with torch.inference_mode():
            for i in range(0, n, _TEACHER_BATCH):
                try:
                    out = teacher(*[x[i:i + _TEACHER_BATCH].to(dev) for x in xs])
                except Exception as exc:
                    raise UsageError(f"the teacher cannot run on the distillation inputs: {short_error(exc)}; "
                                     "give inputs the model accepts, in input_names order") from None
                t = _first_tensor(out)
                if t is None:
                    raise TransformError(f"the teacher returned no tensor ({type(out).__name__}); distillation needs tensor outputs")
                if not t.is_floating_point():
                    raise TransformError(f"the teacher's first output is {t.dtype}, not floating point; "
                                         "distillation needs scores or features to match")
                if t.ndim == 0 or t.shape[0] != min(_TEACHER_BATCH, n - i):
                    raise TransformError(f"the teacher's first output {_shape(t)} has no row per input row; "
                                         "distillation needs outputs with rows on axis 0")
                parts.append(t.detach().float().cpu())
    finally:
        teacher.train(was_training)
    return torch.cat(parts)


def distill(teacher: "nn.Module", student: "nn.Module", inputs: Mapping[str, np.ndarray], *, input_names: Sequence[str],
            seconds: float = 30.0, max_epochs: int = 200, batch_size: int = 64, lr: float = 1e-3, temperature: float = 2.0,
            labels: np.ndarray | None = None, label_weight: float = 0.0, seed: int = 0) -> DistillInfo:
    """Train ``student`` in place to reproduce ``teacher``'s first output on ``inputs``
    (arrays keyed by input name, rows on axis 0; the models are called with them in
    ``input_names`` order). The student ends in eval mode."""
    torch = _torch()
    F = torch.nn.functional
    for role, m in (("teacher", teacher), ("student", student)):
        if not isinstance(m, torch.nn.Module):
            raise UsageError(f"the {role} must be a torch nn.Module, not {type(m).__name__}")
    if student is teacher:
        raise UsageError("the student is the teacher itself; give a separate student (a copy or a smaller model)")
    if isinstance(input_names, str):
        input_names = [input_names]
    arrays, n = _check_args(inputs, input_names, seconds, max_epochs, batch_size, lr, temperature, label_weight)
    xs = [_as_tensor(name, arrays[name]) for name in input_names]
    params = [p for p in student.parameters() if p.requires_grad]
    if not params:
        raise TransformError(f"the student {type(student).__name__} has no trainable parameters; give a student with some")

    targets = _teacher_outputs(teacher, xs, n)
    classes = targets.ndim == 2 and targets.shape[1] > 1
    loss_name = KL_LOSS.format(t=temperature) if classes else MSE_LOSS

    y = None
    if label_weight > 0:
        if labels is None:
            raise UsageError(f"label_weight {label_weight:g} needs labels; give labels (one class per row) or label_weight 0")
        if not classes:
            raise UsageError(f"labels need a teacher that outputs class scores [rows, classes], and its output is "
                             f"{_shape(targets)}; give label_weight 0")
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != n or not np.issubdtype(lab.dtype, np.integer):
            raise UsageError(f"labels must be {n} whole class numbers, one per row, and are {lab.dtype} of shape {list(lab.shape)}; "
                             "give a 1-D integer array")
        if lab.min() < 0 or lab.max() >= targets.shape[1]:
            raise UsageError(f"labels run from {lab.min()} to {lab.max()} but the teacher scores {targets.shape[1]} classes; "
                             f"give labels in 0..{targets.shape[1] - 1}")
        y = torch.from_numpy(lab.astype(np.int64))

    dev = _device(student)
    bs = min(int(batch_size), n)
    T = float(temperature)

    def loss_of(s: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
        if classes:
            return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * (T * T)
        return F.mse_loss(s, t)

    losses: list[float] = []
    steps = 0
    seen = 0
    stopped_by = "epochs"
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    # fork_rng: the student's dropout is seeded too, and the caller's random state does not move.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        student.train()
        start = time.perf_counter()
        try:
            for _ in range(int(max_epochs)):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, bs):
                    idx = perm[i:i + bs]
                    if len(idx) < 2 <= bs:  # a lone last row: batch norm cannot train on it
                        continue
                    t = targets[idx].to(dev)
                    try:
                        out = student(*[x[idx].to(dev) for x in xs])
                    except Exception as exc:
                        raise TransformError(f"the student's forward failed: {short_error(exc)}; "
                                             "give a student that runs on the teacher's inputs") from None
                    s = _first_tensor(out)
                    if s is None or tuple(s.shape) != tuple(t.shape):
                        got = _shape(s) if s is not None else f"no tensor ({type(out).__name__})"
                        raise TransformError(f"student outputs {got} but the teacher {_shape(t)}; "
                                             "give a student whose first output has the teacher's shape")
                    s = s.float()
                    dl = loss_of(s, t)
                    total = dl + label_weight * F.cross_entropy(s, y[idx].to(dev)) if y is not None else dl
                    value = float(dl.detach())
                    if not math.isfinite(float(total.detach())):
                        raise TransformError(f"distillation diverged (loss {value} at step {steps + 1}); lower the learning rate "
                                             f"(now {lr:g})")
                    opt.zero_grad(set_to_none=True)
                    try:
                        total.backward()
                    except Exception as exc:  # an output cut off from the parameters, an in-place op on it, ...
                        raise TransformError(f"the student's backward pass failed: {short_error(exc)}; "
                                             "give a student whose output depends on its trainable parameters") from None
                    opt.step()
                    losses.append(value)
                    steps += 1
                    seen += len(idx)
                    if time.perf_counter() - start >= seconds:
                        stopped_by = "time budget"
                        break
                if stopped_by == "time budget":
                    break
        finally:
            elapsed = time.perf_counter() - start
            student.eval()

    k = max(1, min(_LAST_STEPS, steps // 4))
    loss_first, loss_last = losses[0], float(np.mean(losses[-k:]))
    epochs = seen / n
    extra = f" + {label_weight:g} * CE on labels" if y is not None else ""
    description = (f"distilled {type(student).__name__} from {type(teacher).__name__}: {loss_name}{extra}, "
                   f"{steps} steps ({epochs:.1f} epochs of {n} rows, batch {bs}, lr {lr:g}) in {elapsed:.1f} s, "
                   f"stopped by {stopped_by}; loss {loss_first:.4g} -> {loss_last:.4g}")
    return DistillInfo(steps=steps, epochs=epochs, seconds=elapsed, rows=n, loss_first=loss_first, loss_last=loss_last,
                       loss=loss_name, stopped_by=stopped_by, description=description)
