"""The typer app, the error mapping every command shares, and the store opener."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import typer


app = typer.Typer(
    name="infermeter",
    help="How long does this model take to answer, why, and how could it take less? Measured with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="List, show, export and delete stored runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

F = TypeVar("F", bound=Callable[..., Any])


def _err(text: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


def handle_errors(fn: F) -> F:
    """Map infermeter errors to one line and an exit code; keep tracebacks for --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug"))
        from ..errors import InfermeterError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except InfermeterError as exc:
            if debug:
                raise
            _err(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            if debug:
                raise
            kept = getattr(exc, "results", None)
            note = f"; {len(kept)} finished point(s) kept in the store" if kept is not None else ""
            _err(f"interrupted{note}")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug of ours: say so plainly
            if debug:
                raise
            _err(f"internal error: {type(exc).__name__}: {exc} (run again with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def open_store(path: Optional[Path]) -> Any:
    from ..store import Store, default_store_path

    return Store(path if path is not None else default_store_path())
