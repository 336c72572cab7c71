"""``infermeter calibrate``: measure this machine into a hardware profile, or show a stored one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._app import app, handle_errors, open_store
from .options import DebugOpt, DeviceOpt, QuietOpt, StoreOpt, ThreadsOpt


@app.command()
@handle_errors
def calibrate(
    name: Annotated[
        Optional[str], typer.Argument(help="with --show: a stored profile's name or a profile YAML file (default: the newest stored)")
    ] = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    dtype: Annotated[
        Optional[str], typer.Option("--dtype", help="dtypes to measure, comma-separated: float32,bfloat16 (default: those the device runs natively)")
    ] = None,
    budget: Annotated[float, typer.Option("--budget", min=1.0, help="seconds the calibration may take at most")] = 90.0,
    quick: Annotated[bool, typer.Option("--quick", help="a few points of each kind in a few seconds: a smoke test, too coarse for predictions")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="also write the profile to this YAML file")] = None,
    show: Annotated[bool, typer.Option("--show", help="show a stored profile (or a YAML file) instead of calibrating")] = False,
    store: StoreOpt = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="do not keep the profile in the store")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure this machine (GEMM, conv, attention, memory bandwidth, dispatch overhead) for `infermeter predict`.

    Takes at most --budget seconds; the profile is kept in the store and, with --out, in a YAML file.
    """
    from rich.console import Console

    from ..errors import UsageError
    from ..report.calibrate_table import render_profile

    console = Console(highlight=False)
    if show:
        render_profile(_stored(name, store), console)
        return
    if name is not None:
        raise UsageError(f"unexpected argument '{name}'; a profile name goes with --show: infermeter calibrate --show {name}")

    from ..predict.calibrate import calibrate as run_calibration
    from ..predict.profiles import save_profile, write_profile_file

    with _Progress(enabled=not quiet) as progress:
        profile = run_calibration(device=device, threads=threads, dtypes=dtype, budget_s=budget, quick=quick, progress=progress.update)
    render_profile(profile, console)
    if out is not None:
        console.print(f"wrote {write_profile_file(out, profile)}")
    if not no_save:
        st = open_store(store)
        with st:
            save_profile(st, profile)
        console.print(f"saved as {profile.name} in {st.path}")


def _stored(name: Optional[str], store: Optional[Path]) -> Any:
    """The profile ``--show`` names: a YAML file, or a stored profile (the newest when unnamed)."""
    from ..errors import UsageError
    from ..predict.profiles import load_profile, read_profile_file

    if name is not None and (name.endswith((".yaml", ".yml")) or Path(name).is_file()):
        return read_profile_file(name)
    st = open_store(store)
    with st:
        profile = load_profile(st, name)
        if profile is not None:
            return profile
        names = sorted({n for n, _ in st.list_hardware()})
        where = st.path
    if name is None:
        raise UsageError(f"no hardware profile in {where} yet; run `infermeter calibrate` first")
    known = f"; stored: {', '.join(names)}" if names else "; run `infermeter calibrate` first"
    raise UsageError(f"no hardware profile named '{name}' in {where}{known}")


class _Progress:
    """A transient progress bar on stderr fed by ``calibrate(progress=…)``."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("calibrating {task.description:<10}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self._bar.__enter__()
            self._task = self._bar.add_task("probe", total=1.0)
        return self

    def update(self, stage: str, fraction: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=stage, completed=fraction)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
