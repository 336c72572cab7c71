"""What ``calibrate`` times: the timing loop, one kernel per op kind, and the
grids of shapes the compute kernels are measured at (as :class:`Task` lists
that ``calibrate`` fits into its budget).

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
from .schema import GemmShape, RatePoint

__all__ = [
    "Timing", "Timer", "BW_KINDS", "BandwidthBuffers", "linear_kernel", "bmm_kernel", "sdpa_kernel",
    "conv_kernel", "tiny_op_kernel", "ort_chain_session", "first_touch_rate", "GEMM_M", "GEMM_NK", "CONVS",
    "DEPTHWISE", "ATTN_L", "Task", "probe_rates", "gemm_tasks", "grid_outliers", "attention_tasks",
    "conv_tasks",
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


# ---------------------------------------------------------------------------- the points: grids of shapes

GEMM_M = tuple(2**i for i in range(13))  # 1 … 4096
# (N, K): transformer projections and MLPs (768/3072, 1024/4096), square steps,
# an LSTM step's gates (4H=2048 × H=512), classifier heads (1000×2048, 10×1024).
GEMM_NK = (
    (64, 64), (256, 256), (512, 512), (1024, 1024), (4096, 4096),
    (768, 256), (256, 768), (768, 768), (2304, 768), (3072, 768), (768, 3072),
    (2048, 512), (4096, 1024), (1024, 4096), (1000, 2048), (10, 1024),
)  # fmt: skip
# (Cin, Cout, input side, kernel, stride): ResNet-18/50 stages and the 7×7 stem.
CONVS = (
    (3, 64, 224, 7, 2), (64, 64, 56, 3, 1), (128, 128, 28, 3, 1), (256, 256, 14, 3, 1), (512, 512, 7, 3, 1),
    (64, 128, 56, 3, 2), (64, 256, 56, 1, 1), (256, 64, 56, 1, 1), (128, 512, 28, 1, 1), (512, 128, 28, 1, 1),
    (256, 1024, 14, 1, 1), (512, 512, 14, 3, 2),
)  # fmt: skip
DEPTHWISE = ((32, 112), (144, 56), (192, 28), (384, 14), (960, 7))  # (channels, side), 3×3 (MobileNetV2)
ATTN_L = (64, 128, 256, 512, 1024)
ATTN_HEADS, ATTN_D = 12, 64


@dataclass
class Task:
    """One point to measure: ``measure`` appends its result to the run; ``est_s``
    is what it should cost, ``priority`` how readily it is dropped (0 last)."""

    label: str
    est_s: float
    priority: int
    measure: Callable[[], None]


def dtype_of(torch: Any, name: str) -> Any:
    return getattr(torch, name)


def probe_rates(run: Any, dtypes: list[str]) -> dict[str, float]:
    """FLOP/s of a mid-size GEMM per dtype: the rates the sections plan with."""
    torch = run.torch
    gen = torch.Generator().manual_seed(0)
    rates: dict[str, float] = {}
    for name in dtypes:
        dt = dtype_of(torch, name)
        x = torch.randn(256, 1024, generator=gen).to(run.device, dt)
        w = torch.randn(1024, 1024, generator=gen).to(run.device, dt)
        f = torch.nn.functional.linear
        t = run.timer.time(lambda: f(x, w))
        rates[name] = 2 * 256 * 1024 * 1024 / t.seconds
    return rates


def rate_point(run: Any, out: list[RatePoint], kind: str, dtype: str, g: GemmShape, flops: float, fn: Any, label: str) -> None:
    """Time ``fn`` and keep its rate: FLOPs over the median time of the whole
    framework call, dispatch included (the predictor treats the rate so)."""
    t = run.timer.time(fn)
    rate = flops / t.seconds
    out.append(RatePoint(kind=kind, dtype=dtype, gemm=g, flops_per_s=rate, spread=t.spread, repeats=t.repeats, label=label))  # type: ignore[arg-type]


def gemm_tasks(run: Any, dtypes: list[str], rates: dict[str, float], bw: float) -> list[Task]:
    """The M × (N, K) grid, one weight per (N, K, dtype) shared by every M."""
    torch = run.torch
    ms = (1, 16, 256) if run.quick else GEMM_M
    nks = ((256, 256), (1024, 1024)) if run.quick else GEMM_NK
    max_call = 0.005 if run.quick else 0.04
    caps = {d: rates[d] * max_call for d in dtypes}
    run.env["gemm_grid"] = {"call": "F.linear(x[m,k], w[n,k])", "m": list(ms), "nk": [list(p) for p in nks], "max_flops": caps}
    cache: dict[tuple[int, int, str], tuple[Any, Any]] = {}
    redo: dict[tuple[str, int, int, int], tuple[Callable[[], None], float]] = {}
    tasks: list[Task] = []
    for dt in dtypes:
        es = torch.empty((), dtype=dtype_of(torch, dt)).element_size()
        for n, k in nks:
            for m in ms:
                flops = 2.0 * m * n * k
                if flops > caps[dt]:
                    continue
                call = max(flops / rates[dt], (m * k + n * k + m * n) * es / bw, 3e-6)
                lg = int(math.log2(m))
                prio = 0 if lg % 4 == 0 else (1 if lg % 2 == 0 else 2)

                def go(dt: str = dt, m: int = m, n: int = n, k: int = k, flops: float = flops) -> None:
                    key = (n, k, dt)
                    if key not in cache:
                        cache.clear()  # one (N, K) at a time: the big weights do not pile up
                        gen = torch.Generator().manual_seed(n * 7919 + k)
                        cache[key] = (
                            torch.randn(max(ms), k, generator=gen).to(run.device, dtype_of(torch, dt)),
                            torch.randn(n, k, generator=gen).to(run.device, dtype_of(torch, dt)),
                        )
                    x, w = cache[key]
                    fn = linear_kernel(torch, x[:m], w)
                    rate_point(run, run.gemm, "gemm", dt, GemmShape(m=m, n=n, k=k), flops, fn, f"linear {m}x{k} . ({n}x{k})^T")

                setup = (n * k + max(ms) * k) * 2e-8 if m == ms[0] else 0.0  # randn of the weight and activations
                tasks.append(Task(f"gemm {dt} m={m} n={n} k={k}", run.call_cost(call) + setup, prio, go))
                redo[(dt, m, n, k)] = (go, run.call_cost(call) + (n * k + max(ms) * k) * 2e-8)

    def recheck() -> None:
        """Measure again the grid points far below a smaller M of their row.

        FLOP/s do not fall by half when M grows; when a point does, something
        else had the CPUs then. The second measurement replaces the first.
        """
        again = []
        for key in grid_outliers(run.gemm):
            go, est = redo[key]
            if run.now() + est > run.deadline:
                break
            old = [r for r in run.gemm if (r.dtype, r.gemm.m, r.gemm.n, r.gemm.k, r.gemm.batch) == (*key, 1)]
            for r in old:
                run.gemm.remove(r)
            try:
                go()
            except Exception:
                run.gemm.extend(old)
                raise
            again.append("{} m={} n={} k={}".format(*key))
        run.env["gemm_remeasured"] = again

    tasks.append(Task("gemm recheck of outliers", min(3.0, 0.05 * sum(t.est_s for t in tasks)), 0, recheck))
    return tasks


def grid_outliers(points: list[RatePoint], drop: float = 0.5) -> list[tuple[str, int, int, int]]:
    """(dtype, m, n, k) of batch-1 GEMM points that break what M can do to a row of the grid.

    Within one (N, K), a larger M does not lower FLOP/s by more than ``drop``,
    and a smaller M does not take longer than a larger one by more than
    1 / ``drop``. A point breaking either was measured while something else had
    the CPUs (an OpenMP barrier waiting a whole time slice for a thread).
    """
    rows: dict[tuple[str, int, int], list[RatePoint]] = {}
    for r in points:
        if r.gemm.batch == 1:
            rows.setdefault((r.dtype, r.gemm.n, r.gemm.k), []).append(r)
    out = []
    for (dt, n, k), row in rows.items():
        row = sorted(row, key=lambda r: r.gemm.m)
        secs = [r.gemm.m / r.flops_per_s for r in row]  # ∝ time: FLOPs ∝ m within a row
        for i, r in enumerate(row):
            slower_than_bigger = any(secs[i] * drop > s for s in secs[i + 1 :])
            rate_fell = any(r.flops_per_s < drop * q.flops_per_s for q in row[:i])
            if slower_than_bigger or rate_fell:
                out.append((dt, r.gemm.m, n, k))
    return out


def attention_tasks(run: Any, dtypes: list[str], rates: dict[str, float]) -> list[Task]:
    """Attention's batched products (kind gemm, batch = B·H) and whole SDPA (kind attention)."""
    torch = run.torch
    ls = (128,) if run.quick else ATTN_L
    batches = (1,) if run.quick else (1, 8)
    tasks: list[Task] = []
    for dt in dtypes:
        d = dtype_of(torch, dt)
        for b in batches:
            bh = b * ATTN_HEADS
            for L in ls:
                prio = 0 if (b == 1 and L in (128, 512)) else 1
                gen = torch.Generator().manual_seed(L)
                for which, g in (("qk", GemmShape(m=L, n=L, k=ATTN_D, batch=bh)), ("pv", GemmShape(m=L, n=ATTN_D, k=L, batch=bh))):
                    flops = 2.0 * g.m * g.n * g.k * g.batch

                    label = f"bmm {'q.k^T' if which == 'qk' else 'p.v'} B*H={bh} L={L} D={ATTN_D}"

                    def go(which: str = which, g: GemmShape = g, flops: float = flops, dt: str = dt, d: Any = d, gen: Any = gen, label: str = label) -> None:
                        fn = bmm_kernel(torch, g.batch, g.m, g.n, g.k, which=which, dtype=d, device=run.device, gen=gen)
                        rate_point(run, run.gemm, "gemm", dt, g, flops, fn, label)

                    tasks.append(Task(f"bmm {which} {dt} B*H={bh} L={L}", run.call_cost(flops / (0.5 * rates[dt])), prio, go))
                shapes = [(L, L)] + ([] if run.quick else [(1, L * 2)])  # prefill, and one decode step over a KV cache
                for lq, lk in shapes:
                    g = GemmShape(m=lq, n=lk, k=ATTN_D, batch=bh)
                    flops = 4.0 * lq * lk * ATTN_D * bh  # QK^T and PV, 2 FLOPs per MAC each; softmax not counted

                    def sd(g: GemmShape = g, flops: float = flops, dt: str = dt, d: Any = d, b: int = b, gen: Any = gen) -> None:
                        fn = sdpa_kernel(torch, b, ATTN_HEADS, g.m, g.n, ATTN_D, dtype=d, device=run.device, gen=gen)
                        rate_point(run, run.conv, "attention", dt, g, flops, fn, f"sdpa B={b} H={ATTN_HEADS} Lq={g.m} Lk={g.n} D={ATTN_D}")

                    tasks.append(Task(f"sdpa {dt} B={b} Lq={lq} Lk={lk}", run.call_cost(flops / (0.3 * rates[dt])), prio, sd))
    return tasks


