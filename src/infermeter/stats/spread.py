"""Between-process spread: how much the median moves between fresh processes."""

from __future__ import annotations

import math
import warnings

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats as sps

from ._base import _as_samples, _check_confidence, _ms, _Samples
from .noise import DRIFT_MIN_REL
from .percentiles import CONFIDENCE, median_ci_halfwidth_rel, percentile_sorted

# ---------------------------------------------------------------- between-process spread


class ProcessSpread(BaseModel):
    """How much a figure moves between fresh processes of the same measurement (sweep ``--processes N``).

    Memory layout, allocator state and thread placement are fixed for the life of a
    process, so samples within one process are not independent of it: two processes
    can disagree by more than either one's CI admits. This says whether they did.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    processes: int
    counts: list[int]
    medians: list[float]
    median_of_medians: float
    min_median: float
    max_median: float
    range_rel: float
    cv_of_medians: float | None
    within_halfwidth_rel: float | None
    p_value: float | None
    significant: bool
    method: str
    warnings: list[str]


PROCESS_SPREAD_METHOD = (
    "per process: nearest-rank median; range_rel = (max - min) / median of the process medians; "
    "cv_of_medians = std (ddof=1) / mean of the process medians; within_halfwidth_rel = the largest "
    "relative half-width of a process's own 95% median CI (distribution-free); p_value: Kruskal-Wallis H "
    "test that all processes draw from one distribution; significant when p < 1 - confidence and "
    "range_rel >= DRIFT_MIN_REL and range_rel exceeds twice within_halfwidth_rel"
)


def process_spread(groups: list[_Samples], confidence: float = CONFIDENCE) -> ProcessSpread:
    """Between-process spread of the median, from each process's latency samples (one group per process)."""
    _check_confidence(confidence)
    arrays = [_as_samples(g, f"samples of process {i}") for i, g in enumerate(groups)]
    if not arrays:
        raise ValueError("process_spread needs the samples of at least one process")
    sorted_arrays = [np.sort(a) for a in arrays]
    medians = [percentile_sorted(s, 50) for s in sorted_arrays]
    mom = float(np.median(medians))
    lo, hi = min(medians), max(medians)
    range_rel = (hi - lo) / mom if mom > 0 else 0.0
    cv = None
    if len(medians) > 1:
        mean = float(np.mean(medians))
        cv = float(np.std(medians, ddof=1)) / mean if mean > 0 else 0.0
    halfwidths = [median_ci_halfwidth_rel(s, confidence) for s in sorted_arrays]
    finite = [h for h in halfwidths if math.isfinite(h)]
    within = max(finite) if finite else None
    p: float | None = None
    if len(arrays) > 1 and all(a.size >= 2 for a in arrays):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = float(sps.kruskal(*arrays).pvalue)
        except ValueError:  # every value identical
            p = 1.0
        if math.isnan(p):
            p = 1.0
    significant = bool(
        p is not None and p < 1.0 - confidence and range_rel >= DRIFT_MIN_REL
        and (within is None or range_rel > 2 * within)
    )
    notes: list[str] = []
    if significant:
        notes.append(
            f"between-process spread: the medians of {len(arrays)} fresh processes range from {_ms(lo)} to {_ms(hi)} "
            f"({range_rel * 100:.1f}% of their median), more than each process's own CI allows"
            + (f" (±{within * 100:.1f}%)" if within is not None else "")
            + "; process state (memory layout, allocator) matters here: report the merged figures and use more --processes"
        )
    return ProcessSpread(
        processes=len(arrays), counts=[int(a.size) for a in arrays], medians=medians, median_of_medians=mom,
        min_median=lo, max_median=hi, range_rel=range_rel, cv_of_medians=cv, within_halfwidth_rel=within,
        p_value=p, significant=significant, method=PROCESS_SPREAD_METHOD, warnings=notes,
    )
