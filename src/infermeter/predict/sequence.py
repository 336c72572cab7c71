"""Kernels in sequence: the calibration step that checks the isolated points against
chains of different ops, and the factor the predictor takes from it.

Every other calibration point repeats one kernel on the same tensors, so its
weights, activations, instruction caches and the thread pool stay warm for it.
A model runs different kernels one after another, each meeting caches filled by
the last. The chains here are synthetic (not any model the user predicts):
transformer-shaped blocks (linear, GELU, linear, residual add, layer norm) over
several weight sets, at row counts from 1 to 512, and a small conv stack.
Each chain is counted and predicted from the isolated points exactly as a user
model is, then timed end to end; measured / predicted, against the chain's mean
predicted op time, is the factor by which ops of that length run slower in
sequence on this machine. The predictor interpolates it in log(op time),
clamped to the measured range, and says so in its notes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .schema import HardwareProfile, SequencePoint

__all__ = ["measure_sequences", "SequenceFactor"]

_ROWS = (1, 8, 64, 512)
_HIDDEN = 768
_BLOCKS = 4  # distinct weight sets: 4 x 9.4 MB of fp32 FFN weights, past a core's L2


def _chains(torch: Any, quick: bool) -> list[tuple[str, Any, tuple[Any, ...]]]:
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self, h: int) -> None:
            super().__init__()
            self.fc1 = nn.Linear(h, 4 * h)
            self.fc2 = nn.Linear(4 * h, h)
            self.norm = nn.LayerNorm(h)

        def forward(self, x: Any) -> Any:
            return self.norm(x + self.fc2(F.gelu(self.fc1(x))))

    class ConvStack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(64, 64, 3, 1, 1)
            self.b1 = nn.BatchNorm2d(64)
            self.c2 = nn.Conv2d(64, 128, 3, 2, 1)
            self.b2 = nn.BatchNorm2d(128)

        def forward(self, x: Any) -> Any:
            x = F.relu(self.b1(self.c1(x)))
            return F.relu(self.b2(self.c2(x)))

    hidden = 256 if quick else _HIDDEN
    rows = (1, 64) if quick else _ROWS
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ffn = nn.Sequential(*[Block(hidden) for _ in range(2 if quick else _BLOCKS)]).eval()
        for m in rows:
            out.append((f"ffn blocks h={hidden} rows={m}", ffn, (torch.randn(m, hidden),)))
        if not quick:
            conv = ConvStack().eval()
            for b in (1, 8):
                out.append((f"conv stack 64@56 b{b}", conv, (torch.randn(b, 64, 56, 56),)))
    return out


def measure_sequences(profile: HardwareProfile, *, torch: Any, device: Any, timer: Any, dtypes: list[str],
                      quick: bool = False) -> list[SequencePoint]:
    """Chains measured end to end against their prediction from ``profile``'s isolated points."""
    from .count_torch import count_torch
    from .machine import machine_for_profile
    from .roofline import predict_work

    if profile.kind != "cpu":  # GPU queues overlap host and device work: not this model's subject
        return []
    machine = machine_for_profile(profile)
    points: list[SequencePoint] = []
    for dt in dtypes:
        d = getattr(torch, dt)
        for label, module, args in _chains(torch, quick):
            mod = module.to(device=device, dtype=d)
            xs = tuple(a.to(device=device, dtype=d) for a in args)
            work = count_torch(mod, xs, {}, spec=label, batch_size=int(xs[0].shape[0]), dims={})
            pred = predict_work(work, machine)

            def call(mod: Any = mod, xs: tuple[Any, ...] = xs) -> Any:
                with torch.inference_mode():
                    return mod(*xs)

            t = timer.time(call)
            points.append(SequencePoint(label=label, dtype=dt, ops=len(work.ops), predicted_s=pred.latency_s,
                                        measured_s=t.seconds, mean_op_s=pred.latency_s / max(1, len(work.ops)),
                                        spread=t.spread))
    return points


class SequenceFactor:
    """measured / isolated, as a function of an op's isolated time (log-log, clamped)."""

    def __init__(self, points: list[SequencePoint]) -> None:
        pts = sorted((p for p in points if p.predicted_s > 0 and p.measured_s > 0), key=lambda p: p.mean_op_s)
        self.x = np.log([p.mean_op_s for p in pts]) if pts else np.array([])
        self.y = np.log([p.ratio for p in pts]) if pts else np.array([])

    def __bool__(self) -> bool:
        return bool(self.x.size)

    def at(self, op_s: float) -> float:
        if not self.x.size or op_s <= 0:
            return 1.0
        return float(math.exp(np.interp(math.log(op_s), self.x, self.y)))
