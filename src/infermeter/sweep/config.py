"""A sweep's configuration: the YAML file (or ``--grid``), validated, with errors that name their line.

::

    id: bert-batch                 # optional resume key; default: derived from what is measured
    model: zoo:bert-mini           # or an axis: axes: {model: [a.onnx, b.onnx]}
    inputs: ["x:float32[B,16]"]    # optional, as --input takes them
    settings: {max_time_s: 5, precision: 0.02}   # any other bench() keyword, fixed for every point
    axes:
      batch: [1, 8, 32]            # or {range: [1, 64], scale: log2}
      dims.seq: [64, 128]
      threads: [1, 2]
    processes: 1                   # fresh processes per point, merged (--processes)
    parallel: 1                    # points at once with the local executor (--parallel)
    point_timeout_s: 600           # a point still running after this is killed and recorded as failed
    executor: local                # or ray
    ray: {address: null, num_cpus: 1, num_gpus: null}
    tags: {team: search}

Points are the Cartesian product of the axes, in the order the file lists them.
The sweep id (resume key) is ``id`` or, when absent, ``sw-`` and 10 hex digits of a
hash of model, inputs, settings, axis values, processes and tags; executor,
parallel, timeouts and Ray settings say *how* to run and are not part of it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import UsageError
from .axes import ConfigProblem, axis_values, check_setting_name, point_kwargs

__all__ = ["SweepConfig", "RayConfig", "Point", "SweepConfigError", "load_config", "config_from_dict"]


class SweepConfigError(UsageError):
    """A sweep file or ``--grid`` that cannot be run: not YAML, unknown key or axis, bad value. Exit 2."""


class RayConfig(BaseModel):
    """How the ``ray`` executor places each point: one Ray task with these resources."""

    model_config = ConfigDict(extra="forbid")

    address: Optional[str] = Field(None, description="Ray cluster to join ('auto', 'ray://host:10001'); None: a local instance")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each point's task reserves")
    num_gpus: Optional[float] = Field(None, ge=0, description="GPUs each task reserves; None: 1 for a cuda device, else 0")
    memory: Optional[int] = Field(None, ge=0, description="bytes of memory each task reserves (Ray's memory resource)")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources each task reserves")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$", description="resume key")
    model: Optional[str] = Field(None, min_length=1)
    inputs: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, Any] = Field(default_factory=dict)
    processes: int = Field(1, ge=1, le=1000)
    parallel: int = Field(1, ge=1, le=1024)
    point_timeout_s: Optional[float] = Field(600.0, gt=0)
    executor: Literal["local", "ray"] = "local"
    ray: RayConfig = Field(default_factory=RayConfig)
    tags: dict[str, str] = Field(default_factory=dict)

    _values: dict[str, list[Any]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        for name in self.settings:
            check_setting_name(str(name), ("settings", name))
        if self.inputs and "inputs" in self.settings:
            raise ConfigProblem(("settings", "inputs"), "inputs are given twice: at the top level and in settings; keep one")
        self._values = {str(name): axis_values(str(name), raw, ("axes", name)) for name, raw in self.axes.items()}
        models = self._values.get("model") or ([self.model] if self.model else [])
        if not models:
            raise ConfigProblem(("model",), "no model: set 'model: SPEC' or list models under axes.model")
        if self.model and "model" in self._values:
            raise ConfigProblem(("axes", "model"), "the model is given twice: at the top level and as an axis; keep one")
        if "backend" in self._values:
            other = [m for m in models if not str(m).lower().endswith(".onnx")]
            if other:
                raise ConfigProblem(
                    ("axes", "backend"),
                    f"axis 'backend' picks the ONNX Runtime execution provider and needs .onnx models; '{other[0]}' is not one",
                )
        longest = max([v for v in [self.settings.get("max_time_s"), *self._values.get("settings.max_time_s", [])]
                       if isinstance(v, (int, float)) and not isinstance(v, bool)], default=None)
        if self.point_timeout_s is not None and longest is not None and longest >= self.point_timeout_s:
            raise ConfigProblem(
                ("point_timeout_s",),
                f"point_timeout_s ({self.point_timeout_s:g} s) must be longer than max_time_s ({longest:g} s) plus the "
                "point's start-up, or every point is killed; raise it (--point-timeout)",
            )
        if "batch" in self._values and "batch_size" in self.settings:
            raise ConfigProblem(("settings", "batch_size"), "batch_size is both a setting and the 'batch' axis; keep one")
        return self

    # -------------------------------------------------------------------- derived

    @property
    def values(self) -> dict[str, list[Any]]:
        """Each axis's values, ranges expanded, in the order the config lists the axes."""
        return {k: list(v) for k, v in self._values.items()}

    @property
    def sweep_id(self) -> str:
        """``id`` if given, else a hash of what is measured (see the module docstring)."""
        if self.id:
            return self.id
        what = {
            "model": self.model, "inputs": self.inputs, "settings": self.settings,
            "axes": [[k, v] for k, v in self._values.items()], "processes": self.processes, "tags": self.tags,
        }
        text = json.dumps(what, sort_keys=True, separators=(",", ":"), default=str)
        return "sw-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def points(self) -> list["Point"]:
        """The grid: one point per combination of axis values (one point if there are no axes)."""
        base: dict[str, Any] = dict(self.settings)
        if self.model:
            base["model"] = self.model
        if self.inputs:
            base["inputs"] = list(self.inputs)
        if self.tags:
            base["tags"] = {**dict(base.get("tags") or {}), **self.tags}
        names = list(self._values)
        out = []
        for index, combo in enumerate(itertools.product(*(self._values[n] for n in names))):
            axes = dict(zip(names, combo))
            out.append(Point(index=index, axes=axes, key=point_key(axes), kwargs=point_kwargs(base, axes)))
        return out

    def replace(self, **changes: Any) -> "SweepConfig":
        """A validated copy with some fields changed (``None`` values leave a field as it is)."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return config_from_dict(data, source="arguments")


def point_key(axes: Mapping[str, Any]) -> str:
    """Canonical JSON of a point's axis values: the resume key within a sweep."""
    return json.dumps(dict(axes), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Point:
    index: int
    axes: dict[str, Any]
    key: str
    kwargs: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.axes.items()) or "(single point)"


