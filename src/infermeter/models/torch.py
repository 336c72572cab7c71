"""PyTorch models: ``nn.Module`` objects, TorchScript files, ``torch.export`` programs
and the zoo.

Every call runs under ``torch.inference_mode()``. How a batch is passed (by name
or by position) is decided once per set of input names, from the model's
``forward`` signature, not by trying a call and catching the error.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailable, InputError, ModelLoadError, UsageError
from ..inputs import BATCH, InputSpec, canonical_dtype, parse_input
from . import parse_device, short_error
from .base import DeviceMemory, LoadOptions, Runner

try:
    import torch
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise BackendUnavailable(f"torch is not installed ({_exc}); pip install infermeter[torch]") from None

__all__ = ["TorchRunner", "load_torchscript", "load_exported", "load_zoo", "exported_inputs"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


# ---------------------------------------------------------------------------- loaders


def load_torchscript(path: Path, spec: str, options: LoadOptions) -> "TorchRunner":
    device = torch_device(options.device)
    try:
        with warnings.catch_warnings():  # "torch.jit.load is deprecated": the user's file is what it is
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            model = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise ModelLoadError(f"'{spec}' is not a TorchScript file torch {torch.__version__} can load: "
                             f"{short_error(exc)}{_checkpoint_hint(path)}") from None
    return TorchRunner(model, spec, options, path=path, fmt="torchscript")


def load_exported(path: Path, spec: str, options: LoadOptions) -> "TorchRunner":
    torch_device(options.device)  # fail on a missing device before reading the file
    how = "save one with torch.export.save(torch.export.export(model, args), 'model.pt2')"
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"'{spec}' is not a torch.export program: it is not a zip archive as .pt2 files are; {how}")
    # torch.export.load logs the real complaint with a traceback and raises a vaguer
    # one: catch the log record so that the user reads one line with the reason.
    records: list[logging.LogRecord] = []
    grab = _Grab(records)
    logger = logging.getLogger("torch.export")
    propagate, logger.propagate = logger.propagate, False
    handlers, logger.handlers = logger.handlers, [grab]
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        cause = next((r.exc_info[1] for r in records if r.exc_info and r.exc_info[1] is not None), exc)
        raise ModelLoadError(
            f"'{spec}' is not a torch.export program torch {torch.__version__} can load: {short_error(cause)}; {how}"
        ) from None
    finally:
        logger.handlers = handlers
        logger.propagate = propagate
    return TorchRunner.from_exported(program, spec, options, path=path)


def load_zoo(name: str, spec: str, options: LoadOptions) -> "TorchRunner":
    from . import zoo

    entry = zoo.get(name)
    torch_device(options.device)
    model = entry.build()
    return TorchRunner(
        model, spec, options, fmt="zoo", declared=entry.inputs, default_dims=entry.dims,
        extra={"zoo": entry.name, "zoo_description": entry.description},
    )


def torch_device(device: str | None) -> "torch.device":
    """The torch device for ``--device``; :class:`BackendUnavailable` when it is not here."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise BackendUnavailable(
            f"device '{device}' asked but torch {torch.__version__} ({build}) sees no usable CUDA GPU; "
            "use --device cpu, or install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise BackendUnavailable(f"device '{device}' asked but only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index if index is not None else torch.cuda.current_device())


def exported_inputs(program: Any) -> list[InputSpec]:
    """User inputs of an ``ExportedProgram``, read from its graph's placeholders.

    A symbol that is the leading dim of some input is the batch ``B`` everywhere;
    other symbols keep their names (``s27``) so that inputs sharing a dim share it.
    """
    user = set(program.graph_signature.user_inputs)
    vals = [(n.name, n.meta.get("val")) for n in program.graph.nodes if n.op == "placeholder" and n.name in user]
    batch = {str(v.shape[0]) for _, v in vals if isinstance(v, torch.Tensor) and v.dim() and not isinstance(v.shape[0], int)}
    specs = []
    for name, v in vals:
        if not isinstance(v, torch.Tensor):
            continue  # a non-tensor input (int, float) cannot be generated
        dims: list[int | str] = []
        for i, d in enumerate(v.shape):
            if isinstance(d, int):
                dims.append(d)
            elif str(d) in batch:
                dims.append(BATCH)
            elif re.fullmatch(r"[A-Za-z_]\w*", str(d)):
                dims.append(str(d))
            else:  # an expression such as 2*s0
                dims.append(f"{name}_dim{i}")
        specs.append(InputSpec(name, canonical_dtype(str(v.dtype)), tuple(dims)))
    return specs


