"""Peak resident memory (RSS) of this process during a phase.

Two ways, the better one where it works:

* **VmHWM** — on Linux the kernel keeps the process's RSS high-water mark.
  Writing ``5`` to ``/proc/self/clear_refs`` resets it to the current RSS
  (Linux >= 4.0; it touches no page state, unlike 1-4), so the peak of a phase
  is ``VmHWM`` read from ``/proc/self/status`` at its end. Exact: no allocation
  between samples can be missed.
* **psutil sampling** — elsewhere (or where ``clear_refs`` cannot be written, or
  the reset does not take), a daemon thread samples ``psutil``'s RSS every
  ``interval_s`` (5 ms). A spike shorter than the interval can be missed; the
  accounting string says so.

The reset is checked, not assumed: right after it, VmHWM must be close to VmRSS,
else the kernel did not honour it and sampling is used.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType

__all__ = ["PeakRSS", "VMHWM_ACCOUNTING", "PSUTIL_ACCOUNTING"]

VMHWM_ACCOUNTING = "VmHWM (kernel peak RSS, reset by clear_refs)"
PSUTIL_ACCOUNTING = "psutil RSS sampled every {ms:g} ms (spikes shorter than that can be missed)"

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_RESET_SLACK = 8 << 20  # RSS may grow between the reset and the check


def _read_status() -> dict[str, int]:
    """VmRSS and VmHWM in bytes from /proc/self/status."""
    found: dict[str, int] = {}
    with open(_STATUS, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, _, rest = line.partition(":")
                parts = rest.split()
                found[key] = int(parts[0]) * (1024 if len(parts) < 2 or parts[1].lower() == "kb" else 1)
    if "VmRSS" not in found or "VmHWM" not in found:
        raise OSError("VmRSS/VmHWM missing from /proc/self/status")
    return found


def _reset_hwm() -> bool:
    """Reset the kernel's high-water mark; True if it demonstrably took."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
        st = _read_status()
    except OSError:
        return False
    return st["VmHWM"] <= st["VmRSS"] + _RESET_SLACK


class PeakRSS:
    """Peak RSS of the process between :meth:`start` and :meth:`stop`, in bytes.

    ``method``: "auto" (VmHWM where possible, else psutil), "vmhwm" or "psutil".
    Use as ``p = PeakRSS(); p.start(); ...; peak = p.stop()`` or as a context
    manager (``with PeakRSS() as p: ...``, then ``p.peak_bytes``). ``accounting``
    names the method in force (it is recorded with every result); ``start_bytes``
    is the RSS when the phase began.
    """

    def __init__(self, method: str = "auto", interval_s: float = 0.005) -> None:
        if method not in ("auto", "vmhwm", "psutil"):
            raise ValueError(f"PeakRSS method must be 'auto', 'vmhwm' or 'psutil', got {method!r}")
        if not interval_s > 0:
            raise ValueError(f"PeakRSS interval_s must be positive, got {interval_s!r}")
        self.method = method
        self.interval_s = interval_s
        self.accounting = ""
        self.start_bytes: int | None = None
        self.peak_bytes: int | None = None
        self._use_hwm = False
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._sampled_peak = 0
        self._proc: object | None = None

    # -- psutil fallback -------------------------------------------------
    def _rss(self) -> int:
        return int(self._proc.memory_info().rss)  # type: ignore[attr-defined]

    def _sample(self) -> None:
        wait = self._stop_event.wait
        while not wait(self.interval_s):
            try:
                rss = self._rss()
            except Exception:  # process info can fail transiently; keep the last peak
                continue
            if rss > self._sampled_peak:
                self._sampled_peak = rss

    # -- API ---------------------------------------------------------------
    def start(self) -> "PeakRSS":
        if self._thread is not None:
            raise RuntimeError("PeakRSS.start() called twice without stop()")
        self.peak_bytes = None
        self._use_hwm = False
        if self.method in ("auto", "vmhwm") and sys.platform.startswith("linux"):
            self._use_hwm = _reset_hwm()
        if self.method == "vmhwm" and not self._use_hwm:
            raise OSError("cannot reset the kernel's peak RSS (/proc/self/clear_refs); use method='auto' or 'psutil'")
        if self._use_hwm:
            self.accounting = VMHWM_ACCOUNTING
            self.start_bytes = _read_status()["VmRSS"]
            return self
        import psutil

        self._proc = psutil.Process()
        self.accounting = PSUTIL_ACCOUNTING.format(ms=self.interval_s * 1e3)
        self.start_bytes = self._sampled_peak = self._rss()
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._sample, name="infermeter-peak-rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        """End the phase; the peak RSS during it, in bytes."""
        if self._use_hwm:
            self._use_hwm = False
            self.peak_bytes = _read_status()["VmHWM"]
            return self.peak_bytes
        if self._thread is None:
            raise RuntimeError("PeakRSS.stop() called before start()")
        self._stop_event.set()
        self._thread.join()
        self._thread = None
        try:
            self._sampled_peak = max(self._sampled_peak, self._rss())
        except Exception:
            pass
        self.peak_bytes = self._sampled_peak
        return self.peak_bytes

    def __enter__(self) -> "PeakRSS":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
