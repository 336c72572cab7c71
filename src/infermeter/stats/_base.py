"""What every statistic in this package shares: sample validation, the confidence check,
millisecond formatting for messages."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_Samples = npt.ArrayLike
_Bound = float | None


def _as_samples(samples: _Samples, what: str = "samples") -> npt.NDArray[np.float64]:
    """Validate once, here, so every statistic sees the same clean 1-D float array."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of numbers, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{what} is empty: at least one sample is needed")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values; drop failed calls before computing statistics")
    return x


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")


def _ms(seconds: float) -> str:
    """Milliseconds with enough digits to compare two figures by eye."""
    v = seconds * 1e3
    if abs(v) >= 100:
        return f"{v:.1f} ms"
    if abs(v) >= 1:
        return f"{v:.2f} ms"
    return f"{v:.3g} ms"
