"""From what the user typed (a spec) to a :class:`Runner`.

A spec is a file (``model.onnx``, ``model.pt``, ``model.pt2``), an import path
(``pkg.mod:attr``), a zoo name (``zoo:bert-mini``) or a Python object. Backends
are imported only when a spec needs them: resolving ``model.onnx`` never imports
torch, and checking whether an object is an ``nn.Module`` looks in
``sys.modules`` instead of importing torch.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import InputError, ModelLoadError, SpecError, UsageError
from ..inputs import INPUT_SYNTAX, InputSpec, merge_specs
from .base import DeviceMemory, LoadOptions, Runner

if TYPE_CHECKING:  # pragma: no cover
    from .zoo import ZooEntry

__all__ = [
    "load_model",
    "list_zoo",
    "require_inputs",
    "BACKENDS",
    "SUFFIXES",
    "import_backend",
    "Runner",
    "LoadOptions",
    "DeviceMemory",
]
# ``ZooEntry`` is importable from here too, but left out of ``__all__``: it lives
# with the zoo, which imports torch, and ``import *`` must not.

#: Backend names as runners report them in ``describe()["backend"]``.
BACKENDS: tuple[str, ...] = ("onnxruntime", "torch", "python")

#: File suffix → loader. TorchScript files come under many names.
SUFFIXES: dict[str, str] = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".jit": "torchscript",
    ".pt2": "export",
}

_IMPORT_PATH = re.compile(r"^(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_SUPPORTED = (
    "a model file (.onnx; TorchScript .pt/.pth/.ts/.torchscript/.jit; torch.export .pt2), "
    "an import path module:attr, or zoo:NAME"
)


def load_model(spec: str | os.PathLike[str] | object, options: LoadOptions = LoadOptions()) -> Runner:
    """Resolve ``spec`` and load it with ``options``. A :class:`Runner` is returned as is."""
    if isinstance(spec, Runner):
        return spec
    if isinstance(spec, os.PathLike):
        return _load_path(Path(spec), os.fspath(spec), options)
    if isinstance(spec, str):
        return _load_text(spec, options)
    return _load_object(spec, _object_name(spec), options)


def import_backend(spec: object) -> str | None:
    """Import the backend library ``spec`` will need, and name it (None if none or unknown).

    ``bench`` times this apart from the model load: importing torch takes a
    second or more and is paid once per process, not once per model.
    A missing library is left for :func:`load_model` to report.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return None
    text = os.fspath(spec)
    kind = "torch" if text.startswith("zoo:") else SUFFIXES.get(Path(text).suffix.lower())
    module = {"onnx": "onnxruntime", "torchscript": "torch", "export": "torch", "torch": "torch"}.get(kind or "")
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except Exception:
        return None
    return module


def list_zoo() -> list[ZooEntry]:
    """The built-in models (random weights, built in code; nothing is downloaded)."""
    from . import zoo

    return zoo.entries()


def require_inputs(runner: Runner, user_specs: Sequence[InputSpec]) -> list[InputSpec]:
    """The inputs to feed ``runner``: its own merged with the user's ``--input`` specs.

    Raises :class:`InputError` when neither the model nor the user says what they are.
    """
    specs = merge_specs(runner.inputs(), list(user_specs))
    if not specs:
        name = runner.spec or runner.backend
        raise InputError(f"cannot tell the inputs of '{name}'; describe them with {INPUT_SYNTAX}")
    return specs


def __getattr__(name: str) -> Any:
    # ZooEntry lives with the zoo, which imports torch: load it only when asked.
    if name == "ZooEntry":
        from .zoo import ZooEntry

        return ZooEntry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- helpers shared by backends


def parse_device(device: str | None) -> tuple[str, int | None]:
    """``"cpu"`` → ("cpu", None); ``"cuda"`` → ("cuda", None); ``"cuda:1"`` → ("cuda", 1)."""
    text = (device or "cpu").strip().lower()
    m = re.fullmatch(r"(cpu|cuda)(?::(\d+))?", text)
    if not m or (m.group(1) == "cpu" and m.group(2) is not None):
        raise UsageError(f"unknown device '{device}'; use cpu, cuda or cuda:N")
    return m.group(1), int(m.group(2)) if m.group(2) is not None else None


def short_error(exc: BaseException, limit: int = 200) -> str:
    """The first meaningful line of a backend's complaint, cut to ``limit`` characters."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*", "", text)
    text = re.sub(r"\s*\(Could this error message be improved\?.*?\)", "", text)
    if len(text) > limit:
        cut = text.find(". ", 20)
        text = text[: cut + 1] if 0 < cut < limit else text[: limit - 1] + "…"
    return text.rstrip(" .;:") or type(exc).__name__


def torch_module_type() -> type | None:
    """``torch.nn.Module`` if torch is already imported, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None) if torch is not None else None
    return getattr(nn, "Module", None)


# --------------------------------------------------------------------------- resolution


