"""What goes over the wire, and whether what came back is a valid answer.

One protocol = how to build the request bodies (:func:`prepare_target`, once,
before the run) and how to judge a response (:func:`classify`, or
:func:`read_sse` for streams). The engine only sends prepared bytes and
records times; it knows no protocol.

* ``oip`` / ``oip-binary``: the Open Inference Protocol (KServe v2):
  ``POST {base}/v2/models/{model}/infer`` with ``{"inputs": [{name, shape,
  datatype, data}]}``; the binary tensor extension sends the JSON header
  (``binary_data_size`` per input) followed by the raw little-endian bytes, its
  length in ``Inference-Header-Content-Length``. Without ``--input`` the model's
  metadata (``GET {base}/v2/models/{model}``) gives names, datatypes and shapes;
  ``-1`` dims become ``B`` (axis 0, the batch) or ``d{axis}`` (set with ``--dim d1=128``).
  A valid answer is JSON (or a binary-extension header) holding an ``outputs`` list.
* ``openai-completions`` / ``openai-chat``: ``/v1/completions`` and
  ``/v1/chat/completions`` with ``"stream": true``; the SSE ``data:`` lines are
  parsed as they arrive: a token is a chunk with non-empty content (text or
  ``delta.content``), so the first one gives time to first token and the gaps
  between them the inter-token latencies.
* ``http-json``: any JSON endpoint: the ``--body`` template (``{{payload}}``
  replaced by each ``--payload`` file in turn) or the payload files as bodies;
  a valid answer is any JSON document.

Bodies are built up front (a small seeded pool, cycled by request index) so
the timed path does no encoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from ..errors import InputError, UsageError
from ..inputs import InputSpec, make_batches, parse_input

__all__ = [
    "KINDS", "OK", "REFUSED", "TIMEOUT", "HTTP_4XX", "HTTP_5XX", "MALFORMED", "OTHER",
    "Target", "prepare_target", "classify", "read_sse", "status_kind",
    "OIP_DATATYPES", "specs_from_metadata", "oip_json_body", "oip_binary_body", "decode_oip_binary",
]

KINDS = ("ok", "refused", "timeout", "http-4xx", "http-5xx", "malformed", "other")
OK, REFUSED, TIMEOUT, HTTP_4XX, HTTP_5XX, MALFORMED, OTHER = range(len(KINDS))
BODY_POOL = 4
HEADER_LEN = "Inference-Header-Content-Length"

# OIP datatype <-> infermeter dtype. BYTES (strings) cannot be made from random data.
OIP_DATATYPES = {
    "BOOL": "bool", "UINT8": "uint8", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "BF16": "bfloat16", "FP32": "float32", "FP64": "float64",
}
_TO_OIP = {v: k for k, v in OIP_DATATYPES.items()}
_NP = {"BOOL": "bool", "UINT8": "u1", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
       "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


@dataclass
class Target:
    """Everything a worker needs to send requests; picklable (sent to spawned processes)."""

    protocol: str
    method: str
    url: str
    headers: dict[str, str]
    bodies: list[bytes | None]
    streaming: bool = False
    model: str | None = None
    inputs: list[str] = field(default_factory=list)  # the input specs sent (OIP)
    notes: list[str] = field(default_factory=list)
    order: np.ndarray | None = None  # request i sends bodies[order[i]] (--repeat); None: the bodies in turn

    def body_index(self, i: int) -> int:
        """Which of ``bodies`` request ``i`` sends."""
        if self.order is not None:
            return int(self.order[i % len(self.order)])
        return i % len(self.bodies)

    def body(self, i: int) -> bytes | None:
        return self.bodies[self.body_index(i)]


REPEAT_MAX_BODIES = 100_000  # distinct bodies --repeat may need (each is kept in memory)


def repeat_order(n: int, repeat: float, seed: int) -> np.ndarray:
    """Which body each of ``n`` requests sends so that a share ``repeat`` of them repeats an earlier one.

    Request ``i`` repeats with probability ``repeat`` (never the first); a repeat sends the body
    of a uniformly chosen earlier *distinct* body, any other request the next body never sent
    before. Seeded, so every run with the same seed sends the same sequence. Returns body
    indices; their maximum + 1 is the number of distinct bodies needed.
    """
    rng = np.random.default_rng([int(seed), 0x2E9EA7])
    again = rng.random(n) < repeat
    if n:
        again[0] = False
    fresh_so_far = np.cumsum(~again)  # distinct bodies sent up to and including request i
    order = fresh_so_far - 1
    pick = np.floor(rng.random(n) * fresh_so_far).astype(np.int64)
    order[again] = pick[again]
    return order.astype(np.int64)


# ---------------------------------------------------------------- URLs


def _oip_base(url: str, model: str | None) -> tuple[str, str]:
    """(base URL, model) from ``http://h:p`` + model, or a URL already under ``/v2/models/NAME``."""
    u = url.rstrip("/")
    marker = "/v2/models/"
    if marker in u:
        base, _, rest = u.partition(marker)
        name = rest.split("/")[0]
        return base, model or name
    if not model:
        raise UsageError("the OIP protocols need a model name; give --model NAME (or a URL ending in /v2/models/NAME)")
    return u, model


