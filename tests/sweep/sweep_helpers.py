"""Shared by the sweep tests (importable because pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# Fast points: a spin model stops on precision in a fraction of a second.
FAST = {"max_time_s": 0.3, "precision": 0.05}
INPUT = "x:float32[B,4]"


def worker_env(**extra: str) -> dict[str, str]:
    """The environment worker processes get: spin (tests/) and sweep_models (tests/sweep/) importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(TESTS), str(HERE), env.get("PYTHONPATH", "")] if p)
    env.update(extra)
    return env


def cli(args: list[str], cwd: Path, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    env = worker_env(INFERMETER_STORE=str(cwd / "store.db"), COLUMNS="250", **extra)
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def one_line_error(p: subprocess.CompletedProcess[str], code: int) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]