# ---------------------------------------------------------------------------- the runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(
        self,
        model: Any,
        spec: str,
        options: LoadOptions,
        *,
        path: Path | None = None,
        fmt: str = "module",
        declared: Sequence[InputSpec] | None = None,
        default_dims: Mapping[str, int] | None = None,
        positional: "_Positional | None" = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self._path = path
        self._fmt = fmt
        self._options = options
        self._extra = dict(extra or {})
        self.default_dims: dict[str, int] = dict(default_dims or {})
        self._device = torch_device(options.device)
        self.device = str(self._device) if self._device.type == "cuda" else "cpu"
        want = _torch_dtype(options.dtype)
        if options.threads is not None and options.threads < 0:
            raise UsageError(f"threads must be a positive integer (0 or unset: the default), not {options.threads}")
        try:
            if fmt != "export":  # exported programs are traced in eval mode and refuse .eval()
                model.eval()
            if any(getattr(t, "device", None) != self._device for t in _tensors(model)):  # quantized tensor subclasses refuse a no-op move
                model.to(self._device)
            if want is not None:
                model.to(want)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot move '{spec}' to {self.device}"
                f"{' as ' + str(want).replace('torch.', '') if want is not None else ''}: {short_error(exc)}"
            ) from None
        self._model = model
        self._float_dtype = want or _float_dtype_of(model)
        self.dtype = str(self._float_dtype).replace("torch.", "") if self._float_dtype is not None else None
        self._declared = list(declared) if declared is not None else _declared_by(model)
        self._positional = positional
        self._signature = _Signature.of(model) if positional is None else None
        self._plans: dict[tuple[str, ...], tuple[list[str], list[str]]] = {}
        names = tuple(s.name for s in (self._declared or options.inputs))
        if names:
            self._plan(names)  # decide the calling convention now when the inputs are known
        self._threads_before: int | None = None
        if options.threads:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(int(options.threads))

    @classmethod
    def from_module(cls, module: Any, spec: str, options: LoadOptions) -> "TorchRunner":
        fmt = "torchscript" if isinstance(module, torch.jit.ScriptModule) else "module"
        return cls(module, spec, options, fmt=fmt)

    @classmethod
    def from_exported(cls, program: Any, spec: str, options: LoadOptions, path: Path | None = None) -> "TorchRunner":
        try:
            declared = exported_inputs(program)
            module = program.module()
        except Exception as exc:
            raise ModelLoadError(f"cannot unpack the torch.export program '{spec}': {short_error(exc)}") from None
        return cls(module, spec, options, path=path, fmt="export", declared=declared,
                   positional=_Positional.of(program))

    # ------------------------------------------------------------------ calling convention

    def _plan(self, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
        """(names passed by position, names passed by keyword), cached per name set."""
        plan = self._plans.get(names)
        if plan is None:
            if self._positional is not None:
                plan = self._positional.plan(names, self.spec)
            else:
                assert self._signature is not None
                plan = self._signature.plan(names, self.spec)
            self._plans[names] = plan
        return plan

    # ------------------------------------------------------------------ the Runner seam

    def inputs(self) -> list[InputSpec]:
        return list(self._declared)

    def prepare(self, batch: Mapping[str, np.ndarray]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        by_pos, by_kw = self._plan(tuple(batch))
        tensors = {name: self._tensor(np.asarray(arr)) for name, arr in batch.items()}
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)  # copies done before the timed call
        return tuple(tensors[n] for n in by_pos), {n: tensors[n] for n in by_kw}

    def _tensor(self, arr: np.ndarray) -> "torch.Tensor":
        if not arr.flags.c_contiguous or not arr.flags.writeable:
            arr = np.array(arr, order="C", copy=True)
        t = torch.from_numpy(arr)
        if t.is_floating_point() and self._float_dtype is not None and t.dtype != self._float_dtype:
            t = t.to(self._float_dtype)
        if self._device.type != "cpu":
            t = t.to(self._device, non_blocking=True)
        return t

    def __call__(self, prepared: Any) -> Any:
        args, kwargs = prepared
        with torch.inference_mode():
            return self._model(*args, **kwargs)

    def sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    def needs_sync(self) -> bool:
        return self._device.type == "cuda"

    def device_memory(self) -> DeviceMemory | None:
        return _CudaMemory(self._device) if self._device.type == "cuda" else None

    def event_factory(self) -> Any:
        if self._device.type != "cuda":
            return None
        return functools.partial(torch.cuda.Event, enable_timing=True)

    @property
    def model(self) -> Any:
        """The loaded module (eval mode, on the device, in the dtype)."""
        return self._model

    def describe(self) -> dict[str, Any]:
        params = sum(int(p.numel()) for p in self._model.parameters())
        details: dict[str, Any] = {
            "format": self._fmt,
            "torch_version": torch.__version__,
            "threads_requested": self._options.threads if self._options.threads else "default",
            "threads_effective": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "dtype_requested": self._options.dtype,
        }
        if self.default_dims:
            details["default_dims"] = dict(self.default_dims)
        if self._plans:
            by_pos, by_kw = next(iter(self._plans.values()))
            details["call"] = "keyword" if by_kw and not by_pos else "positional" if not by_kw else "mixed"
        if self._device.type == "cuda":
            details["device_name"] = torch.cuda.get_device_name(self._device)
            details["cuda_version"] = torch.version.cuda
            details["cudnn_version"] = torch.backends.cudnn.version()
        details.update(self._extra)
        return {
            "spec": self.spec,
            "backend": self.backend,
            "device": self.device,
            "dtype": self.dtype,
            "params": params,
            "file_size_bytes": self._path.stat().st_size if self._path is not None else None,
            "details": details,
        }

    def close(self) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        self._model = None
        self._plans.clear()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()


class _CudaMemory(DeviceMemory):
    accounting = "torch.cuda.max_memory_allocated (caching allocator; excludes the CUDA context and non-torch allocations)"

    def __init__(self, device: "torch.device") -> None:
        self._device = device

    def reset_peak(self) -> None:
        torch.cuda.synchronize(self._device)
        torch.cuda.reset_peak_memory_stats(self._device)

    def peak_bytes(self) -> int:
        return int(torch.cuda.max_memory_allocated(self._device))


# ---------------------------------------------------------------------------- signatures


class _Signature:
    """What ``forward`` accepts: named parameters, and whether ``*args``/``**kwargs``."""

    def __init__(self, params: list[tuple[str, bool, bool, bool]] | None, var_pos: bool, var_kw: bool) -> None:
        # (name, positional?, keyword?, required?)
        self.params = params
        self.var_pos = var_pos
        self.var_kw = var_kw

    @classmethod
    def of(cls, model: Any) -> "_Signature":
        schema = getattr(getattr(model, "forward", None), "schema", None)
        if schema is not None:  # TorchScript: the compiled schema, first argument is self
            params = [
                (a.name, not a.kwarg_only, True, not a.has_default_value()) for a in list(schema.arguments)[1:]
            ]
            return cls(params, False, False)
        try:
            sig = inspect.signature(model.forward)
        except (TypeError, ValueError, AttributeError):
            return cls(None, True, False)
        params = []
        var_pos = var_kw = False
        for p in sig.parameters.values():
            if p.kind is p.VAR_POSITIONAL:
                var_pos = True
            elif p.kind is p.VAR_KEYWORD:
                var_kw = True
            else:
                params.append((
                    p.name,
                    p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD),
                    p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY),
                    p.default is p.empty,
                ))
        return cls(params, var_pos, var_kw)

    def plan(self, names: tuple[str, ...], spec: str) -> tuple[list[str], list[str]]:
        if self.params is None:
            return list(names), []
        keyword = {n for n, _, kw, _ in self.params if kw}
        positional_only = {n for n, pos, kw, _ in self.params if pos and not kw}
        required = [n for n, _, _, req in self.params if req]
        by_name = all(n in keyword or (self.var_kw and n not in positional_only) for n in names)
        if by_name and all(n in names for n in required):
            return [], list(names)
        positional = [n for n, pos, _, _ in self.params if pos]
        required_pos = [n for n, pos, _, req in self.params if pos and req]
        if len(required) == len(required_pos) and len(required_pos) <= len(names) and (
            self.var_pos or len(names) <= len(positional)
        ):
            return list(names), []
        raise InputError(
            f"forward{self._text()} of '{spec}' does not take the inputs {', '.join(names)}; "
            "name the inputs after its parameters with --input NAME:DTYPE[DIMS]"
        )

    def _text(self) -> str:
        parts = [n + ("" if req else "=…") for n, _, _, req in self.params or ()]
        if self.var_pos:
            parts.append("*args")
        if self.var_kw:
            parts.append("**kwargs")
        return f"({', '.join(parts)})"