def _openai_url(url: str, chat: bool) -> tuple[str, str]:
    """(request URL, models URL) for a base URL, a ``/v1`` URL or a full ``/completions`` URL."""
    u = url.rstrip("/")
    path = urlsplit(u).path
    root = u[: len(u) - len(path)] if path else u
    if path.endswith("/completions"):
        v1 = path.rsplit("/v1/", 1)[0] + "/v1" if "/v1/" in path else ""
        return u, (root + v1 + "/models") if v1 else root + "/v1/models"
    v1 = u if path.endswith("/v1") else u + "/v1"
    return v1 + ("/chat/completions" if chat else "/completions"), v1 + "/models"


# ---------------------------------------------------------------- OIP bodies


def specs_from_metadata(meta: Mapping[str, Any]) -> list[InputSpec]:
    """Input specs from an OIP model-metadata document; ``-1`` dims become symbols
    (``B`` at axis 0, ``d{axis}`` elsewhere)."""
    out: list[InputSpec] = []
    items = meta.get("inputs") if isinstance(meta, Mapping) else None
    if not isinstance(items, list) or not items:
        raise InputError("the model's metadata lists no inputs; describe them with --input NAME:DTYPE[DIMS]")
    for item in items:
        try:
            name, dt, shape = str(item["name"]), str(item["datatype"]).upper(), list(item["shape"])
        except (KeyError, TypeError):
            raise InputError(f"cannot read input {item!r} in the model's metadata; describe the inputs with --input") from None
        if dt not in OIP_DATATYPES:
            raise InputError(f"input '{name}' is {dt} in the model's metadata, which infermeter cannot generate; "
                             "send payloads with --protocol http-json instead")
        dims: list[int | str] = []
        for axis, d in enumerate(shape):
            d = int(d)
            dims.append(d if d > 0 else ("B" if axis == 0 else f"d{axis}"))
        out.append(InputSpec(name, OIP_DATATYPES[dt], tuple(dims)))
    return out


def _wire(arr: np.ndarray, datatype: str) -> bytes:
    if datatype == "BF16":  # the upper half of each float32
        return (np.ascontiguousarray(arr, dtype="<f4").view("<u4") >> 16).astype("<u2").tobytes()
    return np.ascontiguousarray(arr, dtype=_NP[datatype]).tobytes()


def _outputs_asked(outputs: Sequence[str] | None, binary: bool) -> dict[str, Any]:
    """The request's ``outputs`` (only these names; None: every output) and, for binary
    requests, binary outputs too (the request-level ``binary_data_output``)."""
    doc: dict[str, Any] = {}
    if outputs:
        doc["outputs"] = [{"name": n} for n in outputs]
    if binary:
        doc["parameters"] = {"binary_data_output": True}
    return doc


def oip_json_body(batch: Mapping[str, np.ndarray], specs: list[InputSpec], outputs: Sequence[str] | None = None) -> bytes:
    inputs = []
    for s in specs:
        a = batch[s.name]
        data = a.astype(np.float64).ravel().tolist() if a.dtype.kind == "f" else a.ravel().tolist()
        inputs.append({"name": s.name, "shape": list(a.shape), "datatype": _TO_OIP[s.dtype], "data": data})
    return json.dumps({"inputs": inputs, **_outputs_asked(outputs, False)}, separators=(",", ":")).encode()


def oip_binary_body(batch: Mapping[str, np.ndarray], specs: list[InputSpec],
                    outputs: Sequence[str] | None = None) -> tuple[bytes, int]:
    """(body, JSON header length) in the binary tensor extension's layout; the answer's
    tensors are asked for in binary too."""
    header: dict[str, Any] = {"inputs": [], **_outputs_asked(outputs, True)}
    blobs = []
    for s in specs:
        dt = _TO_OIP[s.dtype]
        raw = _wire(batch[s.name], dt)
        blobs.append(raw)
        header["inputs"].append({"name": s.name, "shape": list(batch[s.name].shape), "datatype": dt,
                                 "parameters": {"binary_data_size": len(raw)}})
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(blobs), len(head)


