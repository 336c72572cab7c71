"""The one seam every backend implements.

A :class:`Runner` is a loaded model you can call. It knows nothing of time:
scenarios time it, through ``prepare`` (outside the timed region), ``__call__``
and ``sync`` (inside). Backends live one per file beside this one and are
imported only when a spec needs them, so the core never imports torch.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..inputs import InputSpec

__all__ = ["Runner", "LoadOptions", "DeviceMemory"]


#: ONNX Runtime graph optimisation levels, by the names ``LoadOptions.extra["graph_optimization_level"]`` takes.
ORT_GRAPH_LEVELS = ("disabled", "basic", "extended", "all")


@dataclass(frozen=True)
class LoadOptions:
    """What the user asked for when loading. Runners record what is in force in
    :meth:`Runner.describe` (requested vs effective, as LoadGen logs both)."""

    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    dtype: str | None = None  # None: the model's own
    threads: int | None = None  # intra-op threads; None: the backend's default
    providers: tuple[str, ...] = ()  # ONNX Runtime execution providers; () → by device
    inputs: tuple[InputSpec, ...] = ()  # the user's --input specs
    extra: Mapping[str, Any] = field(default_factory=dict)


class DeviceMemory(abc.ABC):
    """Peak device-memory accounting (e.g. ``torch.cuda.max_memory_allocated``)."""

    accounting: str = ""

    @abc.abstractmethod
    def reset_peak(self) -> None: ...

    @abc.abstractmethod
    def peak_bytes(self) -> int: ...


class Runner(abc.ABC):
    """A loaded model. Subclasses set ``backend``, ``device`` and ``dtype``."""

    backend: str = "unknown"
    device: str = "cpu"
    dtype: str | None = None
    spec: str = ""

    @abc.abstractmethod
    def inputs(self) -> list[InputSpec]:
        """The inputs the model declares (may hold symbolic dims); [] if it cannot tell."""

    def prepare(self, batch: Mapping[str, np.ndarray]) -> Any:
        """Turn a numpy batch into what ``__call__`` takes (tensors, on the device,
        in the model's dtype). Done outside the timed region."""
        return dict(batch)

    @abc.abstractmethod
    def __call__(self, prepared: Any) -> Any:
        """Run one forward pass on a prepared batch. May return before the device
        is done; ``sync`` waits."""

    def sync(self) -> None:
        """Block until work queued on the device is done (no-op on the host)."""

    def needs_sync(self) -> bool:
        """Whether ``sync`` does anything. Scenarios leave a no-op sync out of the
        timed region: even an empty method call costs tens of nanoseconds."""
        return type(self).sync is not Runner.sync

    def device_memory(self) -> DeviceMemory | None:
        """Device-memory accounting where the backend has one."""
        return None

    def event_factory(self) -> Any:
        """A factory of device timing events (``torch.cuda.Event``-like: ``record()``,
        ``elapsed_time(other)`` in ms) for device clocks; None on the host."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts about the loaded model for the result: backend, device, dtype,
        params, file size, threads in force, providers … (JSON-serialisable)."""
        return {"spec": self.spec, "backend": self.backend, "device": self.device, "dtype": self.dtype}

    def close(self) -> None:
        """Release what the runner holds (sessions, device memory)."""
