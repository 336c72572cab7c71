"""The roofline predictor against hand-computed times on synthetic machines."""

from __future__ import annotations

import itertools

import pytest

from infermeter.errors import UsageError
from infermeter.predict.machine import machine_for_profile, machine_for_spec
from infermeter.predict.roofline import predict_op, predict_work
from infermeter.predict.schema import (
    BandwidthPoint,
    GemmShape,
    HardwareProfile,
    HardwareSpec,
    OpCount,
    OverheadPoint,
    RatePoint,
    WorkCount,
)

OVERHEAD = 2e-6


def _rate(m: int) -> float:
    # saturating in M, like a real GEMM: 1 GFLOP/s at m=1 up to 100 GFLOP/s
    return 1e11 * m / (m + 99)


def _profile() -> HardwareProfile:
    gemm = [
        RatePoint(gemm=GemmShape(m=m, n=n, k=k), flops_per_s=_rate(m))
        for m, (n, k) in itertools.product([1, 4, 16, 64, 256, 1024], [(256, 256), (1024, 1024)])
    ]
    bw = [BandwidthPoint(kind=kind, bytes=b, bytes_per_s=b / (OVERHEAD + b / 1e10))
          for kind in ("copy", "elementwise") for b in (1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 26)]
    return HardwareProfile(name="synthetic", gemm=gemm, bandwidth=bw, threads=2,
                           overhead=[OverheadPoint(backend="torch", threads=2, seconds=OVERHEAD)])


def _matmul(m: int, n: int = 256, k: int = 256, dtype: str = "float32") -> OpCount:
    return OpCount(name="fc", op="aten.mm", op_class="matmul", dtype=dtype, flops=2.0 * m * n * k,
                   weight_bytes=4 * n * k, read_bytes=4 * m * k, write_bytes=4 * m * n, gemm=GemmShape(m=m, n=n, k=k))


def test_a_calibrated_shape_takes_its_measured_time() -> None:
    machine = machine_for_profile(_profile())
    for m in (1, 64, 1024):
        op = _matmul(m)
        p = predict_op(op, machine)
        assert p.time_s == pytest.approx(op.flops / _rate(m), rel=1e-9)


def test_between_grid_points_the_rate_stays_between_its_neighbours() -> None:
    machine = machine_for_profile(_profile())
    r32, _ = machine.rate("gemm", "float32", GemmShape(m=32, n=256, k=256))
    assert _rate(16) < r32 < _rate(64)
    # beyond the grid: no extrapolation above the best measured rate
    big, _ = machine.rate("gemm", "float32", GemmShape(m=1 << 16, n=256, k=256))
    assert big <= _rate(1024) * (1 + 1e-9)


def test_elementwise_ops_cost_a_dispatch_or_their_bandwidth_time() -> None:
    machine = machine_for_profile(_profile())
    tiny = OpCount(name="a", op="aten.add", op_class="elementwise", flops=10, read_bytes=40, write_bytes=40)
    assert predict_op(tiny, machine).time_s == pytest.approx(OVERHEAD, rel=0.05)
    assert predict_op(tiny, machine).bound == "overhead"
    big = OpCount(name="b", op="aten.add", op_class="elementwise", flops=1 << 22, read_bytes=1 << 25, write_bytes=1 << 24)
    p = predict_op(big, machine)
    want = (3 << 24) / 1e10 + OVERHEAD  # the staircase point's own law
    assert p.time_s == pytest.approx(want, rel=0.1) and p.bound == "memory"
    view = OpCount(name="v", op="aten.view", op_class="data_movement", note="view: no data moved")
    assert predict_op(view, machine).time_s == OVERHEAD


