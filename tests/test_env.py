from __future__ import annotations

import subprocess
import sys
import time

import pytest

from infermeter import env as env_mod
from infermeter.env import Env, capture_env, noise_warnings


def test_capture_populates_fields_on_this_machine() -> None:
    env = capture_env()
    assert env.cpu_model
    assert env.cpu_arch
    assert env.cores_logical and env.cores_logical >= 1
    assert env.cpu_affinity is None or env.cpu_affinity >= 1
    assert env.memory_total_bytes and env.memory_total_bytes > 0
    assert env.python.count(".") == 2
    assert env.python_implementation
    assert env.os
    assert "numpy" in env.versions
    assert "pydantic" in env.versions
    assert isinstance(env.noise, list)
    if sys.platform.startswith("linux") and env.cpu_arch in ("x86_64", "AMD64"):
        assert "avx2" in env.cpu_flags and "amx_int8" in env.cpu_flags
    # Round-trips as the Result's nested model does.
    assert Env.model_validate_json(env.model_dump_json()) == env


def test_capture_is_fast_and_returns_independent_copies() -> None:
    capture_env()  # warm the per-process cache
    t0 = time.perf_counter()
    a = capture_env()
    b = capture_env()
    assert (time.perf_counter() - t0) / 2 < 0.3
    a.cpu_flags["invented"] = True
    a.versions["invented"] = "1"
    assert "invented" not in b.cpu_flags and "invented" not in capture_env().versions


def test_dynamic_part_is_reread(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    gov = tmp_path / "scaling_governor"
    gov.write_text("powersave\n")
    monkeypatch.setattr(env_mod, "_GOVERNOR_PATH", gov)
    env = capture_env()
    assert env.governor == "powersave"
    assert any("powersave" in w for w in env.noise)
    gov.write_text("performance\n")
    env = capture_env()
    assert env.governor == "performance"
    assert not any("governor" in w for w in env.noise)


def test_no_environment_variable_values_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-Value-9f8e7d6c5b4a"
    monkeypatch.setenv("INFERMETER_TEST_API_KEY", secret)
    monkeypatch.setenv("OMP_NUM_THREADS", "7919")  # a value that would stand out
    dumped = capture_env().model_dump_json()
    assert secret not in dumped
    assert "INFERMETER_TEST_API_KEY" not in dumped
    assert "7919" not in dumped
    # The name of a thread variable may be recorded, never its value.
    assert "OMP_NUM_THREADS" in capture_env().threads.get("env_vars_set", [])


def test_noise_warnings_governor_and_load() -> None:
    quiet = Env(governor="performance", load_avg_1m=0.5, cores_logical=4)
    assert noise_warnings(quiet) == []
    noisy = Env(governor="powersave", load_avg_1m=9.0, cores_logical=4)
    warnings = noise_warnings(noisy)
    assert len(warnings) == 2
    assert warnings[0] == (
        "CPU governor is 'powersave': frequency scaling adds noise; "
        "set it to performance (cpupower frequency-set -g performance)"
    )
    assert "load average 9.0" in warnings[1] and "4 cores" in warnings[1]
    assert all("\n" not in w for w in warnings)


def test_noise_warnings_unknown_values_say_nothing() -> None:
    assert noise_warnings(Env()) == []


def test_noise_warning_low_memory() -> None:
    env = Env(memory_total_bytes=16 * 2**30, memory_available_bytes=2**30)
    (warning,) = noise_warnings(env)
    assert "1.0 of 16.0 GiB" in warning


def test_nvidia_smi_parsing() -> None:
    text = "NVIDIA H100 80GB HBM3, 550.54.15, 81559, 9.0\nNVIDIA H100 80GB HBM3, 550.54.15, 81559, 9.0\n"
    gpus = env_mod._parse_nvidia_smi(text)
    assert len(gpus) == 2
    assert gpus[1] == {
        "index": 1,
        "name": "NVIDIA H100 80GB HBM3",
        "source": "nvidia-smi",
        "driver": "550.54.15",
        "memory_total_bytes": 81559 * 2**20,
        "capability": "9.0",
    }
    old = env_mod._parse_nvidia_smi("Tesla T4, 470.1, 15109\n", ("name", "driver_version", "memory.total"))
    assert old[0]["name"] == "Tesla T4" and "capability" not in old[0]


def test_capture_does_not_import_torch() -> None:
    code = "import infermeter.env as e, sys; e.capture_env(); print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_torch_threads_reported_when_torch_already_imported() -> None:
    pytest.importorskip("torch")
    code = (
        "import torch, infermeter.env as e; torch.set_num_threads(1); "
        "t = e.capture_env().threads; print(t['torch_intraop'], 'torch_interop' in t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["1", "True"]
