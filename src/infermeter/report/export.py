"""Results as files: JSON (the full schema) and CSV (one flat row per result).

Writes are atomic (temporary file + rename) so a crash never leaves half a file.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..errors import OutputError
from ..result import Estimate, Result, results_to_json

__all__ = ["to_json", "to_csv", "write_text", "check_writable", "CSV_COLUMNS"]

CSV_COLUMNS = [
    "id", "invocation", "created", "status", "spec", "backend", "device", "dtype", "scenario", "batch_size",
    "count", "per", "block_size",
    "mean_s", "mean_ci_low_s", "mean_ci_high_s", "std_s", "min_s", "max_s",
    "p50_s", "p50_ci_low_s", "p50_ci_high_s", "p90_s", "p90_ci_low_s", "p90_ci_high_s",
    "p95_s", "p95_ci_low_s", "p95_ci_high_s", "p99_s", "p99_ci_low_s", "p99_ci_high_s",
    "p999_s", "p999_ci_low_s", "p999_ci_high_s",
    "throughput_samples_per_s", "throughput_ci_low", "throughput_ci_high",
    "import_s", "load_s", "first_inference_s", "warmup_iters", "load_peak_rss_bytes", "inference_peak_rss_bytes",
    "device_peak_bytes", "timer_overhead_s", "stop_reason", "warnings", "error",
]


def to_json(results: Sequence[Result]) -> str:
    return results_to_json(list(results))


def _est(prefix: str, e: Estimate | None, row: dict[str, Any], unit: str = "_s") -> None:
    row[f"{prefix}{unit}"] = e.value if e else None
    row[f"{prefix}_ci_low{unit}"] = e.ci_low if e else None
    row[f"{prefix}_ci_high{unit}"] = e.ci_high if e else None


def _row(r: Result) -> dict[str, Any]:
    lat = r.latency
    row: dict[str, Any] = {
        "id": r.id, "invocation": r.invocation, "created": r.created.isoformat(), "status": r.status,
        "spec": r.model.spec, "backend": r.model.backend, "device": r.model.device, "dtype": r.model.dtype,
        "scenario": r.scenario, "batch_size": r.batch_size,
        "count": lat.count if lat else 0, "per": lat.per if lat else None, "block_size": r.timer.block_size,
        "std_s": lat.std if lat else None, "min_s": lat.min if lat else None, "max_s": lat.max if lat else None,
    }
    _est("mean", lat.mean if lat else None, row)
    for key in ("p50", "p90", "p95", "p99", "p999"):
        _est(key, getattr(lat, key) if lat else None, row)
    t = r.throughput.samples_per_s if r.throughput else None
    row["throughput_samples_per_s"] = t.value if t else None
    row["throughput_ci_low"] = t.ci_low if t else None
    row["throughput_ci_high"] = t.ci_high if t else None
    row.update(
        import_s=r.phases.import_s, load_s=r.phases.load_s, first_inference_s=r.phases.first_inference_s, warmup_iters=r.phases.warmup_iters,
        load_peak_rss_bytes=r.memory.load_peak_rss_bytes, inference_peak_rss_bytes=r.memory.inference_peak_rss_bytes,
        device_peak_bytes=r.memory.device_peak_bytes, timer_overhead_s=r.timer.overhead_s,
        stop_reason=r.stop_reason, warnings=" | ".join(r.warnings), error=r.error,
    )
    return row


def to_csv(results: Sequence[Result]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in results:
        w.writerow(_row(r))
    return buf.getvalue()


def check_writable(path: str | Path) -> Path:
    """Fail before measuring if ``path`` cannot be written (no directory, a directory, no permission)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputError(f"output path '{p}' is a directory; give a file name such as {p / 'out.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write '{p}': directory '{parent}' does not exist; create it or choose another path")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise OutputError(f"cannot write '{p}': permission denied; choose a writable path")
    return p


def write_text(path: str | Path, text: str) -> Path:
    p = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
    except OSError as exc:
        raise OutputError(f"cannot write '{p}': {exc.strerror or exc}; choose a writable path") from None
    return p
