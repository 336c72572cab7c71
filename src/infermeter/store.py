"""The results store: one SQLite file of every run, and the only code that writes it.

Each row keeps the full ``Result`` JSON, so any statistic can be recomputed
later, beside a few indexed columns (spec, backend, p50 …) that listing and
filtering read without parsing JSON. The file is opened in WAL mode with a busy
timeout so that concurrent writers (sweep workers, two terminals) wait for each
other instead of failing. The schema version lives in ``PRAGMA user_version``;
``_MIGRATIONS`` takes a store from each version to the next.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import StoreError
from .result import Result, load_result

__all__ = ["Store", "RunSummary", "default_store_path", "new_id", "STORE_ENV_VAR", "SCHEMA_VERSION"]

STORE_ENV_VAR = "INFERMETER_STORE"
SCHEMA_VERSION = 3
_BUSY_TIMEOUT_S = 30.0
_FIX = f"pass --store PATH or set {STORE_ENV_VAR}"


# -- ids ---------------------------------------------------------------------------------

# Crockford base32, lower case: ascending in ASCII, so fixed-width ids sort by time.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_TIME_CHARS = 9  # 45 bits of milliseconds since 1970: good until the year 3084
_RAND_CHARS = 3  # 15 bits
_id_lock = threading.Lock()
_last_id: tuple[int, int] = (0, 0)


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id() -> str:
    """A short (12 character) unique id that sorts by creation time.

    Nine characters of millisecond timestamp, three of randomness; within one
    process ids are strictly increasing even inside the same millisecond.
    Used for result ids and invocation ids alike.
    """
    global _last_id
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_rand = _last_id
        if ms <= last_ms:
            # Same millisecond (or the clock stepped back): count up from the last id.
            ms, rand = last_ms, last_rand + 1
            if rand >= 32**_RAND_CHARS:
                ms, rand = last_ms + 1, secrets.randbelow(32**_RAND_CHARS // 2)
        else:
            # Lower half only, so the counter above rarely has to carry.
            rand = secrets.randbelow(32**_RAND_CHARS // 2)
        _last_id = (ms, rand)
    return _b32(ms, _TIME_CHARS) + _b32(rand, _RAND_CHARS)


# -- location ----------------------------------------------------------------------------


def default_store_path(env: Mapping[str, str] = os.environ, *, platform: str | None = None) -> Path:
    """``$INFERMETER_STORE`` when set, else ``<user data dir>/infermeter/results.db``.

    The user data directory is ``$XDG_DATA_HOME`` or ``~/.local/share`` on Linux
    and other Unixes, ``~/Library/Application Support`` on macOS and
    ``%LOCALAPPDATA%`` on Windows. ``env`` and ``platform`` are parameters so
    callers (and tests) decide where they come from.
    """
    explicit = env.get(STORE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    plat = platform or sys.platform
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if plat.startswith("win"):
        local = env.get("LOCALAPPDATA")
        base = Path(local) if local else home / "AppData" / "Local"
    elif plat == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_DATA_HOME")
        # The XDG spec says relative values are invalid and must be ignored.
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".local" / "share"
    return base / "infermeter" / "results.db"


# -- rows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSummary:
    """The indexed columns of one stored run: what ``runs list`` shows."""

    id: str
    invocation: str
    created: datetime
    status: str
    spec: str
    backend: str
    device: str | None
    batch_size: int | None
    scenario: str | None
    p50_s: float | None
    p99_s: float | None
    mean_s: float | None
    stop_reason: str | None


_COLUMNS = (
    "id",
    "invocation",
    "created",
    "status",
    "spec",
    "backend",
    "device",
    "batch_size",
    "scenario",
    "p50_s",
    "p99_s",
    "mean_s",
    "stop_reason",
)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE runs (
            id          TEXT PRIMARY KEY,
            invocation  TEXT NOT NULL,
            created     TEXT NOT NULL,
            status      TEXT NOT NULL,
            spec        TEXT NOT NULL,
            backend     TEXT NOT NULL,
            device      TEXT,
            batch_size  INTEGER,
            scenario    TEXT,
            p50_s       REAL,
            p99_s       REAL,
            mean_s      REAL,
            stop_reason TEXT,
            json        TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX runs_created ON runs (created)")
    conn.execute("CREATE INDEX runs_invocation ON runs (invocation)")
    conn.execute("CREATE INDEX runs_spec ON runs (spec)")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    # Sweeps (resume by point key) and user tags.
    conn.execute("ALTER TABLE runs ADD COLUMN sweep_id TEXT")
    conn.execute("ALTER TABLE runs ADD COLUMN point_key TEXT")
    conn.execute("CREATE INDEX runs_sweep ON runs (sweep_id, point_key)")
    conn.execute(
        """
        CREATE TABLE tags (
            run_id TEXT NOT NULL,
            key    TEXT NOT NULL,
            value  TEXT NOT NULL,
            PRIMARY KEY (run_id, key)
        )
        """
    )
    conn.execute("CREATE INDEX tags_key_value ON tags (key, value)")


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    # Calibrated hardware profiles (``infermeter calibrate``), kept as YAML text.
    conn.execute(
        """
        CREATE TABLE hardware (
            name     TEXT NOT NULL,
            created  TEXT NOT NULL,
            yaml     TEXT NOT NULL,
            PRIMARY KEY (name, created)
        )
        """
    )


# _MIGRATIONS[v] takes a store at user_version v to v + 1. Append, never edit.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _migrate_0_to_1,
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def _iso_utc(dt: datetime) -> str:
    """Fixed-width UTC ISO text, so string order is time order in SQL."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")


