"""The shipped spec-sheet table, hardware files, and `infermeter hardware`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.errors import UsageError
from infermeter.predict.hardware import DTYPES, find_spec, get_spec, normalize_dtype, peak_for, table
from infermeter.predict.schema import HardwareSpec

REQUIRED = [
    "nvidia-h100-sxm", "nvidia-h100-pcie", "nvidia-h200-sxm", "nvidia-a100-sxm-80gb", "nvidia-l4", "nvidia-t4",
    "amd-mi300x", "google-tpu-v5e", "intel-xeon-platinum-8480plus", "amd-epyc-9654", "apple-m2-gpu",
    "apple-m3-max-gpu", "nvidia-jetson-agx-orin-64gb",
]


def test_table_loads_with_sources_and_sane_figures() -> None:
    specs = table()
    names = [s.name for s in specs]
    assert set(REQUIRED) <= set(names)
    assert {"intel-xeon-platinum-8592plus", "intel-xeon-6980p"} & set(names)  # an Emerald/Granite Rapids
    assert len(names) == len(set(names))
    for s in specs:
        assert "http" in s.source, s.name
        assert s.peak_flops and set(s.peak_flops) <= set(DTYPES), s.name
        assert all(v > 0 for v in s.peak_flops.values()), s.name
        assert s.memory_bandwidth > 0 and s.notes, s.name
        # no accelerator is faster than 10 PFLOP/s dense or 20 TB/s: catches a misplaced exponent
        assert max(s.peak_flops.values()) < 1e16 and s.memory_bandwidth < 2e13, s.name


def test_dense_peaks_are_half_the_sparse_headlines() -> None:
    # H100 SXM datasheet: BF16 1,979 TFLOPS "with sparsity" -> 989.4 dense (whitepaper)
    assert get_spec("h100").peak_flops["bfloat16"] == pytest.approx(1979e12 / 2, rel=1e-3)
    # L4 datasheet: FP8 485 TFLOPS with sparsity, BF16 242 -> halved
    l4 = get_spec("l4")
    assert l4.peak_flops["float8"] == pytest.approx(485e12 / 2)
    assert l4.peak_flops["bfloat16"] == pytest.approx(242e12 / 2)
    # A100 datasheet lists dense beside sparse: dense used
    assert get_spec("a100").peak_flops["bfloat16"] == 312e12
    assert get_spec("mi300x").peak_flops["float16"] == pytest.approx(1307.4e12)
    # T4 (Turing) has no sparsity: datasheet figures as they are
    assert get_spec("t4").peak_flops == {"float32": 8.1e12, "float16": 65e12, "int8": 130e12}


def test_cpu_peaks_are_cores_times_clock_times_flop_per_cycle() -> None:
    spr = get_spec("sapphire-rapids")
    assert spr.cores == 56
    assert spr.peak_flops["float32"] == pytest.approx(56 * 2.0e9 * 64)  # 2 x AVX-512 FMA x 16 lanes x 2
    assert spr.peak_flops["bfloat16"] == pytest.approx(56 * 2.0e9 * 1024)  # AMX
    assert spr.memory_bandwidth == pytest.approx(8 * 4800e6 * 8)  # 8 channels DDR5-4800
    assert "56 cores x 2.0 GHz" in spr.notes
    genoa = get_spec("genoa")
    assert genoa.peak_flops["float64"] == pytest.approx(96 * 2.4e9 * 16)
    assert "96 cores x 2.4 GHz" in genoa.notes


@pytest.mark.parametrize(
    "text,name",
    [
        ("H100", "nvidia-h100-sxm"),
        ("h100 sxm", "nvidia-h100-sxm"),
        ("NVIDIA_H100_SXM", "nvidia-h100-sxm"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-sxm"),  # torch.cuda.get_device_name
        ("Tesla T4", "nvidia-t4"),
        ("TPU-V5E", "google-tpu-v5e"),
        ("Intel(R) Xeon(R) Platinum 8480+", "intel-xeon-platinum-8480plus"),  # /proc/cpuinfo
        ("m3 max", "apple-m3-max-gpu"),
        ("orin", "nvidia-jetson-agx-orin-64gb"),
    ],
)
def test_names_and_aliases_case_insensitive(text: str, name: str) -> None:
    assert get_spec(text).name == name


def test_unknown_name_lists_close_ones() -> None:
    with pytest.raises(UsageError) as exc:
        get_spec("h10")
    msg = str(exc.value)
    assert "unknown hardware 'h10'" in msg and "nvidia-h100-sxm" in msg and "infermeter hardware" in msg
    assert "\n" not in msg
    assert find_spec("no-such-chip") is None


def test_table_returns_copies() -> None:
    table()[0].peak_flops["float32"] = 1.0
    assert table()[0].peak_flops["float32"] != 1.0


def _entry(**over: object) -> dict:
    d = {"name": "lab-box", "kind": "gpu", "peak_flops": {"fp16": 100e12, "float32": 20e12},
         "memory_bandwidth": 1e12, "source": "our lab's measurement sheet"}
    d.update(over)
    return d


def test_user_yaml_and_json_files(tmp_path: Path) -> None:
    import yaml

    y = tmp_path / "box.yaml"
    y.write_text(yaml.safe_dump(_entry()))
    spec = get_spec(str(y))
    assert spec.name == "lab-box" and spec.peak_flops == {"float16": 100e12, "float32": 20e12}  # fp16 normalised
    j = tmp_path / "box.json"
    j.write_text(json.dumps(_entry(name="json-box")))
    assert get_spec(j).name == "json-box"


@pytest.mark.parametrize(
    "content,needle",
    [
        (json.dumps({k: v for k, v in _entry().items() if k != "memory_bandwidth"}), "field 'memory_bandwidth'"),
        (json.dumps(_entry(peak_flops={"float32": -1})), "field 'peak_flops.float32'"),
        (json.dumps(_entry(peak_flops={"float12": 1e12})), "field 'peak_flops.float12'"),
        (json.dumps(_entry(kind="fpga")), "field 'kind'"),
        (json.dumps([_entry()]), "must hold one hardware entry"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_file_is_one_line_naming_field_and_file(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(content)
    with pytest.raises(UsageError) as exc:
        get_spec(str(f))
    msg = str(exc.value)
    assert needle in msg and str(f) in msg and "\n" not in msg


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\n  peak_flops: [oops\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        get_spec(str(f))
    with pytest.raises(UsageError, match="does not exist"):
        get_spec(str(tmp_path / "missing.yaml"))


def test_peak_for_and_dtypes() -> None:
    h100 = get_spec("h100")
    assert peak_for(h100, "bf16") == peak_for(h100, "bfloat16") == pytest.approx(989.4e12)
    assert normalize_dtype("torch.float16") == "float16"
    with pytest.raises(UsageError) as exc:
        peak_for(get_spec("t4"), "bfloat16")
    assert "lists no bfloat16 peak" in str(exc.value) and "float32, float16, int8" in str(exc.value)
    with pytest.raises(UsageError, match="unknown dtype 'float12'"):
        normalize_dtype("float12")


# ---------------------------------------------------------------------------- the command


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["INFERMETER_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)


def test_cli_lists_table_and_one_entry(tmp_path: Path) -> None:
    p = _cli(["hardware"], tmp_path)
    assert p.returncode == 0, p.stderr
    for name in REQUIRED:
        assert name in p.stdout
    p = _cli(["hardware", "H100", "--json"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert HardwareSpec.model_validate_json(p.stdout).name == "nvidia-h100-sxm"
    p = _cli(["hardware", "--json"], tmp_path)
    assert len(json.loads(p.stdout)) == len(table())
    p = _cli(["hardware", "genoa"], tmp_path)
    assert "96 cores x 2.4 GHz" in p.stdout and "https://" in p.stdout


@pytest.mark.parametrize("arg", ["h10", "bad.json"])
def test_cli_bad_hardware_is_one_line_exit_2(arg: str, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x"}))
    p = _cli(["hardware", arg], tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
