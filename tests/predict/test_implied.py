"""`implied`: figures derived by hand, flags, contradictions, and the command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infermeter.cli.implied import parse_si
from infermeter.errors import UsageError
from infermeter.predict.implied import Claim, Implied, implied

# BERT-base: 110M params; at sequence length 128 about 22.5 GFLOPs per sample
# (85M encoder weights x 2 x 128 tokens, plus attention). H100 SXM, bf16:
# dense peak 989.4 TFLOP/s, HBM 3.35 TB/s.
BERT = dict(params=110e6, dtype="bfloat16", hardware="H100", flops_per_sample=22.5e9)


def _v(r: Implied, name: str) -> float:
    f = r.figure(name)
    assert f is not None, [x.name for x in r.figures]
    return f.value


def test_bert_on_h100_by_hand() -> None:
    r = implied(Claim(throughput_samples_per_s=30_000, batch_size=64, **BERT))
    assert r.hardware == "nvidia-h100-sxm" and r.dtype == "bfloat16"
    assert _v(r, "batch latency") == pytest.approx(64 / 30_000)  # 2.133 ms
    assert _v(r, "time per sample") == pytest.approx(1 / 30_000)
    assert _v(r, "compute lower bound") == pytest.approx(64 * 22.5e9 / 989.4e12)  # 1.455 ms
    assert _v(r, "weight bytes") == pytest.approx(220e6)
    assert _v(r, "memory lower bound") == pytest.approx(220e6 / 3.35e12)  # 65.7 us
    assert _v(r, "roofline lower bound") == pytest.approx(64 * 22.5e9 / 989.4e12)
    assert _v(r, "compute-bound max throughput") == pytest.approx(989.4e12 / 22.5e9)  # 43,973/s
    assert _v(r, "implied FLOP/s") == pytest.approx(6.75e14)
    assert _v(r, "implied compute utilisation") == pytest.approx(6.75e14 / 989.4e12)  # 68.2%
    assert _v(r, "implied weight bandwidth") == pytest.approx(220e6 * 30_000 / 64)
    assert _v(r, "implied bandwidth utilisation") == pytest.approx(220e6 * 30_000 / 64 / 3.35e12)
    assert r.verdict == "plausible"
    assert any("'suspicious' check off" in f.message for f in r.flags)
    assert r.figure("roofline lower bound").formula.startswith("max(compute, memory)")


def test_suspicious_above_best_calibrated_efficiency() -> None:
    r = implied(Claim(throughput_samples_per_s=30_000, batch_size=64, max_efficiency=0.6, **BERT))
    assert r.verdict == "suspicious"
    assert [f.level for f in r.flags if "60%" in f.message] == ["suspicious"]
    assert implied(Claim(throughput_samples_per_s=30_000, batch_size=64, max_efficiency=0.75, **BERT)).verdict == "plausible"


def test_faster_than_the_roofline_is_impossible() -> None:
    r = implied(Claim(throughput_samples_per_s=200_000, batch_size=64, max_efficiency=0.8, **BERT))
    assert r.verdict == "impossible"
    assert _v(r, "implied compute utilisation") == pytest.approx(200_000 * 22.5e9 / 989.4e12)  # 455%
    assert _v(r, "batch latency") < _v(r, "roofline lower bound")
    assert any(f.level == "impossible" and "roofline" in f.message for f in r.flags)


def test_weight_traffic_above_dram_is_impossible_unless_it_fits_in_cache() -> None:
    # 7B params fp16 decoding one token at a time at 1000 tokens/s on A100: 14 TB/s of weights
    r = implied(Claim(throughput_samples_per_s=1000, batch_size=1, params=7e9, dtype="fp16", hardware="a100"))
    assert _v(r, "implied weight bandwidth") == pytest.approx(14e9 * 1000)
    assert r.verdict == "impossible"
    assert any(f.level == "impossible" and "DRAM" in f.message for f in r.flags)
    # 1M int8 weights fit in H100's 50 MiB L2: above-DRAM traffic is not impossible
    r = implied(Claim(throughput_samples_per_s=1e7, batch_size=1, params=1e6, dtype="int8", hardware="h100"))
    assert _v(r, "implied bandwidth utilisation") > 1
    assert r.verdict == "plausible" and any("fit in the caches" in f.message for f in r.flags)


def test_littles_law_with_concurrency() -> None:
    r = implied(Claim(throughput_samples_per_s=3000, batch_size=8, concurrency=4))
    assert _v(r, "request latency") == pytest.approx(4 * 8 / 3000)  # 10.67 ms
    assert "Little" in r.figure("request latency").formula
    # latency and throughput without batch: how many samples were in flight
    r = implied(Claim(throughput_samples_per_s=3000, latency_s=0.01))
    assert _v(r, "samples in flight") == pytest.approx(30)
    # a latency alone, at batch 8: the throughput it implies
    r = implied(Claim(latency_s=0.01, batch_size=8))
    assert _v(r, "implied throughput") == pytest.approx(800)
    # published latency that agrees within 5% is accepted
    implied(Claim(throughput_samples_per_s=3000, batch_size=8, latency_s=0.0027))


def test_macs_become_flops_and_explicit_peaks_override() -> None:
    r = implied(Claim(throughput_samples_per_s=1000, batch_size=8, macs_per_sample=4.35e9, dtype="bf16",
                      hardware="h100", peak_flops=500e12, memory_bandwidth=1e12, params=25e6))
    f = r.figure("FLOPs per sample")
    assert f is not None and f.value == pytest.approx(8.7e9) and "2 x MACs" in f.formula
    assert _v(r, "compute lower bound") == pytest.approx(8 * 8.7e9 / 500e12)
    assert "overrides" in r.figure("compute lower bound").formula
    assert _v(r, "memory lower bound") == pytest.approx(50e6 / 1e12)
    assert "overrides" in r.figure("memory lower bound").formula
    # peaks without any table entry
    r = implied(Claim(flops_per_sample=1e9, peak_flops=1e12, batch_size=4))
    assert _v(r, "compute lower bound") == pytest.approx(4e-3)


def test_every_figure_has_a_formula_and_result_round_trips() -> None:
    claims = [
        Claim(throughput_samples_per_s=30_000, batch_size=64, **BERT),
        Claim(throughput_samples_per_s=3000, batch_size=8, concurrency=4, macs_per_sample=1e9, dtype="int8", hardware="t4", params=5e6),
        Claim(latency_s=0.002, flops_per_sample=1e9, hardware="genoa", dtype="float32"),
        Claim(throughput_samples_per_s=3000, latency_s=0.01, params=1e9, dtype="fp16", memory_bandwidth=1e12),
    ]
    for c in claims:
        r = implied(c)
        assert r.figures
        for f in r.figures:
            assert f.formula.strip() and f.unit, f
        assert Implied.model_validate_json(r.model_dump_json()) == r


@pytest.mark.parametrize(
    "claim,needle",
    [
        (dict(flops_per_sample=8.7e9, macs_per_sample=5e9, throughput_samples_per_s=1), "FLOPs = 2 x MACs"),
        (dict(throughput_samples_per_s=3000, batch_size=8, latency_s=0.02), "imply 60 samples in flight"),
        (dict(throughput_samples_per_s=3000, batch_size=8, concurrency=2, latency_s=0.00267), "Little's law gives"),
        (dict(throughput_samples_per_s=-3), "must be a positive number"),
        (dict(batch_size=0, throughput_samples_per_s=1), "batch size is 0"),
        (dict(flops_per_sample=1e9, hardware="t4", dtype="bfloat16"), "lists no bfloat16 peak"),
        (dict(params=110e6), "nothing to derive"),
        (dict(throughput_samples_per_s=1, max_efficiency=1.5), "above 1"),
        (dict(throughput_samples_per_s=1, dtype="float12"), "unknown dtype"),
    ],
)
def test_contradictions_raise_one_line(claim: dict, needle: str) -> None:
    with pytest.raises(UsageError) as exc:
        implied(Claim(**claim))
    assert re.search(needle, str(exc.value)), str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "text,value",
    [("8.7G", 8.7e9), ("110M", 110e6), ("7B", 7e9), ("30,000", 30000), ("1.5e3", 1500), ("3k", 3000), ("2T", 2e12), ("12", 12)],
)
def test_parse_si(text: str, value: float) -> None:
    assert parse_si(text, "--x") == pytest.approx(value)


@pytest.mark.parametrize("text,needle", [("110m", "milli or mega"), ("abc", "cannot read"), ("3x", "unknown suffix")])
def test_parse_si_errors(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_si(text, "--x")


# ---------------------------------------------------------------------------- the command


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERMETER")}
    env["INFERMETER_STORE"] = str(tmp_path / "store.db")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "infermeter", "implied", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)


BERT_ARGS = ["--flops", "22.5G", "--params", "110M", "--dtype", "bf16", "--hardware", "h100"]


def test_cli_table_and_json(tmp_path: Path) -> None:
    p = _cli(["--throughput", "30k", "--batch", "64", *BERT_ARGS], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "batch latency" in p.stdout and "2.133 ms" in p.stdout and "68.2%" in p.stdout
    assert "64 / 30000" in p.stdout and "verdict: plausible" in p.stdout
    assert not (tmp_path / "store.db").exists()  # a paper check does not create a store
    p = _cli(["--throughput", "30k", "--batch", "64", *BERT_ARGS, "--json"], tmp_path)
    r = Implied.model_validate_json(p.stdout)
    assert r.figure("batch latency").value == pytest.approx(64 / 30_000)


def test_cli_impossible_claim_exits_0_and_says_so(tmp_path: Path) -> None:
    p = _cli(["--throughput", "200k", "--batch", "64", *BERT_ARGS], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "impossible:" in p.stdout and "verdict: impossible" in p.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--flops", "8.7G", "--macs", "5G", "--throughput", "1"],
        ["--throughput", "3000", "--batch", "8", "--latency-ms", "20"],
        ["--throughput", "-3"],
        ["--throughput", "3k", "--hardware", "t4", "--dtype", "bf16", "--flops", "1G"],
        ["--params", "110M"],
        ["--throughput", "3x"],
        ["--throughput", "1", "--hardware", "h10"],
    ],
)
def test_cli_contradictions_are_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    p = _cli(args, tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), p.stderr
    assert p.stdout == ""


def test_cli_uses_stored_calibrated_profile_for_suspicious(tmp_path: Path) -> None:
    from infermeter.predict.profiles import save_profile
    from infermeter.predict.schema import GemmShape, HardwareProfile, RatePoint
    from infermeter.store import Store

    # a T4 whose best fp16 GEMM reached 60 of its 65 TFLOP/s: 92%, above the shipped reference profiles' best
    prof = HardwareProfile(name="lab-t4", kind="gpu", device="cuda", device_name="Tesla T4",
                           gemm=[RatePoint(dtype="float16", gemm=GemmShape(m=4096, n=4096, k=4096), flops_per_s=60e12)])
    with Store(tmp_path / "store.db") as store:
        save_profile(store, prof)
    # 7000 samples/s x 9.2 GFLOPs = 64.4 TFLOP/s = 99% of the T4's fp16 peak
    p = _cli(["--throughput", "7000", "--batch", "8", "--flops", "9.2G", "--dtype", "fp16", "--hardware", "t4"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "verdict: suspicious" in p.stdout
    assert "lab-t4" in p.stdout
