"""The Open Inference Protocol (KServe v2) on the wire: tensors in and out.

Requests come as JSON (``"data"`` a flat, row-major list) or with the binary
tensor extension: a JSON header of ``Inference-Header-Content-Length`` bytes,
then the raw little-endian bytes of each input that says
``"parameters": {"binary_data_size": n}``, in the order the inputs are listed.
Answers are JSON unless the request asks for binary outputs (the request-level
``"binary_data_output": true`` or an output's ``"binary_data": true``).

Validation against the model's :class:`~infermeter.inputs.InputSpec` happens
here too, so the server answers 400 with a reason before anything is queued.
Everything raises :class:`OipError` carrying the HTTP status to answer with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..inputs import BATCH, InputSpec, numpy_dtype

__all__ = [
    "OipError", "Decoded", "DATATYPES", "oip_datatype", "datatype_numpy", "spec_metadata",
    "decode_request", "validate", "encode_response", "HEADER_LENGTH",
]

HEADER_LENGTH = "Inference-Header-Content-Length"

#: OIP datatype name → numpy dtype (BYTES and BF16 are not served: numpy has no such dtype).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype("uint8"), "UINT16": np.dtype("uint16"), "UINT32": np.dtype("uint32"), "UINT64": np.dtype("uint64"),
    "INT8": np.dtype("int8"), "INT16": np.dtype("int16"), "INT32": np.dtype("int32"), "INT64": np.dtype("int64"),
    "FP16": np.dtype("float16"), "FP32": np.dtype("float32"), "FP64": np.dtype("float64"),
}
_BY_NUMPY = {dt: name for name, dt in DATATYPES.items()}


class OipError(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
        self.status = status


def oip_datatype(dtype: np.dtype | str) -> str:
    """The OIP name of a numpy dtype or an infermeter dtype name (bfloat16 is served as FP32)."""
    dt = numpy_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    if dt not in _BY_NUMPY:
        raise OipError(500, f"dtype {dt} has no Open Inference Protocol datatype")
    return _BY_NUMPY[dt]


def datatype_numpy(name: str) -> np.dtype:
    dt = DATATYPES.get(str(name).upper())
    if dt is None:
        raise OipError(400, f"datatype '{name}' is not served; use one of {', '.join(DATATYPES)}")
    return dt


def spec_metadata(spec: InputSpec, dims: Mapping[str, int]) -> dict[str, Any]:
    """``{"name", "datatype", "shape"}`` with -1 for each dim a request may choose."""
    shape = [d if isinstance(d, int) else int(dims[d]) if d in dims else -1 for d in spec.shape]
    return {"name": spec.name, "datatype": oip_datatype(spec.dtype), "shape": shape}


@dataclass
class Decoded:
    """A parsed infer request: arrays by input name, and how to answer."""

    inputs: dict[str, np.ndarray]
    request_id: str | None = None
    outputs: list[str] | None = None  # None: every output
    binary_outputs: set[str] | bool = False  # True: all of them
    parameters: dict[str, Any] = field(default_factory=dict)


def decode_request(body: bytes, header_length: str | None) -> Decoded:
    """Parse an infer request body (JSON, or JSON + binary tensors)."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise OipError(400, f"{HEADER_LENGTH} '{header_length}' is not an integer") from None
        if not 0 < n <= len(body):
            raise OipError(400, f"{HEADER_LENGTH} {n} does not fit a body of {len(body)} bytes")
        head, tail = body[:n], memoryview(body)[n:]
    else:
        head, tail = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OipError(400, f"request is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise OipError(400, 'request must be a JSON object with a non-empty "inputs" list')
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(doc["inputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise OipError(400, f'input {i} must be an object with a "name"')
        name = item["name"]
        if name in arrays:
            raise OipError(400, f"input '{name}' is given twice")
        shape = item.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise OipError(400, f"input '{name}' needs a \"shape\" list of non-negative integers, got {shape!r}")
        dt = datatype_numpy(item.get("datatype", ""))
        count = int(np.prod(shape, dtype=np.int64))
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if header_length is None:
                raise OipError(400, f"input '{name}' has binary_data_size but the request has no {HEADER_LENGTH} header")
            if not isinstance(size, int) or size != count * dt.itemsize:
                raise OipError(400, f"input '{name}' has binary_data_size {size!r} but shape {shape} of {item['datatype']} "
                                    f"needs {count * dt.itemsize} bytes")
            if offset + size > len(tail):
                raise OipError(400, f"binary data for input '{name}' runs past the end of the body")
            arr = np.frombuffer(tail[offset:offset + size], dtype=dt.newbyteorder("<")).astype(dt, copy=False)
            offset += size
        else:
            if "data" not in item:
                raise OipError(400, f"input '{name}' has neither \"data\" nor binary_data_size")
            try:
                arr = np.asarray(item["data"], dtype=dt).reshape(-1)
            except (TypeError, ValueError) as exc:
                raise OipError(400, f"data of input '{name}' is not {item['datatype']}: {exc}") from None
            if arr.size != count:
                raise OipError(400, f"input '{name}' has {arr.size} values but shape {shape} holds {count}")
        arrays[name] = arr.reshape(shape)
    if offset != len(tail):
        raise OipError(400, f"{len(tail) - offset} bytes of binary data are left over after the inputs")
    wanted, binary = _requested_outputs(doc)
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    rid = doc.get("id")
    return Decoded(arrays, str(rid) if rid is not None else None, wanted, binary, dict(params))


def _requested_outputs(doc: dict[str, Any]) -> tuple[list[str] | None, set[str] | bool]:
    params = doc.get("parameters") if isinstance(doc.get("parameters"), dict) else {}
    binary_all = bool(params.get("binary_data_output", False))
    outs = doc.get("outputs")
    if outs is None:
        return None, binary_all
    if not isinstance(outs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs):
        raise OipError(400, '"outputs" must be a list of objects with a "name"')
    binary = {o["name"] for o in outs if isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data")}
    return [o["name"] for o in outs], (True if binary_all else binary)


def validate(arrays: Mapping[str, np.ndarray], specs: Sequence[InputSpec], pinned: Mapping[str, int]) -> int:
    """Check ``arrays`` against the model's inputs; return the rows (the batch dim B).

    Symbolic dims must agree across inputs (``seq`` of input_ids and attention_mask)
    and equal ``pinned`` where it sets them. Rows are 1 for a model without a batch dim.
    """
    by_name = {s.name: s for s in specs}
    unknown = [n for n in arrays if n not in by_name]
    if unknown:
        raise OipError(400, f"unknown input '{unknown[0]}'; the model takes {_texts(specs, pinned)}")
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise OipError(400, f"missing input '{missing[0]}'; the model takes {_texts(specs, pinned)}")
    seen: dict[str, tuple[int, str]] = {}
    for s in specs:
        arr = arrays[s.name]
        want = numpy_dtype(s.dtype)
        if arr.dtype != want:
            raise OipError(400, f"input '{s.name}' has datatype {oip_datatype(arr.dtype)} but the model takes "
                                f"{oip_datatype(want)} ({_text(s, pinned)})")
        if arr.ndim != len(s.shape):
            raise OipError(400, f"input '{s.name}' has shape {list(arr.shape)} (rank {arr.ndim}) but the model takes "
                                f"rank {len(s.shape)} ({_text(s, pinned)})")
        for axis, (got, d) in enumerate(zip(arr.shape, s.shape)):
            if isinstance(d, int) or d in pinned:
                expect = d if isinstance(d, int) else int(pinned[d])
                if got != expect:
                    raise OipError(400, f"input '{s.name}' has shape {list(arr.shape)} but the model takes "
                                        f"{_text(s, pinned)} (dim {axis} must be {expect})")
                continue
            if d in seen and seen[d][0] != got:
                raise OipError(400, f"input '{s.name}' has shape {list(arr.shape)}: dim {d}={got} disagrees with "
                                    f"{d}={seen[d][0]} of input '{seen[d][1]}'")
            seen.setdefault(d, (got, s.name))
    rows = seen.get(BATCH, (1, ""))[0]
    if rows == 0:
        raise OipError(400, "the request has 0 rows (batch dim B is 0)")
    return rows


def _text(s: InputSpec, pinned: Mapping[str, int]) -> str:
    dims = [str(pinned[d]) if isinstance(d, str) and d in pinned else str(d) for d in s.shape]
    return f"{s.name}:{oip_datatype(s.dtype)}[{','.join(dims)}]"


def _texts(specs: Sequence[InputSpec], pinned: Mapping[str, int]) -> str:
    return ", ".join(_text(s, pinned) for s in specs)


def encode_response(model: str, names: Sequence[str], outputs: Sequence[np.ndarray], decoded: Decoded
                    ) -> tuple[bytes, dict[str, str]]:
    """The answer's body and extra headers (the binary header length, the content type)."""
    if decoded.outputs is not None:
        index = {n: i for i, n in enumerate(names)}
        unknown = [n for n in decoded.outputs if n not in index]
        if unknown:
            raise OipError(400, f"unknown output '{unknown[0]}'; the model gives {', '.join(names)}")
        chosen = [(n, outputs[index[n]]) for n in decoded.outputs]
    else:
        chosen = list(zip(names, outputs))
    doc: dict[str, Any] = {"model_name": model}
    if decoded.request_id is not None:
        doc["id"] = decoded.request_id
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, arr in chosen:
        arr = np.asarray(arr)
        entry: dict[str, Any] = {"name": name, "datatype": oip_datatype(arr.dtype), "shape": list(arr.shape)}
        if decoded.binary_outputs is True or (isinstance(decoded.binary_outputs, set) and name in decoded.binary_outputs):
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        tensors.append(entry)
    doc["outputs"] = tensors
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream", HEADER_LENGTH.lower(): str(len(head))}
