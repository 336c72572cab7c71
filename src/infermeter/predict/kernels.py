"""What ``calibrate`` times: the timing loop and one kernel per op kind (the
grids of shapes they are measured at live in ``grid``).

Why a kernel is called the way it is here: the profile must predict what an
eager model pays, so each kernel is the call a model makes (``F.linear`` as
``nn.Linear`` does, ``q @ k.transpose(-2, -1)`` as attention code does, NCHW
``F.conv2d``), on inputs allocated once and reused across the repeats. The
bandwidth kernels write into preallocated outputs (``out=``) where torch has
one (layer_norm has none): a fresh output above glibc's mmap threshold (32 MiB
at most) is page-faulted on every call, which measures the kernel's page-fault
path rather than the memory; that cost is measured once on its own
(:func:`first_touch_rate`) and kept in the profile's ``env``.

Nothing here imports torch or onnxruntime at import time: the callers hand the
``torch`` module in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ..timing.clocks import Clock, HostClock, measure_timer_overhead

__all__ = [
    "Timing", "Timer", "BW_KINDS", "BandwidthBuffers", "linear_kernel", "bmm_kernel", "sdpa_kernel",
    "conv_kernel", "tiny_op_kernel", "ort_chain_session", "first_touch_rate",
]

Kernel = Callable[[], object]
Sync = Callable[[], None]


@dataclass(frozen=True)
class Timing:
    """One kernel's time: median seconds per call over ``repeats`` repeats of
    ``calls`` calls each, and the spread of those repeats, (p75 - p25) / median."""

    seconds: float
    spread: float
    repeats: int
    calls: int


class Timer:
    """Warm up, size the repeats, time them: the one timing loop of calibration.

    A repeat is ``calls`` back-to-back calls sized to last ``min_repeat_s``, so
    microsecond kernels are not lost in the timer's own cost (which is measured
    on the same clock and subtracted). On CUDA the clock is the event clock and
    ``sync`` the device sync: a repeat is one event interval around ``calls``
    launches, i.e. device time with launches pipelined as in a model. Repeats
    whose spread exceeds ``retry_spread`` are taken once more and the steadier
    set is kept: one burst of another process should not make a point.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        sync: Sync | None = None,
        *,
        repeats: int = 5,
        min_repeat_s: float = 0.002,
        warmup_s: float = 0.005,
        retry_spread: float = 0.25,
    ) -> None:
        if repeats < 5:
            raise ValueError("the profile promises medians of at least 5 repeats")
        self.clock: Clock = clock if clock is not None else HostClock()
        self.sync = sync
        self.repeats = repeats
        self.min_repeat_s = min_repeat_s
        self.warmup_s = warmup_s
        self.retry_spread = retry_spread
        self.overhead_s = measure_timer_overhead(self.clock, sync, samples=200, warmup=20, max_s=0.02)

    def once(self, fn: Kernel) -> float:
        """Seconds of one call of ``fn`` (timer cost subtracted)."""
        out: list[Any] = []
        self.clock.measure(lambda i: fn(), self.sync, 0, 1, 1, out)
        return max(self.clock.to_seconds(float(out[0])) - self.overhead_s, 0.0)

    def time(self, fn: Kernel, *, repeats: int | None = None) -> Timing:
        """Median seconds per call of ``fn``.

        Warm-up: the first call (one-time costs: JIT, first touch, thread-pool
        start) and more calls until ``warmup_s`` has passed; a first call longer
        than ``10 * warmup_s`` is warm-up enough, so second-long kernels do not
        pay three calls of it.
        Raises :class:`~infermeter.timing.clocks.CallFailed` if ``fn`` raises.
        """
        reps = max(5, repeats or self.repeats)
        spent = first = self.once(fn)
        est = first
        if first < 10 * self.warmup_s:
            est = self.once(fn)
            spent += est
            while spent < self.warmup_s:
                est = self.once(fn)
                spent += est
        calls = max(1, math.ceil(self.min_repeat_s / max(est, 1e-9)))
        rng = range(calls)

        def block(i: int) -> None:
            for _ in rng:
                fn()

        def repeats_once() -> Timing:
            raw: list[Any] = []
            self.clock.measure(block, self.sync, 0, reps, 1, raw)
            per_call = sorted(max(self.clock.to_seconds(float(s)) - self.overhead_s, 0.0) / calls for s in raw)
            t = summarize(per_call, calls)
            if t.seconds <= 0:
                raise RuntimeError("the kernel is too fast for this clock to time")
            return t

        t = repeats_once()
        if t.spread > self.retry_spread:  # noisy (another process, a frequency step): once more, keep the steadier
            again = repeats_once()
            t = again if again.spread < t.spread else t
        return t


