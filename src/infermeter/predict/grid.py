"""The points ``calibrate`` measures: grids of shapes for the compute kernels, as
:class:`Task` lists that ``calibrate`` fits into its time budget, and the rate
each measured point gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from . import kernels
from .kernels import bmm_kernel, conv_kernel, linear_kernel, sdpa_kernel
from .schema import BandwidthPoint, GemmShape, OverheadPoint, RatePoint

__all__ = [
    "GEMM_M", "GEMM_NK", "CONVS", "DEPTHWISE", "ATTN_L", "Task", "dtype_of", "probe_rates", "rate_point",
    "gemm_tasks", "grid_outliers", "attention_tasks", "conv_tasks", "overhead_tasks", "bandwidth_tasks",
]

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


# ---------------------------------------------------------------------------- dispatch cost and bandwidth

_BUF = 11 / 6  # bandwidth buffers per byte of the largest working set (kernels.BandwidthBuffers)

def overhead_tasks(run: Any, threads: int, ort_ok: bool) -> list[Task]:
    """A tiny torch op per thread count; ONNX Runtime's cost per node (slope of
    a 1-node and an N-node chain) and per ``session.run`` (the rest)."""

    torch = run.torch
    tasks: list[Task] = []
    for t in sorted({1, threads}):

        def torch_op(t: int = t) -> None:
            old = torch.get_num_threads()
            torch.set_num_threads(t)
            try:
                m = run.timer.time(kernels.tiny_op_kernel(torch, run.device))
            finally:
                torch.set_num_threads(old)
            run.overhead.append(OverheadPoint(backend="torch", threads=t, seconds=m.seconds, spread=m.spread, repeats=m.repeats))

        def ort(t: int = t) -> None:
            nodes = 16 if run.quick else 64
            one = run.timer.time(kernels.ort_chain_session(1, t))
            many = run.timer.time(kernels.ort_chain_session(nodes, t))
            slope = max(many.seconds - one.seconds, 0.0) / (nodes - 1)
            iqr = math.hypot(many.spread * many.seconds, one.spread * one.seconds)
            spread = iqr / (slope * (nodes - 1)) if slope > 0 else 0.0
            reps = min(one.repeats, many.repeats)
            run.overhead.append(OverheadPoint(backend="onnxruntime", threads=t, seconds=slope, spread=spread, repeats=reps))
            run.overhead.append(
                OverheadPoint(backend="onnxruntime-run", threads=t, seconds=max(one.seconds - slope, 0.0), spread=one.spread, repeats=one.repeats)
            )

        tasks.append(Task(f"overhead torch threads={t}", 0.03, 0, torch_op))
        if run.device.type == "cpu" and ort_ok:
            tasks.append(Task(f"overhead onnxruntime threads={t}", 0.15, 1, ort))
    if run.device.type != "cpu":
        run.skipped.append("overhead onnxruntime: measured in CPU profiles only")
    elif not ort_ok:
        run.skipped.append("overhead onnxruntime: onnx/onnxruntime not installed (pip install 'infermeter[onnx]')")
    return tasks


def bandwidth_tasks(run: Any, caches: dict[str, int], bw: float, allot: float, dtypes: list[str] | None,
                    available_memory: Callable[[], int]) -> list[Task]:
    """The staircase: working sets from 8 KiB doubling to past the last-level cache,
    per op kind, in float32 and (kinds whose arithmetic depends on it, at every
    other size) in the other dtypes measured: bfloat16 elementwise work on a CPU
    converts to float and back, and is not float32's bandwidth."""

    torch = run.torch
    llc = max(caches.values()) if caches else 32 * 2**20
    top = 2 ** math.ceil(math.log2(llc * 1.01 if run.quick else max(4 * llc, 256 * 2**20)))
    first_touch = float(run.env.get("first_touch_bytes_per_s") or 1e9)
    slow = {"copy": 1.0, "elementwise": 1.0, "reduction": 1.0, "normalization": 3.0, "transpose": 4.0, "activation": 4.0, "pooling": 8.0}
    others = [d for d in (dtypes or []) if d != "float32"] if not run.quick else []
    kinds = ("copy",) if run.quick else kernels.BW_KINDS

    def top_cost(size: int) -> float:  # buffers + the kinds at the top size, DRAM rate taken as half the probe
        return size * _BUF / first_touch + sum(run.call_cost(size / (0.5 * bw / slow[k])) for k in kinds)

    free = torch.cuda.mem_get_info(run.device)[0] if run.device.type == "cuda" else available_memory()
    while top > 2**20 and (top * _BUF > 0.5 * free or top_cost(top) > 0.5 * allot):
        why = "not enough free memory" if top * _BUF > 0.5 * free else "does not fit the budget"
        run.skipped.append(f"bandwidth at {top >> 20} MiB and above: {why}")
        top //= 2
    sizes = [8192 * 2**i for i in range(int(math.log2(top // 8192)) + 1)]
    holder: dict[str, Any] = {}

    def alloc() -> None:
        t0 = run.now()
        holder["buf"] = kernels.BandwidthBuffers(torch, top, torch.float32, run.device)
        for d in others:  # half the bytes per element: the same buffers' bytes, viewed as the narrow dtype
            holder[d] = kernels.BandwidthBuffers(torch, top // 2, kernels.dtype_of(torch, d), run.device)
        run.env["bandwidth_max_working_set"] = top
        run.env["bandwidth_alloc_s"] = round(run.now() - t0, 3)

    tasks = [Task(f"bandwidth buffers {top >> 20} MiB", top * _BUF * (1 + 0.5 * len(others)) / first_touch, 0, alloc)]
    narrow_kinds = ("elementwise", "normalization", "activation", "pooling")
    for i, size in enumerate(sizes):
        for dt in ["float32", *others]:
            for kind in kernels.BW_KINDS:
                if run.quick and kind != "copy" and size > 4 * 2**20:
                    continue
                if dt != "float32" and (kind not in narrow_kinds or size > top // 2 or i % 2):
                    continue
                prio = 0 if size in (sizes[0], sizes[-1]) else 1 + i % 2
                if dt != "float32":
                    prio = 2

                def go(kind: str = kind, size: int = size, dt: str = dt) -> None:
                    buf = holder.get("buf" if dt == "float32" else dt)
                    if buf is None:
                        raise RuntimeError("the bandwidth buffers were not allocated")
                    fn, moved = buf.kernel(kind, size)
                    t = run.timer.time(fn)
                    rate = moved / t.seconds  # the whole call, dispatch included, as for the compute rates
                    run.bandwidth.append(BandwidthPoint(kind=kind, dtype=dt, bytes=moved, bytes_per_s=rate, spread=t.spread, repeats=t.repeats))  # type: ignore[arg-type]

                rate = bw / (1.0 if size <= llc else 2.0) / slow[kind]
                tasks.append(Task(f"bandwidth {kind} {dt} {size} B", run.call_cost(size / rate), prio, go))
    run.env["bandwidth_calls"] = (
        "copy: c.copy_(a); elementwise: add(a, b, out=c); reduction: a.sum(); "
        "normalization: F.layer_norm over rows of 1024 (allocates its output); transpose: dst.copy_(src.t()); "
        "activation: F.gelu(a) (allocates); pooling: F.max_pool2d(x[1,64,H,W], 3, 2, 1) (allocates); "
        "outputs preallocated except layer_norm's, so fresh-output page faults are not included (see first_touch_bytes_per_s)"
    )
    return tasks
