"""Shared by the benchmark scripts: where results go, and what machine made them."""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write(name: str, payload: dict[str, Any]) -> Path:
    from infermeter.env import capture_env

    env = capture_env()
    doc = {
        "benchmark": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": env.cpu_model, "cores_logical": env.cores_logical, "os": env.os, "python": platform.python_version(),
            "load_avg_1m": env.load_avg_1m, "noise": env.noise, "versions": env.versions,
        },
        **payload,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    print(json.dumps(doc, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return path