def summarize(per_call_s: list[float], calls: int) -> Timing:
    """Median and (p75 - p25) / median, nearest rank, as stats.py defines them."""
    from ..stats import percentile

    med = percentile(per_call_s, 50)
    iqr = percentile(per_call_s, 75) - percentile(per_call_s, 25)
    return Timing(seconds=med, spread=iqr / med if med > 0 else 0.0, repeats=len(per_call_s), calls=calls)


# ---------------------------------------------------------------------------- compute kernels


def _randn(torch: Any, shape: tuple[int, ...], dtype: Any, device: Any, gen: Any) -> Any:
    return torch.randn(shape, generator=gen, device="cpu").to(device=device, dtype=dtype)


def linear_kernel(torch: Any, x: Any, w: Any) -> Kernel:
    """``F.linear(x, w)``: what ``nn.Linear`` (and an LSTM's gate GEMM) calls."""
    linear = torch.nn.functional.linear
    return lambda: linear(x, w)


def bmm_kernel(torch: Any, batch: int, m: int, n: int, k: int, *, which: str, dtype: Any, device: Any, gen: Any) -> Kernel:
    """Attention's batched products as attention code writes them.

    ``which="qk"``: ``q @ k.transpose(-2, -1)`` (m=Lq, n=Lk, k=D);
    ``which="pv"``: ``p @ v`` (m=Lq, n=D, k=Lk).
    """
    a = _randn(torch, (batch, m, k), dtype, device, gen)
    if which == "qk":
        b = _randn(torch, (batch, n, k), dtype, device, gen)
        return lambda: a @ b.transpose(-2, -1)
    b = _randn(torch, (batch, k, n), dtype, device, gen)
    return lambda: a @ b


def sdpa_kernel(torch: Any, b: int, h: int, lq: int, lk: int, d: int, *, dtype: Any, device: Any, gen: Any) -> Kernel:
    """``F.scaled_dot_product_attention`` on (B, H, L, D) tensors, no mask."""
    q = _randn(torch, (b, h, lq, d), dtype, device, gen)
    k = _randn(torch, (b, h, lk, d), dtype, device, gen)
    v = _randn(torch, (b, h, lk, d), dtype, device, gen)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    return lambda: sdpa(q, k, v)


