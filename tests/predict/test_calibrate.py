"""calibrate: quick mode gives sane, consistent numbers within its budget; profiles
round-trip through YAML, files and the store; malformed ones say which field; the CLI works."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.errors import BackendUnavailable, OutputError, UsageError
from infermeter.predict.calibrate import calibrate, native_dtypes, read_cpu_caches
from infermeter.predict.grid import grid_outliers
from infermeter.predict.kernels import Timer
from infermeter.predict.profiles import (
    load_profile,
    profile_from_yaml,
    profile_summary,
    profile_to_yaml,
    read_profile_file,
    reference_profiles,
    save_profile,
    write_profile_file,
)
from infermeter.predict.schema import BandwidthPoint, GemmShape, HardwareProfile, OverheadPoint, RatePoint
from infermeter.store import Store
from infermeter.timing.clocks import HostClock

TESTS = Path(__file__).resolve().parents[1]


def _has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(not _has_torch(), reason="torch is not installed")


@pytest.fixture(scope="module")
def quick() -> tuple[HardwareProfile, list[tuple[str, float]]]:
    if not _has_torch():
        pytest.skip("torch is not installed")
    stages: list[tuple[str, float]] = []
    profile = calibrate(quick=True, progress=lambda s, f: stages.append((s, f)))
    return profile, stages


def _tiny_profile() -> HardwareProfile:
    """A hand-made profile: YAML and summary tests need no torch and no timing."""
    return HardwareProfile(
        name="box-cpu",
        threads=4,
        dtypes=["float32"],
        caches={"L1d": 32768, "L2": 1 << 20, "L3": 32 << 20},
        gemm=[
            RatePoint(dtype="float32", gemm=GemmShape(m=m, n=1024, k=1024), flops_per_s=r, spread=0.02, repeats=7, label=f"linear {m}")
            for m, r in ((1, 2.5e10), (64, 3e11), (4096, 4e11))
        ],
        conv=[RatePoint(kind="conv", gemm=GemmShape(m=3136, n=64, k=576), flops_per_s=3.5e11, repeats=7, label="conv 64->64 3x3 @56 b1")],
        bandwidth=[BandwidthPoint(kind=k, bytes=b, bytes_per_s=r, repeats=7) for k in ("copy", "elementwise") for b, r in ((8192, 1e11), (1 << 19, 8e10), (8 << 20, 5e10), (256 << 20, 2e10))],
        overhead=[OverheadPoint(backend="torch", threads=t, seconds=8e-7, spread=0.01, repeats=7) for t in (1, 4)],
        duration_s=42.0,
        env={"skipped_dtypes": {"bfloat16": "no native bfloat16"}, "notes": []},
    )


# ---------------------------------------------------------------------------- the timing loop, on a fake clock


def test_timer_median_and_spread_are_exact_on_a_fake_clock() -> None:
    now = [0]
    durations = iter([1000, 1000, 1000, 2000, 3000, 4000, 5000])  # two warm-up calls, then five repeats

    def fn() -> None:
        now[0] += next(durations)

    timer = Timer(HostClock(now_ns=lambda: now[0]), repeats=5, min_repeat_s=1e-9, warmup_s=1e-6, retry_spread=1.0)
    assert timer.overhead_s == 0.0  # the no-op does not advance the fake clock
    t = timer.time(fn)
    # nearest rank of [1, 2, 3, 4, 5] µs: p50 = 3, p25 = 2, p75 = 4
    assert (t.seconds, t.spread, t.repeats, t.calls) == (3e-6, pytest.approx(2 / 3), 5, 1)


def test_timer_takes_noisy_repeats_again_and_keeps_the_steadier() -> None:
    now = [0]
    durations = iter([1000, 1000, 1000, 2000, 3000, 4000, 5000, 2000, 2000, 2000, 2000, 2100])

    def fn() -> None:
        now[0] += next(durations)

    t = Timer(HostClock(now_ns=lambda: now[0]), repeats=5, min_repeat_s=1e-9, warmup_s=1e-6).time(fn)
    assert t.seconds == pytest.approx(2e-6) and t.spread == 0.0


def test_timer_groups_short_calls_into_repeats_of_min_repeat_s() -> None:
    now = [0]

    def fn() -> None:
        now[0] += 100

    t = Timer(HostClock(now_ns=lambda: now[0]), repeats=5, min_repeat_s=1e-5, warmup_s=0.0).time(fn)
    assert t.calls == 100 and t.seconds == pytest.approx(1e-7) and t.spread == 0.0


# ---------------------------------------------------------------------------- machine facts


def test_read_cpu_caches_from_a_sysfs_tree(tmp_path: Path) -> None:
    for i, (level, kind, size, cpus) in enumerate([(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"), (2, "Unified", "2048K", "0"), (3, "Unified", "32M", "0-7,16-23")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", cpus)):
            (d / name).write_text(f"{value}\n")
    sizes, shared = read_cpu_caches(tmp_path)
    assert sizes == {"L1d": 48 << 10, "L2": 2 << 20, "L3": 32 << 20}
    assert shared == {"L1d": 1, "L2": 1, "L3": 16}
    assert read_cpu_caches(tmp_path / "absent") == ({}, {})


def test_native_dtypes_say_why_one_is_skipped() -> None:
    plain = native_dtypes("cpu", {"avx2": True})
    assert plain["float32"] is None and "avx512_bf16" in str(plain["bfloat16"]) and plain["float16"]
    assert native_dtypes("cpu", {"amx_bf16": True})["bfloat16"] is None
    turing = native_dtypes("cuda", {}, (7, 5))
    assert "7.5" in str(turing["bfloat16"]) and turing["float16"] is None
    assert native_dtypes("cuda", {}, (9, 0)) == {"float32": None, "bfloat16": None, "float16": None}


# ---------------------------------------------------------------------------- a quick calibration, for real


def test_quick_calibration_is_sane(quick: tuple[HardwareProfile, list[tuple[str, float]]]) -> None:
    p, _ = quick
    assert p.duration_s < 30 and p.kind == "cpu" and p.threads and p.threads >= 1
    assert "float32" in p.dtypes and p.name.endswith("-cpu")
    points = [*p.gemm, *p.conv]
    assert all(math.isfinite(r.flops_per_s) and r.flops_per_s > 0 and r.repeats >= 5 and r.spread >= 0 for r in points)
    assert all(r.dtype in p.dtypes for r in points)
    assert {r.kind for r in p.conv} == {"conv", "depthwise_conv", "attention", "recurrent"}
    assert any(r.gemm.batch > 1 for r in p.gemm) and all(r.label for r in points)
    assert {b.kind for b in p.bandwidth} == {"copy", "elementwise", "reduction", "normalization", "transpose",
                                             "activation", "pooling"}
    # chains of different ops, measured whole against their prediction from the isolated points
    assert p.sequence and all(s.ops > 1 and s.measured_s > 0 and s.predicted_s > 0 for s in p.sequence)
    assert all(b.bytes_per_s > 0 and b.repeats >= 5 for b in p.bandwidth)
    torch_threads = {o.threads for o in p.overhead if o.backend == "torch"}
    assert torch_threads == {1, p.threads}
    assert all(1e-8 < o.seconds < 1e-3 for o in p.overhead if o.backend == "torch")
    assert "gemm_grid" in p.env and set(p.env["skipped_dtypes"]) | set(p.dtypes) == {"float32", "bfloat16", "float16"}


def test_larger_m_is_not_slower_per_flop(quick: tuple[HardwareProfile, list[tuple[str, float]]]) -> None:
    p, _ = quick
    for dt in p.dtypes:
        grid = [r for r in p.gemm if r.dtype == dt and r.gemm.batch == 1]
        top = max(r.gemm.m for r in grid)

        def best(m: int) -> float:  # the best of a column: one busy moment on a shared machine does not flip it
            return max(r.flops_per_s for r in grid if r.gemm.m == m)

        assert best(top) > best(1), dt


def test_bandwidth_staircase_spans_the_caches(quick: tuple[HardwareProfile, list[tuple[str, float]]]) -> None:
    p, _ = quick
    caches, _ = read_cpu_caches()
    if not caches:
        pytest.skip("the OS does not report caches here")
    assert p.caches == caches
    sizes = sorted(b.bytes for b in p.bandwidth if b.kind == "copy")
    assert sizes[0] <= min(caches.values()) and sizes[-1] > max(caches.values())


def test_progress_goes_forward_to_done(quick: tuple[HardwareProfile, list[tuple[str, float]]]) -> None:
    _, stages = quick
    fractions = [f for _, f in stages]
    assert stages[0][0] == "probe" and stages[-1] == ("done", 1.0)
    assert fractions == sorted(fractions) and {"gemm", "bandwidth", "overhead"} <= {s for s, _ in stages}


@needs_torch
def test_a_short_budget_is_respected_and_says_what_it_left_out() -> None:
    p = calibrate(quick=True, budget_s=0.4)
    assert p.duration_s < 0.4 + 1.0  # the last point may overrun, well under a second
    assert p.env["skipped_count"] > 0 and all(":" in s for s in p.env["skipped"])


@needs_torch
@pytest.mark.parametrize(
    "kwargs, words",
    [({"device": "tpu"}, "cpu, cuda or cuda:N"), ({"dtypes": "float8"}, "float8"), ({"budget_s": 0}, "positive"), ({"threads": 0}, "at least 1")],
)
def test_bad_arguments_are_usage_errors(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        calibrate(quick=True, **kwargs)  # type: ignore[arg-type]


@needs_torch
def test_cuda_without_cuda_is_backend_unavailable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(BackendUnavailable, match="--device cpu"):
        calibrate(device="cuda", quick=True)


@pytest.mark.cuda
@needs_torch
def test_cuda_quick_calibration() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    p = calibrate(device="cuda", quick=True)
    assert p.kind == "gpu" and "float16" in p.dtypes and p.device.startswith("cuda")
    assert all(r.flops_per_s > 0 for r in p.gemm) and p.bandwidth and p.caches.get("L2", 0) > 0


# ---------------------------------------------------------------------------- YAML, files, store


def test_yaml_round_trips_exactly(quick: tuple[HardwareProfile, list[tuple[str, float]]]) -> None:
    p, _ = quick
    text = profile_to_yaml(p)
    assert text.startswith("# infermeter hardware profile")
    back = profile_from_yaml(text)
    assert back == p and profile_to_yaml(back) == text
    tiny = _tiny_profile()
    assert profile_from_yaml(profile_to_yaml(tiny)) == tiny


def test_store_and_file_round_trip(tmp_path: Path) -> None:
    p = _tiny_profile()
    with Store(tmp_path / "store.db") as st:
        assert load_profile(st) is None
        save_profile(st, p)
        assert load_profile(st, "box-cpu") == p and load_profile(st) == p
        assert load_profile(st, "other") is None
    path = write_profile_file(tmp_path / "box.yaml", p)
    assert read_profile_file(path) == p
    with pytest.raises(UsageError, match="cannot read hardware profile"):
        read_profile_file(tmp_path / "missing.yaml")
    with pytest.raises(OutputError, match="--out"):
        write_profile_file(tmp_path / "no" / "such" / "dir.yaml", p)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda t: t.replace("flops_per_s: 25000000000.0", "flops_per_s: fast", 1), "field gemm[0].flops_per_s"),
        (lambda t: t.replace("name: box-cpu\n", "", 1), "field name: field required"),
        (lambda t: t.replace("threads: 4", "threads: [4", 1), "not valid YAML at line"),
        (lambda t: t.replace("schema: infermeter.hardware/1", "schema: infermeter.hardware/9", 1), "schema 'infermeter.hardware/9'"),
        (lambda t: "- just\n- a list\n", "not a hardware profile"),
        (lambda t: t.replace("threads: 4", "threads: 4\nspeed: 11", 1), "field speed: extra inputs"),
    ],
)
def test_malformed_yaml_names_the_field(edit: object, words: str) -> None:
    text = edit(profile_to_yaml(_tiny_profile()))  # type: ignore[operator]
    with pytest.raises(UsageError, match=words.replace("[", r"\[").replace("]", r"\]")) as info:
        profile_from_yaml(text, source="box.yaml")
    assert str(info.value).startswith("box.yaml") and "\n" not in str(info.value)


def test_reference_profiles_are_valid() -> None:
    assert all(isinstance(p, HardwareProfile) for p in reference_profiles())
    readme = Path(__file__).resolve().parents[2] / "src" / "infermeter" / "predict" / "profiles" / "README.md"
    assert readme.is_file()


def test_summary_and_rendering() -> None:
    from rich.console import Console

    from infermeter.report.calibrate_table import render_profile

    s = profile_summary(_tiny_profile())
    assert s["gemm"]["float32"]["best"] == 4e11 and s["gemm"]["float32"]["m1_best"] == 2.5e10
    assert [r["level"] for r in s["bandwidth"]] == ["L1d", "L2", "L3", "DRAM"]
    assert s["bandwidth"][-1]["working_set"] == 256 << 20 and s["bandwidth"][2]["copy"] == 5e10
    console = Console(record=True, width=200)
    render_profile(_tiny_profile(), console)
    out = console.export_text()
    for text in ("box-cpu", "400.0 GFLOP/s", "25.0 GFLOP/s", "DRAM", "20.0 GB/s", "0.8 µs", "skipped bfloat16"):
        assert text in out, text


# ---------------------------------------------------------------------------- the command


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["INFERMETER_STORE"] = str(tmp_path / "default.db")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


@needs_torch
def test_cli_calibrate_quick_saves_shows_and_writes(tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    p = _cli(["calibrate", "--quick", "--store", store, "--out", "prof.yaml", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    for text in ("GEMM", "GFLOP/s", "bandwidth", "dispatch overhead", "saved as", "wrote"):
        assert text in p.stdout, text
    profile = read_profile_file(tmp_path / "prof.yaml")
    shown = _cli(["calibrate", "--show", "--store", store], tmp_path)
    assert shown.returncode == 0 and profile.name in shown.stdout, shown.stderr
    assert _cli(["calibrate", "--show", "prof.yaml"], tmp_path).returncode == 0
    missing = _cli(["calibrate", "--show", "nope", "--store", store], tmp_path)
    lines = [ln for ln in missing.stderr.splitlines() if ln.strip()]
    assert missing.returncode == 2 and len(lines) == 1 and f"stored: {profile.name}" in lines[0]
    empty = _cli(["calibrate", "--show", "--store", str(tmp_path / "empty.db")], tmp_path)
    assert empty.returncode == 2 and "run `infermeter calibrate` first" in empty.stderr


def test_grid_outliers_are_points_far_below_a_smaller_m() -> None:
    def pt(m: int, rate: float, n: int = 64, batch: int = 1) -> RatePoint:
        return RatePoint(gemm=GemmShape(m=m, n=n, k=64, batch=batch), flops_per_s=rate)

    points = [pt(1, 10), pt(2, 20), pt(4, 9), pt(8, 30), pt(16, 16), pt(1, 5, n=128), pt(2, 4, n=128), pt(4, 1, batch=8)]
    points += [pt(1, 0.1, n=256), pt(2, 20, n=256)]  # M=1 took 50x longer than M=2
    assert grid_outliers(points) == [("float32", 4, 64, 64), ("float32", 1, 256, 64)]


@needs_torch
def test_bandwidth_buffers_move_what_they_say_up_to_the_largest_working_set() -> None:
    import torch

    from infermeter.predict.kernels import BW_KINDS, BandwidthBuffers

    top = 1 << 20
    bufs = BandwidthBuffers(torch, top, torch.float32, "cpu")
    for kind in BW_KINDS:
        for ws in (8192, top):
            fn, moved = bufs.kernel(kind, ws)
            fn()
            # pooling's input is a square image: its side rounds the size (reported exactly)
            assert abs(moved - ws) <= (0.1 if kind == "pooling" else 0.01) * ws, (kind, ws, moved)
        with pytest.raises(ValueError, match="buffers hold"):
            bufs.kernel(kind, 4 * top)
