"""What a load run asks for: :class:`LoadConfig`, validated at construction.

Validation here is pure (no file or network I/O, per DESIGN "Typed configs
validated at construction"): files named by ``trace``, ``body='@file'`` and
``payload_files`` are read when the run is planned, so a config can be built,
stored and compared without touching the disk.

Loop modes:

* ``open``: requests are sent at scheduled times (``rate`` with an ``arrival``
  process, or a ``trace`` of send times) whatever the server does; latency runs
  from the *intended* send time, so a slow server cannot hide its queueing
  (coordinated omission).
* ``closed``: ``concurrency`` users, each sending its next request when the last
  one answered (plus ``think_s``). The server paces the load; what it reports is
  what a fixed pool of clients sees, not what an arrival rate would.

``connections`` caps the open connections (HTTP/1.1 keep-alive, one request
at a time each), split over the processes, as a browser or a client pool
does: past the cap a request waits for a free connection before it leaves.
Latency still runs from the intended send time, so that wait is counted
(what wrk2 calls coordinated omission), while the service time from the
actual send hides it. Without a cap, a request never waits for a connection.

``repeat`` (OIP only) makes that share of the requests send, byte for byte,
the body of an earlier request chosen uniformly among those sent before; the
rest send a body never sent before. A server's response cache large enough to
hold every distinct body then sees ``repeat`` as its hit ratio.

``concurrency`` given alone (no ``rate``, no ``trace``) means a closed loop.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import UsageError
from ..inputs import parse_input

__all__ = ["PROTOCOLS", "MODES", "LoadConfig", "parse_arrival"]

PROTOCOLS = ("oip", "oip-binary", "openai-completions", "openai-chat", "http-json")
MODES = ("open", "closed")
_ARRIVAL_RE = re.compile(r"^\s*(constant|poisson|gamma\s*:\s*(?P<k>[0-9.eE+-]+))\s*$", re.IGNORECASE)
MAX_PROCESSES = 256


def parse_arrival(text: str) -> tuple[str, float | None]:
    """``'constant'`` | ``'poisson'`` | ``'gamma:K'`` -> (kind, K). Gamma gaps have shape K and
    mean 1/rate: K = 1 is Poisson, K < 1 burstier (CV = 1/sqrt(K)), K > 1 smoother."""
    m = _ARRIVAL_RE.match(str(text or ""))
    if not m:
        raise UsageError(f"cannot read --arrival '{text}'; use constant, poisson or gamma:K (e.g. gamma:0.5)")
    if m.group("k") is None:
        return m.group(1).lower(), None
    try:
        k = float(m.group("k"))
    except ValueError:
        k = math.nan
    if not (math.isfinite(k) and k > 0):
        raise UsageError(f"--arrival gamma:K needs a shape K above 0 (e.g. gamma:0.5), got '{m.group('k')}'")
    return "gamma", k


def _positive(name: str, value: object, *, zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or (float(value) < 0 if zero else float(value) <= 0):  # type: ignore[arg-type]
        bound = "at least 0" if zero else "above 0"
        raise UsageError(f"{name} must be a number {bound}, got {value!r}")


@dataclass
class LoadConfig:
    """A load run against ``url``; see the module docstring for the loop modes.

    ``body`` is a request template (JSON text with ``{{payload}}`` where each of
    ``payload_files`` goes, cycled) or ``@path`` to read it from a file.
    ``inputs`` are infermeter input specs (``x:float32[B,16]``) for the OIP
    protocols; without them the model's metadata says what to send.
    """

    url: str
    protocol: str = "http-json"
    model: str | None = None
    mode: str = "open"
    rate: float | None = None
    arrival: str = "poisson"
    trace: str | None = None
    concurrency: int | None = None
    think_s: float = 0.0
    duration_s: float = 10.0
    max_requests: int = 1_000_000
    timeout_s: float = 30.0
    connect_timeout_s: float = 3.0
    processes: int = 1
    seed: int = 0
    body: str | None = None
    payload_files: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    dims: dict[str, int] = field(default_factory=dict)
    batch: int = 1
    prompt: str = "Hello"
    max_tokens: int = 16
    warmup_s: float = 0.0
    outputs: list[str] = field(default_factory=list)  # OIP: only these outputs in the answer (default: all)
    connections: int | None = None  # cap on open connections (split over the processes); None: one per request in flight
    client: str = "auto"  # HTTP client: auto (the lean one for plain http:// where it applies) | lean | aiohttp
    repeat: float = 0.0  # share of requests that repeat an earlier request's body exactly (OIP): a cache's hit ratio

    def __post_init__(self) -> None:
        parts = urlsplit(str(self.url or ""))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"cannot use URL '{self.url}'; give an http:// or https:// address such as http://127.0.0.1:8000")
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"unknown --protocol '{self.protocol}'; use one of: {', '.join(PROTOCOLS)}")
        if self.mode not in MODES:
            raise UsageError(f"unknown mode '{self.mode}'; use open (--rate or --trace) or closed (--concurrency)")
        if self.mode == "open" and self.rate is None and self.trace is None and self.concurrency is not None:
            self.mode = "closed"  # --concurrency alone: a closed loop
        if self.mode == "open":
            if self.concurrency is not None:
                raise UsageError("give either --rate/--trace (open loop) or --concurrency (closed loop), not both")
            if (self.rate is None) == (self.trace is None):
                raise UsageError("an open loop needs exactly one of --rate R (requests/s) or --trace FILE; "
                                 "for a closed loop give --concurrency N")
            if self.rate is not None:
                _positive("--rate", self.rate)
            parse_arrival(self.arrival)
        else:
            if self.rate is not None or self.trace is not None:
                raise UsageError("a closed loop takes --concurrency N, not --rate or --trace; drop one of them")
            c = self.concurrency
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise UsageError(f"--concurrency must be a whole number of at least 1, got {c!r}")
        _positive("--think", self.think_s, zero=True)
        _positive("--duration", self.duration_s)
        _positive("--timeout", self.timeout_s)
        _positive("--connect-timeout", self.connect_timeout_s)
        _positive("--warmup", self.warmup_s, zero=True)
        for name, value, low in (("--max-requests", self.max_requests, 1), ("--processes", self.processes, 1),
                                 ("--batch", self.batch, 1), ("--max-tokens", self.max_tokens, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name} must be a whole number of at least {low}, got {value!r}")
        if self.processes > MAX_PROCESSES:
            raise UsageError(f"--processes {self.processes} is more than {MAX_PROCESSES}; use at most one per core")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be a whole number of at least 0, got {self.seed!r}")
        for name, value in self.dims.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"--dim {name}={value!r} must be a positive whole number, e.g. --dim seq=128")
        for spec in self.inputs:
            parse_input(spec)  # raises InputError with the syntax
        if self.inputs and not self.protocol.startswith("oip"):
            raise UsageError(f"--input describes tensors for --protocol oip or oip-binary, not {self.protocol}; "
                             "use --body or --payload for http-json")
        if self.payload_files and self.protocol != "http-json":
            raise UsageError(f"--payload files are for --protocol http-json, not {self.protocol}")
        if self.outputs and not self.protocol.startswith("oip"):
            raise UsageError(f"--output names OIP outputs, for --protocol oip or oip-binary, not {self.protocol}")
        c = self.connections
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < self.processes):
            raise UsageError(f"--connections must be a whole number of at least --processes ({self.processes}), got {c!r}")
        if self.client not in ("auto", "lean", "aiohttp"):
            raise UsageError(f"unknown --client '{self.client}'; use auto, lean or aiohttp")
        r = self.repeat
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0.0 <= float(r) < 1.0):
            raise UsageError(f"--repeat must be a share from 0 up to (not including) 1, e.g. 0.5, got {r!r}")
        if r > 0 and not self.protocol.startswith("oip"):
            raise UsageError(f"--repeat needs bodies infermeter generates (--protocol oip or oip-binary), not "
                             f"{self.protocol}; with http-json, list repeated --payload files instead")
        if self.body is not None and self.protocol != "http-json":
            raise UsageError(f"--body is for --protocol http-json, not {self.protocol}")

    @property
    def open_loop(self) -> bool:
        return self.mode == "open"