class _Positional:
    """How an exported program is called: its traced args by position, its traced
    kwargs by name (``ExportedProgram.module()`` checks the call against both)."""

    def __init__(self, args: list[str], kwargs: list[str]) -> None:
        self.args = args
        self.kwargs = kwargs

    @classmethod
    def of(cls, program: Any) -> "_Positional":
        names = list(program.graph_signature.user_inputs)
        try:
            spec = program.call_spec.in_spec
            children = spec.children() if callable(getattr(spec, "children", None)) else spec.children_specs
            args_spec, kwargs_spec = children
            keys = list(kwargs_spec.context or [])
            if args_spec.num_leaves == args_spec.num_children and args_spec.num_children + len(keys) == len(names):
                return cls(names[: args_spec.num_children], keys)
        except Exception:
            pass
        return cls(names, [])

    def plan(self, names: tuple[str, ...], spec: str) -> tuple[list[str], list[str]]:
        want = self.args + self.kwargs
        if set(names) == set(want):
            return list(self.args), list(self.kwargs)
        if not self.kwargs and len(names) == len(self.args):
            return list(names), []
        raise InputError(
            f"the exported program '{spec}' takes {', '.join(want)} but the batch has {', '.join(names)}; "
            "give inputs with those names"
        )


# ---------------------------------------------------------------------------- helpers


