"""Calibration points for recurrent layers: whole ``nn.LSTM`` layers, timed as models
call them.

An LSTM's recurrence is T small products one after another, which oneDNN fuses
with the gate math into one kernel per layer (``mkldnn_rnn_layer``); its pace is
neither F.linear's at M = B nor the sum of its parts. So the layer itself is
measured and its rate (the counter's FLOPs for the layer over the time) is kept
as a ``recurrent`` point, keyed by the recurrence's shape (m=B, n=4H, k=H,
batch=T) so the predictor finds it for a counted layer of that shape.
"""

from __future__ import annotations

from typing import Any

from ._count_common import rnn_parts
from .grid import Task, dtype_of, rate_point

__all__ = ["RNNS", "recurrent_tasks"]

# (input features, hidden, steps): small to large hidden sizes, short and long sequences
# (a layer's fixed costs are spread over its steps, so the rate depends on T too)
RNNS: tuple[tuple[int, int, int], ...] = (
    (128, 256, 16), (128, 256, 128), (128, 512, 16), (128, 512, 128), (512, 512, 16), (512, 512, 128),
    (512, 1024, 16), (512, 1024, 128),
)
_BATCHES = (1, 8, 32)


def recurrent_tasks(run: Any, dtypes: list[str], rates: dict[str, float]) -> list[Task]:
    torch = run.torch
    shapes = RNNS[2:3] if run.quick else RNNS
    batches = (1,) if run.quick else _BATCHES
    tasks: list[Task] = []
    for dt in dtypes:
        d = dtype_of(torch, dt)
        for i, h, t in shapes:
            for b in batches:
                parts = rnn_parts("lstm", batch=b, steps=t, input_size=i, hidden=h)
                flops = sum(p.flops for p in parts)
                g = parts[1].gemm
                label = f"lstm I={i} H={h} T={t} b{b}"

                def go(b: int = b, i: int = i, h: int = h, t: int = t, g: Any = g, flops: float = flops,
                       dt: str = dt, d: Any = d, label: str = label) -> None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(b * 7 + h)
                        layer = torch.nn.LSTM(i, h, 1, batch_first=True).to(device=run.device, dtype=d).eval()
                        x = torch.randn(b, t, i, device=run.device, dtype=d)

                    def call() -> Any:
                        with torch.inference_mode():
                            return layer(x)

                    rate_point(run, run.conv, "recurrent", dt, g, flops, call, label)

                # sequential small products: about 1/8 of the probe rate at best
                tasks.append(Task(f"{label} {dt}", run.call_cost(flops / (0.125 * rates[dt])), 0 if b == 8 else 1, go))
    return tasks