def decode_oip_binary(body: bytes, header_len: int, key: str = "inputs") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a binary-extension document: (JSON header, {name: array}) for the tensors under ``key``
    that carry ``binary_data_size``. Raises ValueError when the layout does not add up."""
    header = json.loads(body[:header_len])
    pos, arrays = header_len, {}
    for t in header.get(key, []):
        size = (t.get("parameters") or {}).get("binary_data_size")
        if size is None:
            continue
        chunk = body[pos: pos + int(size)]
        if len(chunk) != int(size):
            raise ValueError(f"tensor '{t.get('name')}' claims {size} bytes but the body ends after {len(chunk)}")
        pos += int(size)
        dt = str(t["datatype"]).upper()
        if dt == "BF16":
            a = (np.frombuffer(chunk, "<u2").astype("<u4") << 16).view("<f4")
        else:
            a = np.frombuffer(chunk, _NP[dt])
        arrays[t["name"]] = a.reshape([int(d) for d in t["shape"]])
    if pos != len(body):
        raise ValueError(f"{len(body) - pos} bytes follow the last tensor")
    return header, arrays


# ---------------------------------------------------------------- preparing a target

GetJson = Callable[[str], Awaitable[tuple[int, Any]]]


async def prepare_target(cfg: Any, get_json: GetJson, n_requests: int | None = None) -> Target:
    """Build the request set for ``cfg`` (a LoadConfig). ``get_json(url)`` fetches a JSON
    document (OIP metadata, the OpenAI model list) and returns (status, parsed or None).
    ``n_requests`` (warm-up included) sizes the distinct bodies ``cfg.repeat`` needs."""
    headers = {"Content-Type": "application/json"}
    if cfg.protocol in ("oip", "oip-binary"):
        base, model = _oip_base(cfg.url, cfg.model)
        notes: list[str] = []
        if cfg.inputs:
            specs = [parse_input(s) for s in cfg.inputs]
        else:
            meta_url = f"{base}/v2/models/{model}"
            status, meta = await get_json(meta_url)
            if status != 200 or meta is None:
                raise UsageError(f"cannot read the metadata of model '{model}' (GET {meta_url} answered {status or 'no JSON'}); "
                                 "check --model, or describe the inputs with --input NAME:DTYPE[DIMS]")
            specs = specs_from_metadata(meta)
            notes.append("inputs from the model's metadata: " + ", ".join(s.text() for s in specs))
        order = None
        pool = BODY_POOL
        if cfg.repeat > 0:
            if n_requests is None:
                raise UsageError("--repeat needs the number of requests: give --rate/--trace, or --max-requests")
            order = repeat_order(n_requests, cfg.repeat, cfg.seed)
            pool = int(order.max()) + 1 if order.size else 1
            if pool > REPEAT_MAX_BODIES:
                raise UsageError(f"--repeat {cfg.repeat:g} over {n_requests:,} requests needs {pool:,} distinct bodies, more "
                                 f"than {REPEAT_MAX_BODIES:,}; lower --rate, --duration or --max-requests, or raise --repeat")
        batches, more = make_batches(specs, cfg.batch, cfg.dims, seed=cfg.seed, pool=pool)
        if order is not None and len(batches) < pool:
            raise UsageError(f"--repeat {cfg.repeat:g} needs {pool:,} distinct request bodies but only {len(batches):,} fit "
                             "in memory; lower --rate, --duration or --max-requests, or raise --repeat")
        bodies: list[bytes | None] = []
        if cfg.protocol == "oip":
            bodies = [oip_json_body(b, specs, cfg.outputs) for b in batches]
        else:
            encoded = [oip_binary_body(b, specs, cfg.outputs) for b in batches]
            lengths = {n for _, n in encoded}
            bodies = [b for b, _ in encoded]
            if len(lengths) != 1:  # same specs, same shapes: the header cannot differ in length
                raise UsageError("inputs of varying size cannot use --protocol oip-binary; use --protocol oip")
            headers = {"Content-Type": "application/octet-stream", HEADER_LEN: str(lengths.pop())}
        return Target(cfg.protocol, "POST", f"{base}/v2/models/{model}/infer", {**headers, **cfg.headers}, bodies,
                      model=model, inputs=[s.text() for s in specs], notes=notes + more, order=order)
    if cfg.protocol in ("openai-chat", "openai-completions"):
        chat = cfg.protocol == "openai-chat"
        url, models_url = _openai_url(cfg.url, chat)
        model = cfg.model
        if not model:
            status, doc = await get_json(models_url)
            try:
                model = str(doc["data"][0]["id"])
            except (KeyError, IndexError, TypeError):
                raise UsageError(f"cannot tell which model to ask (GET {models_url} answered {status or 'no JSON'}); "
                                 "give --model NAME") from None
        req: dict[str, Any] = {"model": model, "max_tokens": cfg.max_tokens, "stream": True}
        if chat:
            req["messages"] = [{"role": "user", "content": cfg.prompt}]
        else:
            req["prompt"] = cfg.prompt
        body = json.dumps(req).encode()
        return Target(cfg.protocol, "POST", url, {**headers, "Accept": "text/event-stream", **cfg.headers}, [body],
                      streaming=True, model=model)
    return Target("http-json", *_http_json(cfg, headers), model=cfg.model)


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} '{path}': {exc}; give a readable UTF-8 text file") from None


def _http_json(cfg: Any, headers: dict[str, str]) -> tuple[str, str, dict[str, str], list[bytes | None]]:
    template = cfg.body
    if template is not None and template.startswith("@"):
        template = _read_text(template[1:], "--body file")
    payloads = [_read_text(p, "--payload file") for p in cfg.payload_files]
    if template is None:
        texts: list[str | None] = list(payloads) if payloads else [None]
    elif "{{payload}}" in template:
        if not payloads:
            raise UsageError("the --body template has {{payload}} but no --payload file fills it; give --payload FILE")
        texts = [template.replace("{{payload}}", p) for p in payloads]
    else:
        if payloads:
            raise UsageError("--payload files need a {{payload}} placeholder in the --body template; add one or drop --body")
        texts = [template]
    method = "GET" if texts == [None] else "POST"
    hdrs = {**headers, **cfg.headers} if method == "POST" else dict(cfg.headers)
    return method, cfg.url, hdrs, [t.encode() if t is not None else None for t in texts]


# ---------------------------------------------------------------- judging responses


def status_kind(status: int) -> int:
    if 200 <= status < 300:
        return OK
    if 400 <= status < 500:
        return HTTP_4XX
    if status >= 500:
        return HTTP_5XX
    return OTHER


def classify(protocol: str, status: int, headers: Mapping[str, str], body: bytes) -> int:
    """The kind of a complete (non-streamed) response: OK, an HTTP error, or MALFORMED."""
    kind = status_kind(status)
    if kind != OK:
        return kind
    try:
        if protocol.startswith("oip"):
            hl = headers.get(HEADER_LEN)
            doc = decode_oip_binary(body, int(hl), "outputs")[0] if hl is not None else json.loads(body)
            outs = doc.get("outputs") if isinstance(doc, dict) else None
            return OK if isinstance(outs, list) else MALFORMED
        json.loads(body)
        return OK
    except (ValueError, TypeError, KeyError):
        return MALFORMED


def _chunk_text(doc: Any, chat: bool) -> str | None:
    """The content of one stream chunk ('' when it carries none); None when it is not a completion chunk."""
    if not isinstance(doc, dict):
        return None
    choices = doc.get("choices")
    if not isinstance(choices, list):
        return None
    if not choices:  # usage-only chunks
        return ""
    c = choices[0]
    if not isinstance(c, dict):
        return None
    if chat:
        delta = c.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
    else:
        text = c.get("text")
    return text if isinstance(text, str) else ""


async def read_sse(content: Any, chat: bool, now: Callable[[], float], token_times: list[float]) -> int:
    """Read an OpenAI-style SSE stream (``content``: aiohttp's StreamReader, iterated by line),
    appending the arrival time of each token chunk to ``token_times``. Returns OK, or MALFORMED
    when a line is not SSE, a ``data:`` payload is not a completion chunk, or no chunk came."""
    chunks = 0
    async for raw in content:
        line = raw.strip()
        if not line or line.startswith(b":"):
            continue
        if not line.startswith(b"data:"):
            if line.split(b":", 1)[0] in (b"event", b"id", b"retry"):
                continue
            return MALFORMED
        payload = line[5:].strip()
        if payload == b"[DONE]":
            break
        try:
            text = _chunk_text(json.loads(payload), chat)
        except ValueError:
            return MALFORMED
        if text is None:
            return MALFORMED
        chunks += 1
        if text:
            token_times.append(now())
    return OK if chunks else MALFORMED