def test_a_model_is_the_sum_of_its_ops_and_throughput_follows() -> None:
    machine = machine_for_profile(_profile())
    ops = [_matmul(8), OpCount(name="r", op="aten.relu", op_class="elementwise", flops=8 * 256,
                               read_bytes=8 * 256 * 4, write_bytes=8 * 256 * 4), _matmul(8)]
    work = WorkCount(spec="t", backend="torch", batch_size=8, ops=ops)
    pred = predict_work(work, machine)
    parts = [predict_op(o, machine).time_s for o in ops]
    assert pred.latency_s == pytest.approx(sum(parts))
    assert pred.throughput_samples_per_s == pytest.approx(8 / sum(parts))
    assert sum(o.share for o in pred.ops) == pytest.approx(1.0)
    assert set(pred.by_class) == {"matmul", "elementwise"}


def test_recurrent_steps_run_one_after_another() -> None:
    machine = machine_for_profile(_profile())
    one = _matmul(4, 1024, 1024)
    rec = one.model_copy(update={"op_class": "recurrent", "flops": one.flops * 10,
                                 "gemm": GemmShape(m=4, n=1024, k=1024, batch=10)})
    assert predict_op(rec, machine).time_s == pytest.approx(10 * predict_op(one, machine).time_s, rel=0.01)


def test_spec_target_scales_by_peak_ratio() -> None:
    ref = _profile()
    ref_spec = HardwareSpec(name="ref", kind="cpu", peak_flops={"float32": 2e11}, memory_bandwidth=1e10, source="test")
    target = HardwareSpec(name="twice", kind="cpu", peak_flops={"float32": 4e11}, memory_bandwidth=2e10, source="test")
    m_ref = machine_for_profile(ref)
    m_t = machine_for_spec(target, ref, ref_spec)
    op = _matmul(1024, 1024, 1024)
    assert predict_op(op, m_t).compute_s == pytest.approx(predict_op(op, m_ref).compute_s / 2, rel=0.01)
    # DRAM-sized working sets get the target's spec-sheet bandwidth; smaller ones the same staircase shape
    assert m_t.bandwidth("copy", 1 << 26) == pytest.approx(2e10)
    ratio = m_t.bandwidth("copy", 1 << 14) / m_ref.bandwidth("copy", 1 << 14)
    assert ratio == pytest.approx(2e10 / m_ref.bandwidth("copy", 1 << 26))
    assert not m_t.calibrated and "spec sheet" in m_t.source and m_t.notes


def test_empty_work_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="nothing to predict"):
        predict_work(WorkCount(spec="x", backend="torch", batch_size=1), machine_for_profile(_profile()))


def test_in_sequence_factor_scales_ops_by_their_length_within_the_measured_range() -> None:
    from infermeter.predict.schema import SequencePoint

    prof = _profile()
    prof.sequence = [
        SequencePoint(label="short", ops=10, predicted_s=1e-4, measured_s=2e-4, mean_op_s=1e-5),  # ratio 2
        SequencePoint(label="long", ops=10, predicted_s=1e-1, measured_s=1.1e-1, mean_op_s=1e-2),  # ratio 1.1
    ]
    with_chains = machine_for_profile(prof)
    without = machine_for_profile(_profile())
    assert with_chains.in_sequence("float32", 1e-6) == pytest.approx(2.0)  # clamped below the shortest chain
    assert with_chains.in_sequence("float32", 1.0) == pytest.approx(1.1)  # and above the longest
    mid = with_chains.in_sequence("float32", 3.16e-4)
    assert 1.1 < mid < 2.0
    assert with_chains.in_sequence("bfloat16", 1e-5) == pytest.approx(2.0)  # no bf16 chains: float32's
    op = _matmul(64)
    base = predict_op(op, without).time_s
    assert predict_op(op, with_chains).time_s == pytest.approx(base * with_chains.in_sequence("float32", base))
    assert without.in_sequence("float32", 1e-5) == 1.0


def test_points_at_one_shape_are_averaged() -> None:
    prof = _profile()
    g = GemmShape(m=3, n=77, k=77)
    prof.gemm += [RatePoint(gemm=g, flops_per_s=1e9), RatePoint(gemm=g, flops_per_s=4e9)]
    r, _ = machine_for_profile(prof).rate("gemm", "float32", g)
    assert r == pytest.approx(2e9)  # geometric mean of the two
