"""A response cache: the same inputs answered again without queueing.

Keyed by a hash of every input's name, dtype, shape and bytes, so two requests
hit the same entry only when the model would see exactly the same batch. LRU
with an optional time to live. Lives on the event loop (no lock): only the
request handlers touch it. The clock is injected so tests can expire entries
without sleeping.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["ResponseCache", "inputs_key"]


def inputs_key(inputs: Mapping[str, np.ndarray]) -> str:
    """A digest of the inputs: name, dtype, shape and bytes of each, in name order."""
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(inputs):
        arr = np.ascontiguousarray(inputs[name])
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.reshape(-1).view(np.uint8))
    return h.hexdigest()


class ResponseCache:
    """LRU of ``capacity`` entries; entries older than ``ttl_s`` count as misses."""

    def __init__(self, capacity: int, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, not {capacity}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"cache TTL must be positive seconds, not {ttl_s}")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.expired = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Any | None:
        """The cached value (and count a hit), or None (and count a miss)."""
        entry = self._entries.get(key)
        if entry is not None and self.ttl_s is not None and self._clock() - entry[0] > self.ttl_s:
            del self._entries[key]
            self.expired += 1
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        if not self.capacity:
            return
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def snapshot(self) -> dict[str, Any]:
        looked = self.hits + self.misses
        return {
            "capacity": self.capacity, "ttl_s": self.ttl_s, "entries": len(self._entries),
            "hits": self.hits, "misses": self.misses, "expired": self.expired,
            "hit_rate": self.hits / looked if looked else None,
        }