def conv_kernel(
    torch: Any, n: int, cin: int, cout: int, hw: int, ksize: int, stride: int, groups: int, *, dtype: Any, device: Any, gen: Any
) -> tuple[Kernel, int]:
    """NCHW ``F.conv2d`` with "same" padding; returns the kernel and the output side."""
    x = _randn(torch, (n, cin, hw, hw), dtype, device, gen)
    w = _randn(torch, (cout, cin // groups, ksize, ksize), dtype, device, gen)
    pad = ksize // 2
    conv = torch.nn.functional.conv2d
    out_hw = (hw + 2 * pad - ksize) // stride + 1
    return (lambda: conv(x, w, None, stride, pad, 1, groups)), out_hw


# ---------------------------------------------------------------------------- bandwidth kernels

BW_KINDS: tuple[str, ...] = ("copy", "elementwise", "reduction", "normalization", "transpose", "activation", "pooling")
# Bytes moved per element of the op's input: read + written (what BandwidthPoint.bytes counts).
# activation: GELU (erf), whose math, not memory, bounds it on CPUs; pooling: 3x3 stride-2
# max pooling as a CNN stem runs it (reads 1, writes 1/4 per input element).
_TRAFFIC = {"copy": 2, "elementwise": 3, "reduction": 1, "normalization": 2, "transpose": 2, "activation": 2, "pooling": 1.25}
_POOL_CHANNELS = 64
_LN_WIDTH = 1024  # layer_norm rows of a transformer's hidden size


class BandwidthBuffers:
    """Three flat buffers allocated once, sliced per working-set size
    (11/6 of the largest working set in all).

    Allocating per size would put page faults into small sizes' timings and
    cost seconds at the DRAM end; one set of buffers sized for the largest
    working set serves every size and kind.
    """

    def __init__(self, torch: Any, max_bytes: int, dtype: Any, device: Any) -> None:
        self.torch = torch
        self.dtype = dtype
        self.es = torch.empty((), dtype=dtype).element_size()
        # Random data on GPUs: their memory may compress uniform data and read it
        # faster than HBM can (a constant buffer once gave 5 TB/s on a 3.35 TB/s H100).
        # On CPUs a constant fill is as good and a few seconds faster at 2 GiB.
        # a: what a reduction reads at the largest working set; b: add's second input; c: outputs
        sizes = (max_bytes // self.es, max_bytes // (3 * self.es), max_bytes // (2 * self.es))
        bufs = [torch.empty(n, dtype=dtype, device=device) for n in sizes]
        for i, buf in enumerate(bufs):
            buf.uniform_(-1.0, 1.0) if torch.device(device).type != "cpu" else buf.fill_(0.5 * i + 0.25)
        self.a, self.b, self.c = bufs

    def elements(self, kind: str, working_set: int) -> int:
        n = int(working_set // (_TRAFFIC[kind] * self.es))
        if kind == "normalization":
            n = (n // _LN_WIDTH) * _LN_WIDTH if n >= _LN_WIDTH else n
        return max(n, 1)

    def kernel(self, kind: str, working_set: int) -> tuple[Kernel, int]:
        """The kernel moving about ``working_set`` bytes, and the bytes it really moves."""
        torch = self.torch
        n = self.elements(kind, working_set)
        room = {"reduction": self.a.numel(), "normalization": self.a.numel(), "activation": self.a.numel(),
                "pooling": self.a.numel(), "elementwise": self.b.numel()}.get(kind, self.c.numel())
        if n > room:  # a slice past the end would silently be shorter, and the rate too high
            raise ValueError(f"{kind} at {working_set} B needs {n} elements; the buffers hold {room}")
        a, c = self.a[:n], self.c[: min(n, self.c.numel())]
        if kind == "copy":
            fn: Kernel = lambda: c.copy_(a)  # noqa: E731
        elif kind == "elementwise":
            b = self.b[:n]
            fn = lambda: torch.add(a, b, out=c)  # noqa: E731
        elif kind == "reduction":
            fn = lambda: a.sum()  # noqa: E731
        elif kind == "normalization":
            # No true out= variant exists (native_layer_norm.out allocates and copies), so
            # this kind allocates its output as models do: above glibc's mmap threshold
            # (32 MiB) that output is page-faulted on every call, and the rate shows it.
            width = min(n, _LN_WIDTH)
            x, shape = a[: (n // width) * width].view(-1, width), [width]
            ln = torch.nn.functional.layer_norm
            fn = lambda: ln(x, shape)  # noqa: E731
        elif kind == "activation":
            gelu = torch.nn.functional.gelu  # allocates its output, as models call it
            fn = lambda: gelu(a)  # noqa: E731
        elif kind == "pooling":
            side = max(2, int(math.isqrt(max(1, n // _POOL_CHANNELS))))
            n = _POOL_CHANNELS * side * side
            x = a[:n].view(1, _POOL_CHANNELS, side, side)
            pool = torch.nn.functional.max_pool2d
            fn = lambda: pool(x, 3, 2, 1)  # noqa: E731
            return fn, int(n * self.es + _POOL_CHANNELS * ((side + 1) // 2) ** 2 * self.es)
        elif kind == "transpose":
            rows = 2 ** (max(n, 1).bit_length() // 2)  # a power of two near sqrt(n): sizes stay exact
            cols = max(1, n // rows)
            n = rows * cols
            src, dst = a[:n].view(rows, cols), c[:n].view(cols, rows)
            fn = lambda: dst.copy_(src.t())  # noqa: E731
        else:
            raise ValueError(f"unknown bandwidth kind {kind!r}")
        return fn, int(n * _TRAFFIC[kind] * self.es)


def first_touch_rate(torch: Any, nbytes: int, timer: Timer) -> float:
    """Bytes/s of writing a freshly allocated buffer (page faults + zeroing + write).

    Eager ops with outputs above the allocator's reuse threshold pay this on
    every call; the staircase (preallocated outputs) does not include it.
    """
    n = max(1, nbytes // 4)
    t = timer.once(lambda: torch.empty(n, dtype=torch.float32).fill_(1.0))
    return nbytes / t if t > 0 else 0.0


# ---------------------------------------------------------------------------- dispatch overhead


def tiny_op_kernel(torch: Any, device: Any) -> Kernel:
    """``add`` of two one-element tensors: all dispatch, no work."""
    x = torch.ones(1, device=device)
    add = torch.add
    return lambda: add(x, x)


def ort_chain_session(nodes: int, threads: int) -> Kernel:
    """An ONNX Runtime session of ``nodes`` chained one-element Adds, built in memory.

    Graph optimisations are off so the node count stays what it says; the
    difference between a long and a one-node chain is ORT's cost per node.
    """
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    names = ["x"] + [f"t{i}" for i in range(nodes - 1)] + ["y"]
    graph = helper.make_graph(
        [helper.make_node("Add", [names[i], "one"], [names[i + 1]]) for i in range(nodes)],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {"x": np.ones(1, dtype=np.float32)}
    run = sess.run
    return lambda: run(None, feed)
