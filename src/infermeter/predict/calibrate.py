"""Measure this machine: what GEMMs, convolutions, attention, memory-bound ops
and op dispatch actually attain here → a :class:`HardwareProfile`.

The profile feeds the roofline predictor (per op: dispatch overhead +
max(FLOPs / attainable FLOP/s at the op's GEMM shape, bytes / bandwidth at its
working set)), so its grids are made for interpolation (``kernels.py`` holds
them): GEMM as a regular product of M = 1…4096 and (N, K) pairs, with a FLOP
cap per point written into ``env["gemm_grid"]``; attention-shaped batched
matmuls and SDPA; ResNet-like and depthwise convs; a bandwidth staircase from
8 KiB to max(4 × last-level cache, 256 MiB) per op kind; dispatch overhead per
backend and thread count.

Everything runs inside ``budget_s``: after a short probe of this machine's
rates, each section gets its share of the time left, drops the least
informative points that would not fit, and stops at its deadline. What was
left out, and why, is listed in ``env["skipped"]``.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import BackendUnavailable, UsageError
from . import grid
from .grid import Task
from .kernels_rnn import recurrent_tasks
from .schema import BandwidthPoint, HardwareProfile, OverheadPoint, RatePoint

__all__ = ["calibrate", "read_cpu_caches", "native_dtypes", "DTYPES", "SHARES"]

Progress = Callable[[str, float], None]

DTYPES = ("float32", "bfloat16", "float16")
# Share of the time left that each section may use, in the order they run:
# the ones every prediction needs (overhead, GEMM, bandwidth) first.
SHARES = {"overhead": 0.06, "gemm": 0.40, "bandwidth": 0.24, "conv": 0.15, "attention": 0.15}
_SKIPPED_KEPT = 200  # env["skipped"] entries kept (the count says how many more)


def read_cpu_caches(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> tuple[dict[str, int], dict[str, int]]:
    """Data and unified caches of cpu0 as the OS reports them: (level → bytes, level → CPUs sharing it).

    Empty where the OS does not say (no /sys: macOS, Windows); the staircase
    then still spans 8 KiB to 256 MiB.
    """
    sizes: dict[str, int] = {}
    shared: dict[str, int] = {}
    for d in sorted(root.glob("index*")) if root.is_dir() else []:
        try:
            kind = (d / "type").read_text().strip()
            if kind == "Instruction":
                continue
            level = "L" + (d / "level").read_text().strip() + ("d" if kind == "Data" else "")
            text = (d / "size").read_text().strip().upper()
            sizes[level] = int(text.rstrip("KMG")) * {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
            cpus = (d / "shared_cpu_list").read_text().strip()
            ranges = [p.partition("-") for p in cpus.split(",") if p]
            shared[level] = sum(int(b or a) - int(a) + 1 for a, _, b in ranges)
        except (OSError, ValueError):
            continue
    return sizes, shared


def native_dtypes(device: str, cpu_flags: dict[str, bool], capability: tuple[int, int] | None = None) -> dict[str, str | None]:
    """dtype → None if this device runs it natively, else why it is skipped by default."""
    if device == "cpu":
        bf16 = any(cpu_flags.get(f) for f in ("avx512_bf16", "amx_bf16", "bf16"))
        return {
            "float32": None,
            "bfloat16": None if bf16 else "no native bfloat16 on this CPU (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo)",
            "float16": "float16 is calibrated on CUDA only (CPU kernels for it are mostly emulated)",
        }
    major, minor = capability or (0, 0)
    return {
        "float32": None,
        "bfloat16": None if (major, minor) >= (8, 0) else f"compute capability {major}.{minor} < 8.0 has no bfloat16 tensor cores",
        "float16": None if (major, minor) >= (5, 3) else f"compute capability {major}.{minor} < 5.3 has no float16 arithmetic",
    }


@dataclass
class _Run:
    """One calibration's state: torch, device, timer, budget, and what was measured."""

    torch: Any
    device: Any
    timer: Any
    now: Callable[[], float]
    end_s: float
    quick: bool
    progress: Progress | None
    gemm: list[RatePoint] = field(default_factory=list)
    conv: list[RatePoint] = field(default_factory=list)
    bandwidth: list[BandwidthPoint] = field(default_factory=list)
    overhead: list[OverheadPoint] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sections: dict[str, float] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    done_share: float = 0.0
    loads: dict[str, float] = field(default_factory=dict)
    deadline: float = 0.0  # of the section running now

    def call_cost(self, call_s: float) -> float:
        """Seconds a point whose call takes ``call_s`` costs: warm-up + repeats + setup."""
        t = self.timer
        warm = call_s if call_s >= 10 * t.warmup_s else call_s + max(call_s, t.warmup_s)
        return 0.002 + warm + t.repeats * max(call_s, t.min_repeat_s)

    def allotment(self, name: str, remaining: list[str]) -> float:
        return max(0.0, self.end_s - self.now()) * SHARES[name] / sum(SHARES[s] for s in remaining)

    def section(self, name: str, tasks: list[Task], remaining: list[str]) -> None:
        """Run ``tasks`` within this section's share of the time left.

        Points that would not fit are dropped before starting (highest
        ``priority`` first, dearest first among equals), then points are cut
        at the section's deadline; both are listed in ``skipped``. A point
        whose kernel fails (a dtype this build lacks for convs …) is listed
        too: a skipped point, not a failed calibration.
        """
        t0 = self.now()
        cpu0 = _cpu_snapshot(t0)
        allot = self.allotment(name, remaining)
        keep: set[int] = set()
        total = 0.0
        for i in sorted(range(len(tasks)), key=lambda j: (tasks[j].priority, tasks[j].est_s)):
            if total + tasks[i].est_s <= allot:
                keep.add(i)
                total += tasks[i].est_s
        deadline = self.deadline = min(self.end_s, t0 + 1.25 * allot)
        done = 0.0
        for i, task in enumerate(tasks):
            if i not in keep:
                self.skipped.append(f"{task.label}: does not fit the budget")
                continue
            if self.now() + task.est_s > deadline:
                self.skipped.append(f"{task.label}: budget spent")
                continue
            try:
                task.measure()
            except Exception as exc:
                cause = getattr(exc, "original", exc)
                first = str(cause).strip().splitlines()[0][:160] if str(cause).strip() else ""
                self.skipped.append(f"{task.label}: failed: {type(cause).__name__}: {first}")
            done += task.est_s
            if self.progress is not None and total > 0:
                self.progress(name, min(1.0, self.done_share + SHARES[name] * min(1.0, done / total)))
        self.done_share += SHARES[name]
        self.sections[name] = round(self.now() - t0, 3)
        self.loads[name] = _other_load(cpu0, _cpu_snapshot(self.now()))


