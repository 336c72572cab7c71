from __future__ import annotations

import mmap

import numpy as np
import pytest

from infermeter.timing import memory
from infermeter.timing.memory import PeakRSS

from ._helpers import spin_ns

MB = 1 << 20


def _touch_200mb(hold_ns: int = 0) -> None:
    # Fresh anonymous pages, written so every one is resident. Not malloc: in a long test
    # session the allocator may hand back memory that is already resident and RSS not grow.
    m = mmap.mmap(-1, 200 * MB)
    a = np.frombuffer(m, dtype=np.uint8)
    a[:] = 1
    assert a[-1] == 1
    spin_ns(hold_ns)
    del a
    m.close()


@pytest.mark.parametrize("method", ["auto", "psutil"])
def test_peak_rss_sees_200mb_and_resets(method: str) -> None:
    p = PeakRSS(method=method)
    p.start()
    _touch_200mb(hold_ns=30_000_000)  # held 30 ms so a 5 ms sampler sees it too
    peak = p.stop()
    assert p.start_bytes is not None
    assert peak - p.start_bytes >= 180 * MB, (peak, p.start_bytes, p.accounting)

    with PeakRSS(method=method) as q:
        pass
    assert q.peak_bytes is not None and q.peak_bytes < peak - 150 * MB, (q.peak_bytes, peak)
    assert q.accounting == p.accounting


def test_accounting_names_the_method() -> None:
    p = PeakRSS()
    p.start()
    p.stop()
    assert p.accounting in (memory.VMHWM_ACCOUNTING, memory.PSUTIL_ACCOUNTING.format(ms=5))
    s = PeakRSS(method="psutil")
    s.start()
    s.stop()
    assert s.accounting.startswith("psutil RSS sampled every 5 ms")


def test_vmhwm_used_on_linux_when_resettable() -> None:
    if not memory._reset_hwm():
        pytest.skip("/proc/self/clear_refs cannot reset the peak RSS here")
    p = PeakRSS(method="vmhwm")
    with p:
        pass
    assert p.accounting == "VmHWM (kernel peak RSS, reset by clear_refs)"


def test_misuse_is_reported() -> None:
    with pytest.raises(ValueError):
        PeakRSS(method="guess")
    with pytest.raises(RuntimeError):
        PeakRSS(method="psutil").stop()