def _load_text(text: str, options: LoadOptions) -> Runner:
    spec = text.strip()
    if not spec:
        raise SpecError(f"empty model spec; give {_SUPPORTED}")
    if spec.lower().startswith("zoo:"):
        from . import torch as backend

        return backend.load_zoo(spec[4:].strip(), spec, options)
    if re.match(r"^[a-z][a-z0-9+.-]*://", spec, re.I):
        raise SpecError(
            f"'{spec}' is a URL; `infermeter bench` loads local models ({_SUPPORTED}); "
            "drive a remote endpoint with `infermeter load`"
        )
    path = Path(spec).expanduser()
    m = _IMPORT_PATH.match(spec)
    if m and not path.exists():
        return _load_import(m.group("module"), m.group("attr"), spec, options)
    return _load_path(path, spec, options)


def _load_path(path: Path, spec: str, options: LoadOptions) -> Runner:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        if path.is_dir():
            raise SpecError(f"'{spec}' is a directory, not a model; give {_SUPPORTED}")
        if path.exists():
            raise SpecError(f"'{spec}' has suffix '{path.suffix}' that infermeter cannot load; give {_SUPPORTED}")
        raise SpecError(f"'{spec}' is not a file, an import path or a zoo name; give {_SUPPORTED}")
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "does not exist"
        raise SpecError(f"model file '{spec}' {where}; check the path (relative paths start at {os.getcwd()})")
    if kind == "onnx":
        from . import onnx as backend

        return backend.OnnxRunner.from_file(path, spec, options)
    from . import torch as backend_torch

    if kind == "torchscript":
        return backend_torch.load_torchscript(path, spec, options)
    return backend_torch.load_exported(path, spec, options)


def _load_import(module: str, attr: str, spec: str, options: LoadOptions) -> Runner:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # What `python -m` does: modules in the working directory resolve.
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module == missing or module.startswith(missing + ".")):
            raise SpecError(
                f"module '{module}' of '{spec}' not found (searched sys.path from {cwd}); "
                "check the spelling, run from the directory that holds it, or pip install it"
            ) from None
        raise ModelLoadError(f"importing module '{module}' of '{spec}' failed: {short_error(exc)}") from None
    except Exception as exc:
        raise ModelLoadError(
            f"importing module '{module}' of '{spec}' failed: {type(exc).__name__}: {short_error(exc)}"
        ) from None
    obj: Any = mod
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = module if i == 0 else f"{module}:{'.'.join(attr.split('.')[:i])}"
            public = sorted(n for n in dir(obj) if not n.startswith("_"))
            hint = f"; it has: {', '.join(public[:12])}{' …' if len(public) > 12 else ''}" if public else ""
            raise SpecError(f"module '{module}' was found but '{where}' has no attribute '{part}'{hint}")
        obj = getattr(obj, part)
    return _load_object(obj, spec, options)


def _load_object(obj: Any, spec: str, options: LoadOptions, *, factory_of: str | None = None) -> Runner:
    if isinstance(obj, Runner):
        return obj
    module_type = torch_module_type()
    if module_type is not None and isinstance(obj, module_type):
        from . import torch as backend

        return backend.TorchRunner.from_module(obj, spec, options)
    if _is_exported_program(obj):
        from . import torch as backend

        return backend.TorchRunner.from_exported(obj, spec, options)
    if not callable(obj):
        what = f"'{factory_of}' returned" if factory_of else f"'{spec}' is"
        raise SpecError(
            f"{what} an object of type {type(obj).__name__}, not a model; point to an nn.Module, a callable taking the inputs, "
            "or a zero-argument factory returning one"
        )
    if factory_of is None and isinstance(obj, type) and not _is_factory(obj):
        raise SpecError(
            f"'{spec}' is a class whose constructor needs arguments {_signature(obj)}; "
            "point to an instance or a zero-argument factory that builds one"
        )
    if factory_of is None and _is_factory(obj):
        try:
            made = obj()
        except Exception as exc:
            raise ModelLoadError(
                f"calling '{spec}' (a zero-argument factory) failed: {type(exc).__name__}: {short_error(exc)}"
            ) from None
        return _load_object(made, spec, options, factory_of=spec)
    from . import python as backend

    return backend.PythonRunner(obj, spec, options)


def _is_factory(obj: Callable[..., Any]) -> bool:
    """A callable nothing has to be passed to: a class with a no-argument
    constructor, or a function whose parameters all have defaults. Callables with
    ``*args``/``**kwargs`` take the inputs and are models, not factories."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return isinstance(obj, type)  # class Net(nn.Module): def __init__(self, *a, **k)
        if p.default is p.empty:
            return False
    return True


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(?)"


def _is_exported_program(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    export = getattr(torch, "export", None) if torch is not None else None
    cls = getattr(export, "ExportedProgram", None)
    return cls is not None and isinstance(obj, cls)


def _object_name(obj: Any) -> str:
    target = obj if (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)) else type(obj)
    mod = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or type(obj).__name__
    return f"{mod}:{name}"

