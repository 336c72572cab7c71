"""The reference server: a model behind the Open Inference Protocol (KServe v2 REST).

Dynamic batching, a response cache, inference off the event loop, Prometheus
metrics. starlette, uvicorn and prometheus_client are the ``serve`` extra and
are imported only when a server is built, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServeConfig", "build_app", "run_server", "Batcher", "ResponseCache"]

_HOMES = {"ServeConfig": "app", "build_app": "app", "run_server": "app", "Batcher": "batcher", "ResponseCache": "cache"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
