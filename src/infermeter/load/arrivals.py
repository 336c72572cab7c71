"""Open-loop send schedules: seeded arrival processes and trace files.

A schedule is an ascending float64 array of intended send times, seconds from
the run's start ``t0``. The same seed gives the same schedule (DESIGN
"Reproducible by default"); the generator is seeded by ``(seed, 1)`` like
``scenarios/server.py`` so arrivals do not share a stream with the inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from .config import parse_arrival

__all__ = ["arrival_offsets", "read_trace"]


def arrival_offsets(rate: float, duration_s: float, arrival: str, seed: int, max_n: int) -> np.ndarray:
    """Send times in ``[0, duration_s)`` at ``rate`` per second, at most ``max_n`` of them.

    ``constant``: one every ``1/rate`` from 0. ``poisson``: exponential gaps.
    ``gamma:K``: gamma gaps of shape K and mean ``1/rate``. The first random
    arrival comes one gap after 0, as in ``scenarios/server.arrival_offsets``.
    """
    kind, k = parse_arrival(arrival)
    mean_n = rate * duration_s
    if kind == "constant":
        n = min(int(max_n), max(0, math.ceil(mean_n - 1e-9)))
        t = np.arange(n, dtype=np.float64) / rate
        return t[t < duration_s]
    rng = np.random.default_rng([int(seed), 1])
    n = min(int(max_n), int(mean_n + 8 * math.sqrt(mean_n) / min(1.0, math.sqrt(k or 1.0)) + 16))
    if kind == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        assert k is not None
        gaps = rng.gamma(k, 1.0 / (rate * k), n)
    t = np.cumsum(gaps)
    return t[t < duration_s]


def read_trace(path: str | Path) -> np.ndarray:
    """Read a trace: one send time per line, seconds from the start, ascending.

    ``#`` starts a comment (whole line or after the number); blank lines are
    skipped. A line that is not a finite number >= 0, or a time before the one
    on the line above, is an :class:`InputError` naming the line.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"trace file '{p}' does not exist; give a text file with one send time (seconds) per line") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read trace file '{p}': {exc}; give a text file with one send time (seconds) per line") from None
    times: list[float] = []
    last = -math.inf
    for lineno, line in enumerate(text.splitlines(), start=1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        try:
            t = float(item)
        except ValueError:
            t = math.nan
        if not math.isfinite(t) or t < 0:
            raise InputError(f"trace '{p}' line {lineno}: '{item}' is not a send time; "
                             "each line must be one number of seconds >= 0 ('#' starts a comment)")
        if t < last:
            raise InputError(f"trace '{p}' line {lineno}: time {item} is before the previous one ({last:g}); "
                             "sort the send times in ascending order")
        times.append(t)
        last = t
    if not times:
        raise InputError(f"trace '{p}' holds no send times; put one number of seconds per line")
    return np.asarray(times, dtype=np.float64)