def conv_tasks(run: Any, dtypes: list[str], rates: dict[str, float], bw: float) -> list[Task]:
    """ResNet-like convs and MobileNet depthwise convs, labelled, as implicit GEMMs."""
    torch = run.torch
    convs = CONVS[1:3] if run.quick else CONVS
    dws = DEPTHWISE[1:2] if run.quick else DEPTHWISE
    batches = (1,) if run.quick else (1, 8)
    specs = [(ci, co, hw, ks, st, 1) for ci, co, hw, ks, st in convs] + [(c, c, hw, 3, 1, c) for c, hw in dws]
    tasks: list[Task] = []
    for dt in dtypes:
        d = dtype_of(torch, dt)
        es = torch.empty((), dtype=d).element_size()
        for n in batches:
            for ci, co, hw, ks, st, groups in specs:
                ho = (hw + 2 * (ks // 2) - ks) // st + 1
                g = GemmShape(m=n * ho * ho, n=co // groups, k=ci // groups * ks * ks, batch=groups)
                flops = 2.0 * g.m * g.n * g.k * g.batch
                kind = "depthwise_conv" if groups > 1 else "conv"
                moved = (n * ci * hw * hw + n * co * ho * ho) * es
                call = max(flops / (0.5 * rates[dt]), moved / (0.5 * bw))
                name = f"{'dwconv' if groups > 1 else 'conv'} {ci}->{co} {ks}x{ks}{f' s{st}' if st > 1 else ''} @{hw} b{n}"

                def go(spec: tuple[int, ...] = (n, ci, co, hw, ks, st, groups), g: GemmShape = g, flops: float = flops, kind: str = kind, name: str = name, dt: str = dt, d: Any = d) -> None:
                    gen = torch.Generator().manual_seed(hash(spec) & 0xFFFF)
                    fn, _ = conv_kernel(torch, *spec, dtype=d, device=run.device, gen=gen)
                    rate_point(run, run.conv, kind, dt, g, flops, fn, name)

                tasks.append(Task(f"{name} {dt}", run.call_cost(call), 0 if n == 1 else 1, go))
    return tasks