def _cpu_snapshot(now_s: float) -> tuple[float, float, float, float] | None:
    """(``now_s``, busy CPU seconds of all processes, of this process, stolen by the hypervisor)."""
    try:
        import psutil

        t = psutil.cpu_times()
        me = psutil.Process().cpu_times()
        busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        return (now_s, busy, me.user + me.system, getattr(t, "steal", 0.0))
    except Exception:  # no psutil data on this platform: no load figure, not a failed run
        return None


def _other_load(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> float:
    """Share of all CPUs that other processes (and the hypervisor) used between two snapshots.

    A calibration shares the machine with nothing else; when it did, its rates
    are low and say so (``env["other_cpu_load"]``, a note).
    """
    if a is None or b is None or b[0] <= a[0]:
        return 0.0
    import os

    wall = (b[0] - a[0]) * (os.cpu_count() or 1)
    other = max(0.0, (b[1] - a[1]) - (b[2] - a[2])) + max(0.0, b[3] - a[3])
    return round(min(1.0, other / wall), 3)


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _parse_dtypes(dtypes: list[str] | str | None) -> list[str] | None:
    if dtypes is None:
        return None
    items = [d.strip().lower() for d in (dtypes.split(",") if isinstance(dtypes, str) else dtypes) if d.strip()]
    alias = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    out = [alias.get(d, d) for d in items]
    bad = [d for d in out if d not in DTYPES]
    if bad or not out:
        raise UsageError(f"cannot calibrate dtype '{','.join(bad) or dtypes}'; use float32, bfloat16 or float16, comma-separated")
    return list(dict.fromkeys(out))


def calibrate(
    *,
    device: str = "cpu",
    threads: int | None = None,
    dtypes: list[str] | str | None = None,
    budget_s: float = 90.0,
    quick: bool = False,
    progress: Progress | None = None,
) -> HardwareProfile:
    """Measure this machine with PyTorch (and ONNX Runtime's dispatch, when installed).

    ``dtypes`` None measures every dtype this device runs natively; the others
    are listed in ``env["skipped_dtypes"]`` with the reason. ``quick`` measures
    a few points of each kind in a few seconds (for tests and smoke checks).
    ``progress(stage, fraction)`` is called as the work advances. The run ends
    within ``budget_s`` seconds (plus the last point's overrun, well under one
    second), leaving out what does not fit.
    """
    if not budget_s > 0:
        raise UsageError(f"the calibration budget must be positive seconds, got {budget_s}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    dev = str(device).strip().lower()
    if not re.fullmatch(r"cpu|cuda(:\d+)?", dev):
        raise UsageError(f"cannot calibrate device '{device}'; use cpu, cuda or cuda:N")
    wanted = _parse_dtypes(dtypes)
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("calibrate measures through PyTorch, which is not installed; pip install 'infermeter[torch]'") from None
    from ..env import capture_env
    from ..timing.clocks import CudaEventClock, HostClock
    from . import kernels

    host = HostClock()
    now: Callable[[], float] = lambda: host.now_ns() * 1e-9  # noqa: E731
    t_start = now()
    is_cuda = dev.startswith("cuda")
    if is_cuda and not torch.cuda.is_available():
        raise BackendUnavailable(f"CUDA is not available to this torch ({torch.__version__}); use --device cpu or install a CUDA build of torch")
    tdev = torch.device(dev)
    if is_cuda:
        idx = tdev.index if tdev.index is not None else torch.cuda.current_device()
        if idx >= torch.cuda.device_count():
            raise UsageError(f"there is no {dev}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        tdev = torch.device("cuda", idx)
        torch.cuda.set_device(idx)
    env = capture_env(probe_gpu=is_cuda)
    default_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        nthreads = torch.get_num_threads()
        if is_cuda:
            props = torch.cuda.get_device_properties(tdev)
            caches, shared = {"L2": int(getattr(props, "L2_cache_size", 0) or 0)}, {}
            native = native_dtypes("cuda", {}, (props.major, props.minor))
            timer = kernels.Timer(CudaEventClock(torch.cuda.Event), torch.cuda.synchronize, **_effort(quick))
            device_name, kind = props.name, "gpu"
        else:
            caches, shared = read_cpu_caches()
            native = native_dtypes("cpu", env.cpu_flags)
            timer = kernels.Timer(host, None, **_effort(quick))
            device_name, kind = env.cpu_model, "cpu"
        chosen = list(wanted) if wanted is not None else [d for d in DTYPES if native[d] is None]
        skipped_dtypes = {d: ("not requested" if wanted is not None else str(native[d])) for d in DTYPES if d not in chosen}
        notes = [f"{d} measured on request although {native[d]}" for d in chosen if native[d] is not None]
        run = _Run(torch, tdev, timer, now, t_start + 0.97 * budget_s - 0.2, quick, progress)
        if progress is not None:
            progress("probe", 0.0)
        rates: dict[str, float] = {}
        for d in list(chosen):  # a dtype whose GEMM fails here is skipped with the reason, not a failed run
            try:
                rates.update(grid.probe_rates(run, [d]))
            except Exception as exc:
                chosen.remove(d)
                skipped_dtypes[d] = f"its probe GEMM failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}"
        if not chosen:
            raise BackendUnavailable(f"no dtype could be measured on {dev}: {'; '.join(f'{d}: {r}' for d, r in skipped_dtypes.items())}")
        probe = kernels.BandwidthBuffers(torch, 8 * 2**20, torch.float32, tdev)
        copy_fn, moved = probe.kernel("copy", 8 * 2**20)
        bw = moved / timer.time(copy_fn).seconds
        del probe, copy_fn
        run.env["first_touch_bytes_per_s"] = kernels.first_touch_rate(torch, (16 if quick else 64) * 2**20, timer) if not is_cuda else None
        remaining = list(SHARES)
        builders: dict[str, Callable[[], list[Task]]] = {
            "overhead": lambda: grid.overhead_tasks(run, nthreads, _importable("onnx") and _importable("onnxruntime")),
            "gemm": lambda: grid.gemm_tasks(run, chosen, rates, bw),
            "bandwidth": lambda: grid.bandwidth_tasks(run, caches, bw, run.allotment("bandwidth", remaining), chosen, _available_memory),
            "conv": lambda: grid.conv_tasks(run, chosen, rates, bw) + recurrent_tasks(run, chosen, rates),
            "attention": lambda: grid.attention_tasks(run, chosen, rates),
        }
        for name in SHARES:
            run.section(name, builders[name](), remaining)  # the tasks (and their tensors) go when it returns
            remaining.remove(name)
    finally:
        torch.set_num_threads(default_threads)
    measured = {p.dtype for p in run.gemm}
    load = max(run.loads.values(), default=0.0)
    if load > 0.1:
        busiest = max(run.loads, key=lambda k: run.loads[k])
        notes.append(
            f"other processes used up to {load:.0%} of the CPUs (during {busiest}): figures may be low; recalibrate on a quiet machine"
        )
    run.env.update(
        {
            "hostname": env.hostname,
            "cpu_model": env.cpu_model,
            "cpu_flags": sorted(k for k, v in env.cpu_flags.items() if v),
            "cores_physical": env.cores_physical,
            "cores_logical": env.cores_logical,
            "memory_total_bytes": env.memory_total_bytes,
            "gpus": env.gpus if is_cuda else [],
            "versions": {k: v for k, v in env.versions.items() if k in ("infermeter", "torch", "onnxruntime", "onnx", "numpy")},
            "torch_threads_default": default_threads,
            "mkldnn": bool(torch.backends.mkldnn.is_available()),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if is_cuda else None,
            "cache_shared_cpus": shared,
            "probe_flops_per_s": rates,
            "probe_copy_bytes_per_s": bw,
            "timer_overhead_s": timer.overhead_s,
            "rates": "work / median time of the whole framework call: each rate includes one dispatch",
            "repeats": timer.repeats,
            "min_repeat_s": timer.min_repeat_s,
            "overhead_backends": "torch: add of two 1-element tensors per call; onnxruntime: per node (slope of a 64- vs 1-node Add chain); onnxruntime-run: per session.run beyond its nodes",
            "attention_flops": "sdpa FLOPs = 4 * Lq * Lk * D * B*H (QK^T and PV); softmax not counted",
            "budget_s": budget_s,
            "quick": quick,
            "sections_s": run.sections,
            "other_cpu_load": run.loads,
            "skipped_dtypes": skipped_dtypes,
            "notes": notes,
            "skipped_count": len(run.skipped),
            "skipped": run.skipped[:_SKIPPED_KEPT],
        }
    )
    suffix = f"-{nthreads}t" if threads is not None and nthreads != default_threads else ""
    profile = HardwareProfile(
        name=f"{_slug(env.hostname or 'host')}-{'cpu' if kind == 'cpu' else _slug(device_name)}{suffix}",
        kind=kind,  # type: ignore[arg-type]
        source=f"calibrated on {env.hostname or 'this host'} with torch {torch.__version__}",
        backend="torch",
        device=str(tdev),
        device_name=device_name,
        threads=nthreads,
        dtypes=[d for d in chosen if d in measured],
        caches=caches,
        gemm=sorted(run.gemm, key=lambda p: (p.dtype, p.gemm.batch > 1, p.gemm.n, p.gemm.k, p.gemm.m)),
        conv=run.conv,
        bandwidth=sorted(run.bandwidth, key=lambda p: (p.kind, p.bytes)),
        overhead=run.overhead,
        duration_s=round(now() - t_start, 3),
        env=run.env,
    )
    from .sequence import measure_sequences

    t_seq = now()
    try:
        profile.sequence = measure_sequences(profile, torch=torch, device=tdev, timer=run.timer, dtypes=profile.dtypes,
                                             quick=quick)
    except Exception as exc:  # a chain that cannot run here leaves the isolated points usable
        profile.env.setdefault("notes", []).append(f"sequence chains not measured: {type(exc).__name__}: {exc}")
    profile.env["sequence_s"] = round(now() - t_seq, 3)
    profile.duration_s = round(now() - t_start, 3)
    if progress is not None:
        progress("done", 1.0)
    return profile


def _effort(quick: bool) -> dict[str, Any]:
    """Timer settings. A repeat of at least 2 ms keeps the timer's own cost under 0.1 %;
    7 repeats make the IQR the 2nd to 6th of them rather than 2nd to 4th of 5. Quick trades both for speed."""
    return {"repeats": 5, "min_repeat_s": 0.0005, "warmup_s": 0.002} if quick else {"repeats": 7, "min_repeat_s": 0.002, "warmup_s": 0.005}
