"""One exception tree for everything infermeter reports to a human.

Every message says what is wrong *and* how to fix it, on one line. The CLI maps
each class to an exit code: 2 for a mistake in what the user asked for, 1 for a
run that failed. Library code raises these and never calls ``sys.exit``.
"""

from __future__ import annotations

__all__ = [
    "InfermeterError",
    "UsageError",
    "SpecError",
    "InputError",
    "BackendUnavailable",
    "ModelLoadError",
    "ModelRunError",
    "StoreError",
    "TransformError",
    "OutputError",
]


class InfermeterError(Exception):
    """Base of every error infermeter raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # Keep it one line: the CLI prints exactly this.
        super().__init__(" ".join(str(message).split()))


class UsageError(InfermeterError):
    """The request itself is wrong (bad option value, bad syntax). Exit 2."""

    exit_code = 2


class SpecError(UsageError):
    """A model spec that names nothing loadable: missing file, unknown suffix,
    import path that does not resolve, unknown zoo name."""


class InputError(UsageError):
    """Inputs that do not fit the model: wrong name, dtype or rank, a symbolic
    dim left unset, unreadable ``--data``."""


class BackendUnavailable(UsageError):
    """A backend or device that is not installed here (torch, onnxruntime, CUDA)."""


class ModelLoadError(InfermeterError):
    """The file exists but is not a valid model for its backend."""


class ModelRunError(InfermeterError):
    """The model raised, or returned something unusable, while being run.

    ``iteration`` is the index of the failing call in the phase it happened in.
    """

    def __init__(self, message: str, *, phase: str | None = None, iteration: int | None = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.iteration = iteration


class TransformError(InfermeterError):
    """A transform (quantize, prune, compile, export …) could not make a model from
    this one: an operator it cannot handle, a compiler missing. ``optimize`` keeps
    it as a failed candidate with this message; it never ends the whole run."""


class StoreError(InfermeterError):
    """The results store cannot be opened, written or read."""


class OutputError(UsageError):
    """An output path (``--json``, export) cannot be written."""