# -- the store ---------------------------------------------------------------------------


class Store:
    """A results store at ``path`` (created, with its parent directories, if missing).

    Safe to share between threads (one lock) and between processes (SQLite
    locking, WAL, busy timeout). Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise self._open_error("it is a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                raise self._open_error(f"{blocker} is a file, not a directory") from exc
            raise self._open_error(f"cannot create directory {self.path.parent} ({exc.strerror or exc})") from exc
        try:
            # isolation_level=None: no implicit transactions; we open them ourselves.
            conn = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._open_error(str(exc)) from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._open_error(f"cannot switch it to WAL mode (got {mode!r}; is it on a network filesystem?)")
            conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints
            self._migrate()
        except StoreError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            raise self._open_error(self._describe(exc)) from exc

    # -- plumbing ----------------------------------------------------------------------

    def _open_error(self, reason: str) -> StoreError:
        return StoreError(f"cannot open results store {self.path}: {reason}; {_FIX}")

    def _describe(self, exc: sqlite3.Error) -> str:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return "the file is not an infermeter results database"
        if "locked" in text or "busy" in text:
            return f"it is locked by another process for more than {_BUSY_TIMEOUT_S:.0f} s"
        if "readonly" in text or "unable to open" in text:
            return f"{text} (check that the file and its directory are writable)"
        return text

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"results store {self.path} is closed; open a new Store")
        return self._conn

    @contextmanager
    def _tx(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so concurrent writers queue on the busy timeout."""
        with self._lock:
            conn = self._db
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what} in results store {self.path}: {self._describe(exc)}; {_FIX}") from exc
            try:
                yield conn
            except BaseException:
                self._rollback(conn)
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    self._rollback(conn)
                    raise StoreError(
                        f"cannot {what} in results store {self.path}: {self._describe(exc)}; {_FIX}"
                    ) from exc

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # SQLite may already have rolled back on its own
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> builtins.list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read results store {self.path}: {self._describe(exc)}; {_FIX}") from exc

    def _migrate(self) -> None:
        conn = self._db
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._tx("create tables") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # re-read under the lock
            if version > SCHEMA_VERSION:
                raise self._open_error(
                    f"it was written by a newer infermeter (store version {version}, this one reads "
                    f"{SCHEMA_VERSION}); upgrade infermeter"
                )
            if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise self._open_error("the file is an SQLite database but not an infermeter results store")
            while version < SCHEMA_VERSION:
                _MIGRATIONS[version](conn)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")

    def _resolve(self, id_or_prefix: str, column: str = "id") -> str:
        """The unique stored value of ``column`` equal to, or starting with, the argument."""
        key = id_or_prefix.strip()
        noun = {"id": "run", "invocation": "invocation", "sweep_id": "sweep"}[column]
        if not key:
            raise StoreError(f"an empty {noun} id matches nothing; list runs with infermeter runs list")
        if self._query(f"SELECT 1 FROM runs WHERE {column} = ? LIMIT 1", (key,)):
            return key
        rows = self._query(
            f"SELECT DISTINCT {column} FROM runs WHERE substr({column}, 1, ?) = ? ORDER BY {column} LIMIT 11",
            (len(key), key),
        )
        if not rows:
            raise StoreError(f"no {noun} {key!r} in {self.path}; list runs with infermeter runs list")
        if len(rows) > 1:
            shown = ", ".join(r[0] for r in rows[:10]) + (", …" if len(rows) > 10 else "")
            raise StoreError(
                f"{noun} id prefix {key!r} is ambiguous in {self.path}: it matches {shown}; give more characters"
            )
        return str(rows[0][0])

    def _load(self, run_id: str, text: str) -> Result:
        try:
            return load_result(text)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(
                f"run {run_id!r} in {self.path} cannot be read by this infermeter ({first}); "
                "upgrade infermeter or delete the run"
            ) from exc

    # -- public ------------------------------------------------------------------------

    def save(self, result: Result) -> str:
        """Insert ``result`` (one transaction) and return its id. A duplicate id is an error."""
        lat = result.latency
        row = (
            result.id,
            result.invocation,
            _iso_utc(result.created),
            result.status,
            result.model.spec,
            result.model.backend,
            result.model.device,
            result.batch_size,
            result.scenario,
            lat.p50.value if lat else None,
            lat.p99.value if lat else None,
            lat.mean.value if lat else None,
            result.stop_reason,
            json.dumps(result.to_json_dict(), separators=(",", ":")),
        )
        row += (result.sweep.sweep_id if result.sweep else None, result.sweep.point_key if result.sweep else None)
        placeholders = ", ".join("?" * (len(_COLUMNS) + 3))
        with self._tx("save run") as conn:
            try:
                conn.execute(
                    f"INSERT INTO runs ({', '.join(_COLUMNS)}, json, sweep_id, point_key) VALUES ({placeholders})", row
                )
                conn.executemany(
                    "INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?)",
                    [(result.id, k, v) for k, v in result.tags.items()],
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(
                    f"a run with id {result.id!r} is already in {self.path}; give the result a new id (infermeter.store.new_id())"
                ) from exc
            except sqlite3.Error as exc:
                raise StoreError(f"cannot save run in results store {self.path}: {self._describe(exc)}; {_FIX}") from exc
        return result.id

    def get(self, id_or_prefix: str) -> Result:
        """The run whose id is, or uniquely starts with, ``id_or_prefix``."""
        run_id = self._resolve(id_or_prefix)
        rows = self._query("SELECT json FROM runs WHERE id = ?", (run_id,))
        if not rows:  # deleted between resolve and read
            raise StoreError(f"no run {run_id!r} in {self.path}; list runs with infermeter runs list")
        return self._load(run_id, rows[0][0])

    def invocation(self, inv_id: str) -> builtins.list[Result]:
        """Every run of one command (one per batch size), by batch size; a unique prefix works."""
        inv = self._resolve(inv_id, column="invocation")
        rows = self._query(
            "SELECT id, json FROM runs WHERE invocation = ? ORDER BY batch_size, created, rowid", (inv,)
        )
        return [self._load(r[0], r[1]) for r in rows]

    def list(
        self,
        limit: int | None = 50,
        spec: str | None = None,
        invocation: str | None = None,
        *,
        sweep: str | None = None,
        tags: Mapping[str, str] | None = None,
        status: str | None = None,
    ) -> builtins.list[RunSummary]:
        """Summaries, newest first; ``limit=None`` for all. Filters match exactly;
        ``tags`` keeps runs that carry every one of the given name=value pairs."""
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        for column, value in (("spec", spec), ("invocation", invocation), ("sweep_id", sweep), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        for key, value in (tags or {}).items():
            where.append("id IN (SELECT run_id FROM tags WHERE key = ? AND value = ?)")
            params += [key, str(value)]
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        out = []
        for row in self._query(sql, tuple(params)):
            values = dict(zip(_COLUMNS, row))
            values["created"] = datetime.fromisoformat(values["created"])
            out.append(RunSummary(**values))
        return out

    def delete(self, id_or_prefix: str) -> str:
        """Delete one run (exact id or unique prefix) and return its id."""
        with self._tx("delete run") as conn:
            run_id = self._resolve(id_or_prefix)
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            conn.execute("DELETE FROM tags WHERE run_id = ?", (run_id,))
        return run_id

    def sweep(self, sweep_id: str) -> builtins.list[Result]:
        """Every result of one sweep (a unique prefix works), in the order they were saved."""
        sid = self._resolve(sweep_id, column="sweep_id")
        rows = self._query("SELECT id, json FROM runs WHERE sweep_id = ? ORDER BY created, rowid", (sid,))
        return [self._load(r[0], r[1]) for r in rows]

    def done_points(self, sweep_id: str) -> set[str]:
        """Point keys of a sweep that already have a finished (status ok) result: what a resumed sweep skips."""
        rows = self._query(
            "SELECT DISTINCT point_key FROM runs WHERE sweep_id = ? AND status = 'ok' AND point_key IS NOT NULL",
            (sweep_id,),
        )
        return {r[0] for r in rows}

    def set_tags(self, id_or_prefix: str, tags: Mapping[str, str]) -> str:
        """Add or replace tags on a stored run (the JSON copy is updated too); returns the run id."""
        with self._tx("tag run") as conn:
            run_id = self._resolve(id_or_prefix)
            text = conn.execute("SELECT json FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
            result = self._load(run_id, text)
            result.tags.update({str(k): str(v) for k, v in tags.items()})
            conn.execute(
                "UPDATE runs SET json = ? WHERE id = ?",
                (json.dumps(result.to_json_dict(), separators=(",", ":")), run_id),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO tags (run_id, key, value) VALUES (?, ?, ?)",
                [(run_id, str(k), str(v)) for k, v in tags.items()],
            )
        return run_id

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM runs")[0][0])

    # ------------------------------------------------------------------ hardware profiles

    def save_hardware(self, name: str, yaml_text: str, created: datetime | None = None) -> None:
        """Keep a calibrated hardware profile (YAML text) under ``name``; older ones stay."""
        when = _iso_utc(created or datetime.now(timezone.utc))
        with self._tx(f"save hardware profile {name}") as conn:
            conn.execute("INSERT OR REPLACE INTO hardware (name, created, yaml) VALUES (?, ?, ?)", (name, when, yaml_text))

    def hardware(self, name: str | None = None) -> str | None:
        """The newest profile's YAML text (of ``name``, or of any name); None if there is none."""
        if name is None:
            rows = self._query("SELECT yaml FROM hardware ORDER BY created DESC LIMIT 1")
        else:
            rows = self._query("SELECT yaml FROM hardware WHERE name = ? ORDER BY created DESC LIMIT 1", (name,))
        return str(rows[0][0]) if rows else None

    def list_hardware(self) -> builtins.list[tuple[str, str]]:
        """(name, created) of every stored profile, newest first."""
        return [(str(n), str(c)) for n, c in self._query("SELECT name, created FROM hardware ORDER BY created DESC")]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"