def _tensors(model: Any) -> list[Any]:
    try:
        return list(model.parameters()) + list(model.buffers())
    except Exception:  # not an nn.Module (a plain callable): let .to() decide
        return [None]


def _torch_dtype(dtype: str | None) -> "torch.dtype | None":
    if dtype is None:
        return None
    name = canonical_dtype(dtype)
    if name not in _DTYPES:
        raise UsageError(f"dtype '{dtype}' is not a float dtype a torch model can be cast to; use one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _float_dtype_of(model: Any) -> "torch.dtype | None":
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def _declared_by(model: Any) -> list[InputSpec]:
    declared = getattr(model, "infermeter_inputs", None)
    if not declared:
        return []
    return [s if isinstance(s, InputSpec) else parse_input(str(s)) for s in declared]


class _Grab(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _checkpoint_hint(path: Path) -> str:
    """Why a zip that torch.save wrote is not TorchScript, and what to save instead."""
    try:
        if not zipfile.is_zipfile(path):
            return ""
        names = zipfile.ZipFile(path).namelist()
    except Exception:
        return ""
    if any(n.endswith("/data.pkl") for n in names) and not any("/code/" in n for n in names):
        return (
            "; it looks like a torch.save checkpoint (weights or a pickled module), which cannot be run without its "
            "code: save torch.jit.script(model) with torch.jit.save, or torch.export a .pt2, or give module:attr"
        )
    return ""
