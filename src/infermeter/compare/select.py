"""Finding the runs to compare or check in a store: ids, NAME=VALUE tags, sweeps, and check's pairing rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StoreError, UsageError
from ..result import Result
from .table import sweep_points

__all__ = ["parse_tag_ref", "get_run", "get_sweep_points", "resolve_runs", "select_check_runs"]


def parse_tag_ref(ref: str) -> dict[str, str] | None:
    """``branch=main`` → {"branch": "main"}; a run id (no '=') → None."""
    key, sep, value = ref.partition("=")
    if not sep:
        return None
    if not key.strip() or not value.strip():
        raise UsageError(f"cannot read tag '{ref}'; expected NAME=VALUE such as branch=main")
    return {key.strip(): value.strip()}


def _lookup(fn: Any, ref: str) -> Any:
    """``fn(ref)``, with an unknown or ambiguous id turned into a usage error (exit 2, not 1:
    ``check`` exits 1 only for a regression)."""
    try:
        return fn(ref)
    except StoreError as exc:
        text = str(exc)
        if text.startswith(("no run", "no sweep")) or "ambiguous" in text or "matches nothing" in text:
            raise UsageError(text) from None
        raise


def get_run(store: Any, ref: str) -> Result:
    """The run with this id (or unique prefix); an unknown or ambiguous id is a ``UsageError``."""
    return _lookup(store.get, ref)  # type: ignore[no-any-return]


def get_sweep_points(store: Any, sweep_id: str) -> list[Result]:
    """``sweep_points`` of a stored sweep (id or unique prefix); an unknown id is a ``UsageError``."""
    points = sweep_points(_lookup(store.sweep, sweep_id))
    if not points:
        raise UsageError(f"sweep {sweep_id} has no results to compare")
    return points


def _tagged(store: Any, tags: Mapping[str, str], status: str | None = None) -> list[Any]:
    return list(store.list(limit=None, tags=tags, status=status))


def resolve_runs(store: Any, refs: Sequence[str]) -> list[Result]:
    """Runs for ids (or prefixes) and NAME=VALUE tags (every run carrying it, oldest first), in order."""
    out: list[Result] = []
    for ref in refs:
        tags = parse_tag_ref(ref)
        if tags is None:
            out.append(get_run(store, ref))
            continue
        found = _tagged(store, tags)
        if not found:
            raise UsageError(f"no run carries tag {ref}; label runs with bench --tag or infermeter runs tag ID {ref}")
        out += [store.get(s.id) for s in reversed(found)]
    return out


def _newest_per_key(store: Any, summaries: Sequence[Any], exclude: set[str] | None = None) -> list[Result]:
    seen: set[tuple[str, int, str]] = set()
    out: list[Result] = []
    exclude = exclude or set()
    for s in summaries:  # newest first
        key = (s.spec, s.batch_size, s.scenario or "single-stream")
        if key not in seen and s.id not in exclude:
            seen.add(key)
            out.append(store.get(s.id))
    return out


def select_check_runs(store: Any, baseline: str, candidate: str | None = None) -> tuple[list[Result], list[Result]]:
    """Baseline and candidate runs for ``check`` by ``PAIRING_RULE`` (refs are ids or NAME=VALUE tags)."""
    btags = parse_tag_ref(baseline)
    if btags is None:
        bases = [get_run(store, baseline)]
    else:
        bases = _newest_per_key(store, _tagged(store, btags, "ok"))
        if not bases:
            raise UsageError(f"no ok run carries tag {baseline}; label one with infermeter runs tag ID {baseline}")
    base_ids = {b.id for b in bases}
    if candidate is not None:
        ctags = parse_tag_ref(candidate)
        if ctags is None:
            return bases, [get_run(store, candidate)]
        cands = _newest_per_key(store, _tagged(store, ctags, "ok"), base_ids)
        if not cands:
            raise UsageError(f"no ok run carries tag {candidate} (other than the baseline runs)")
        return bases, cands
    exclude = set(base_ids) | ({s.id for s in _tagged(store, btags)} if btags else set())
    cands = []
    for b in bases:
        same = [s for s in store.list(limit=None, spec=b.model.spec, status="ok")
                if (s.batch_size, s.scenario or "single-stream") == (b.batch_size, b.scenario)]
        cands += _newest_per_key(store, same, exclude)
    if not cands:
        raise UsageError(
            f"no candidate for baseline {baseline}: no other ok run of the same spec, batch size and scenario; "
            "run the benchmark first or pass --candidate ID|TAG"
        )
    return bases, cands