# ------------------------------------------------------------------------------- loading

# path in the config → (source, line); the line is None for values from the command line.
Origins = dict[tuple[Any, ...], tuple[str, Optional[int]]]


def load_config(
    path: str | Path, *, overrides: Mapping[str, Any] | None = None, grid: Mapping[str, Any] | None = None
) -> SweepConfig:
    """Read a sweep file. ``overrides`` (top-level keys, or ``settings``/``ray`` entries merged in)
    and ``grid`` (axes added or replaced) come from the command line."""
    import yaml

    p = Path(path)
    label = str(path)
    if not p.is_file():
        where = "is a directory" if p.is_dir() else "does not exist"
        raise SweepConfigError(f"sweep file '{label}' {where}; give a YAML file such as sweep.yaml")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepConfigError(f"cannot read sweep file '{label}': {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepConfigError(f"{label}{where}: not valid YAML ({problem}); a sweep file is a YAML mapping such as 'model: m.onnx'") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else {str: "plain text", list: "a list"}.get(type(data), f"a {type(data).__name__}")
        raise SweepConfigError(f"{label}: expected a YAML mapping of sweep settings (model:, axes: …), got {got}")
    origins: Origins = {}
    _node_lines(node, (), label, origins)
    return config_from_dict(data, source=label, origins=origins, overrides=overrides, grid=grid)


def config_from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "sweep config",
    origins: Origins | None = None,
    overrides: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
) -> SweepConfig:
    """Validate a config mapping; a mistake raises :class:`SweepConfigError` naming where it is."""
    data = dict(data)
    origins = dict(origins or {})
    cli = ("command line", None)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in ("settings", "ray", "tags") and isinstance(value, Mapping):
            merged = dict(data.get(key) or {}) if isinstance(data.get(key), Mapping) else {}
            merged.update(value)
            data[key] = merged
            origins.update({(key, k): cli for k in value})
        else:
            data[key] = value
            origins[(key,)] = cli
    if grid:
        axes = dict(data.get("axes") or {}) if isinstance(data.get("axes"), Mapping) else {}
        axes.update(grid)
        data["axes"] = axes
        origins.update({("axes", k): ("--grid", None) for k in grid})
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, source, origins) from None
    except ConfigProblem as exc:  # raised outside pydantic's wrapping (not expected, but keep the location)
        raise SweepConfigError(_where(exc.loc, source, origins) + exc.message) from None


def _node_lines(node: Any, path: tuple[Any, ...], label: str, out: Origins) -> None:
    import yaml

    if node is None:
        return
    out.setdefault(path, (label, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = path + (getattr(key_node, "value", None),)
            out[sub] = (label, key_node.start_mark.line + 1)
            _node_lines(value_node, sub, label, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = (label, item.start_mark.line + 1)
            _node_lines(item, path + (i,), label, out)


def _locate(loc: tuple[Any, ...], source: str, origins: Origins) -> tuple[str, Optional[int]]:
    loc = tuple(loc)
    for n in range(len(loc), -1, -1):
        hit = origins.get(loc[:n]) or origins.get(tuple(x if isinstance(x, int) else str(x) for x in loc[:n]))
        if hit is not None:
            return hit
    return source, None


def _where(loc: tuple[Any, ...], source: str, origins: Origins) -> str:
    src, line = _locate(loc, source, origins)
    return f"{src} line {line}: " if line is not None else f"{src}: "


def _describe(error: Mapping[str, Any]) -> tuple[tuple[Any, ...], str]:
    """(location, message) of one pydantic error."""
    problem = (error.get("ctx") or {}).get("error")
    if isinstance(problem, ConfigProblem):
        return problem.loc, problem.message
    loc = tuple(error.get("loc") or ())
    if error.get("type") == "extra_forbidden":
        parent = SweepConfig if len(loc) == 1 else RayConfig if loc[:1] == ("ray",) else None
        known = f"; known keys: {', '.join(parent.model_fields)}" if parent is not None else ""
        return loc, f"unknown key '{loc[-1]}'{known}"
    msg = str(error.get("msg", "invalid value"))
    msg = msg[0].lower() + msg[1:] if msg else msg
    got = error.get("input")
    shown = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return loc, f"{'.'.join(str(x) for x in loc)}: {msg}{shown}"


def _first_error(exc: ValidationError, source: str, origins: Origins) -> SweepConfigError:
    """The problem nearest the top of the file (pydantic's order is the schema's), and how many more."""
    found = [_describe(e) for e in exc.errors()]
    lines = [_locate(loc, source, origins)[1] for loc, _ in found]
    best = min(range(len(found)), key=lambda i: (lines[i] is None, lines[i] or 0, i))
    loc, text = found[best]
    more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
    return SweepConfigError(_where(loc, source, origins) + text + more)
