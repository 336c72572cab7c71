from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from infermeter.errors import StoreError
from infermeter.result import Estimate, LatencyStats, ModelInfo, Result
from infermeter.store import SCHEMA_VERSION, RunSummary, Store, default_store_path, new_id

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def make_result(
    id: str | None = None,
    *,
    invocation: str = "inv000000000",
    spec: str = "model.onnx",
    batch_size: int = 1,
    created: datetime = T0,
    p50: float = 0.010,
    with_latency: bool = True,
) -> Result:
    samples = [p50 * f for f in (0.9, 1.0, 1.0, 1.1, 1.5)]
    latency = None
    if with_latency:
        latency = LatencyStats(
            count=len(samples),
            ci_method="binomial order statistics",
            mean=Estimate(value=sum(samples) / len(samples), ci_low=p50 * 0.95, ci_high=p50 * 1.2),
            std=p50 * 0.2,
            min=min(samples),
            max=max(samples),
            p50=Estimate(value=p50, ci_low=p50 * 0.9, ci_high=p50 * 1.1),
            p90=Estimate(value=p50 * 1.5),
            p95=Estimate(value=p50 * 1.5),
            p99=Estimate(value=p50 * 1.5, ci_low=p50 * 1.1),
            p999=Estimate(value=p50 * 1.5),
            samples=samples,
        )
    return Result(
        id=id or new_id(),
        invocation=invocation,
        created=created,
        status="ok" if with_latency else "failed",
        error=None if with_latency else "boom",
        model=ModelInfo(spec=spec, backend="onnxruntime", inputs=["x:float32[B,4]"]),
        batch_size=batch_size,
        config={"warmup": 10, "seed": 0},
        latency=latency,
        stop_reason="ci" if with_latency else None,
    )


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "sub" / "results.db") as s:
        yield s


def test_round_trip(store: Store) -> None:
    r = make_result("aaaa00000001")
    assert store.save(r) == "aaaa00000001"
    back = store.get("aaaa00000001")
    assert back == r
    assert back.to_json_dict() == r.to_json_dict()
    assert store.count() == 1


def test_failed_result_without_latency(store: Store) -> None:
    r = make_result(with_latency=False)
    store.save(r)
    assert store.get(r.id) == r
    (summary,) = store.list()
    assert summary.p50_s is None and summary.status == "failed"


def test_duplicate_id_is_error_and_keeps_first(store: Store) -> None:
    store.save(make_result("dup000000001", p50=0.5))
    with pytest.raises(StoreError, match="already in"):
        store.save(make_result("dup000000001", p50=0.7))
    assert store.count() == 1
    assert store.get("dup000000001").latency.p50.value == 0.5  # type: ignore[union-attr]


def test_prefix_lookup_unknown_and_ambiguous(store: Store) -> None:
    store.save(make_result("abc000000001"))
    store.save(make_result("abd000000002"))
    assert store.get("abc").id == "abc000000001"
    assert store.get("abd0").id == "abd000000002"
    with pytest.raises(StoreError, match="ambiguous") as info:
        store.get("ab")
    assert "abc000000001" in str(info.value) and "abd000000002" in str(info.value)
    with pytest.raises(StoreError, match=r"no run 'zzz' in .*infermeter runs list"):
        store.get("zzz")
    # LIKE wildcards are not wildcards here.
    with pytest.raises(StoreError, match="no run"):
        store.get("a%")
    with pytest.raises(StoreError):
        store.get("")


def test_exact_id_wins_over_longer_ids(store: Store) -> None:
    store.save(make_result("abc"))
    store.save(make_result("abcdef"))
    assert store.get("abc").id == "abc"


def test_list_order_limit_and_filters(store: Store) -> None:
    ids = []
    for i in range(6):
        r = make_result(
            invocation="inv-a" if i < 3 else "inv-b",
            spec="a.onnx" if i % 2 == 0 else "b.onnx",
            batch_size=2**i,
            created=T0 + timedelta(seconds=i),
            p50=0.001 * (i + 1),
        )
        ids.append(store.save(r))
    # Saved out of order: created decides, not insertion.
    store.save(make_result("oldest000000", created=T0 - timedelta(days=1), spec="a.onnx"))

    runs = store.list()
    assert [r.id for r in runs] == list(reversed(ids)) + ["oldest000000"]
    assert all(isinstance(r, RunSummary) for r in runs)
    top = runs[0]
    assert top.created == T0 + timedelta(seconds=5)
    assert top.batch_size == 32 and top.spec == "b.onnx" and top.backend == "onnxruntime"
    assert top.p50_s == pytest.approx(0.006) and top.p99_s == pytest.approx(0.009)
    assert top.stop_reason == "ci" and top.device == "cpu" and top.scenario == "single-stream"

    assert [r.id for r in store.list(limit=2)] == [ids[5], ids[4]]
    assert [r.id for r in store.list(spec="a.onnx")] == [ids[4], ids[2], ids[0], "oldest000000"]
    assert [r.id for r in store.list(invocation="inv-a")] == [ids[2], ids[1], ids[0]]
    assert [r.id for r in store.list(spec="b.onnx", invocation="inv-b")] == [ids[5], ids[3]]
    assert store.list(spec="nope") == []
    assert len(store.list(limit=None)) == 7


def test_created_timezones_sort_in_utc(store: Store) -> None:
    plus2 = timezone(timedelta(hours=2))
    store.save(make_result("later0000000", created=datetime(2024, 5, 1, 13, 30, tzinfo=plus2)))  # 11:30 UTC
    store.save(make_result("earlier00000", created=datetime(2024, 5, 1, 11, 0, tzinfo=timezone.utc)))
    assert [r.id for r in store.list()] == ["later0000000", "earlier00000"]


def test_invocation(store: Store) -> None:
    for bs in (8, 1, 4):
        store.save(make_result(invocation="invxyz000001", batch_size=bs))
    store.save(make_result(invocation="invother0001"))
    results = store.invocation("invxyz000001")
    assert [r.batch_size for r in results] == [1, 4, 8]
    assert all(isinstance(r, Result) for r in results)
    assert len(store.invocation("invx")) == 3  # unique prefix
    with pytest.raises(StoreError, match="ambiguous"):
        store.invocation("inv")
    with pytest.raises(StoreError, match="no invocation"):
        store.invocation("nothing")


def test_delete(store: Store) -> None:
    store.save(make_result("del000000001"))
    store.save(make_result("keep00000001"))
    assert store.delete("del") == "del000000001"
    assert store.count() == 1
    with pytest.raises(StoreError, match="no run"):
        store.get("del000000001")
    with pytest.raises(StoreError, match="no run"):
        store.delete("del")


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    finally:
        conn.close()
    # Reopening an existing store migrates nothing and keeps data.
    with Store(path) as s:
        s.save(make_result("reopen000001"))
    with Store(path) as s:
        assert s.get("reopen000001").id == "reopen000001"


def test_newer_store_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer infermeter"):
        Store(path)


def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an infermeter results store"):
        Store(path)


def test_closed_store(tmp_path: Path) -> None:
    s = Store(tmp_path / "r.db")
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.count()


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path[:0] = [sys.argv[3]]
    from test_store import make_result
    from infermeter.store import Store
    results = [make_result(invocation=sys.argv[2], batch_size=i + 1) for i in range(50)]
    go = Path(sys.argv[4])
    with Store(sys.argv[1]) as s:
        Path(sys.argv[4] + "." + sys.argv[2]).touch()  # ready
        deadline = time.monotonic() + 60
        while not go.exists() and time.monotonic() < deadline:  # start together (spin: no sleep lag)
            pass
        for r in results:
            s.save(r)
    """
)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    go = tmp_path / "go"
    here = str(Path(__file__).parent)
    names = ["writer0", "writer1"]
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), name, here, str(go)], stderr=subprocess.PIPE)
        for name in names
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(Path(f"{go}.{n}").exists() for n in names) and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.005)
        go.touch()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err.decode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    with Store(path) as s:
        assert s.count() == 100
        assert len(s.invocation("writer0")) == 50
        assert len(s.invocation("writer1")) == 50
        assert len({r.id for r in s.list(limit=None)}) == 100


def test_unwritable_location_is_store_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    with pytest.raises(StoreError) as info:
        Store(afile / "x.db")
    message = str(info.value)
    assert str(afile / "x.db") in message
    assert "--store PATH" in message and "INFERMETER_STORE" in message
    assert "\n" not in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_directory_is_store_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="INFERMETER_STORE"):
            Store(ro / "x.db")
    finally:
        ro.chmod(0o700)


def test_directory_path_is_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


def test_non_database_file_is_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="not an infermeter results database") as info:
        Store(path)
    assert str(path) in str(info.value) and "INFERMETER_STORE" in str(info.value)
    assert path.read_text().startswith("these are my notes")  # untouched


def test_locked_store_is_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infermeter.store as store_mod

    path = tmp_path / "r.db"
    monkeypatch.setattr(store_mod, "_BUSY_TIMEOUT_S", 0.2)
    with Store(path) as s:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreError, match="locked"):
                s.save(make_result())
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        s.save(make_result())  # usable again once the lock is gone
        assert s.count() == 1


def test_default_store_path() -> None:
    assert default_store_path({"INFERMETER_STORE": "/x/y.db", "HOME": "/h"}) == Path("/x/y.db")
    assert default_store_path({"HOME": "/h"}, platform="linux") == Path("/h/.local/share/infermeter/results.db")
    assert default_store_path({"HOME": "/h", "XDG_DATA_HOME": "/d"}, platform="linux") == Path(
        "/d/infermeter/results.db"
    )
    assert default_store_path({"HOME": "/h", "XDG_DATA_HOME": "rel"}, platform="linux") == Path(
        "/h/.local/share/infermeter/results.db"
    )
    assert default_store_path({"HOME": "/h"}, platform="darwin") == Path(
        "/h/Library/Application Support/infermeter/results.db"
    )
    win = default_store_path({"HOME": "/h", "LOCALAPPDATA": "/appdata"}, platform="win32")
    assert win == Path("/appdata/infermeter/results.db")


def test_default_store_path_reads_process_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "via-env.db"
    monkeypatch.setenv("INFERMETER_STORE", str(target))
    assert default_store_path() == target
    with Store() as s:
        assert s.path == target
    assert target.exists()


def test_new_id_short_unique_sortable() -> None:
    ids = [new_id() for _ in range(5000)]
    assert all(len(i) == 12 and i.isalnum() and i == i.lower() for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_schema_v2_sweeps_and_tags(tmp_path):
    from infermeter.result import SweepPoint

    with Store(tmp_path / "s.db") as st:
        base = make_result()
        a = base.model_copy(update={"id": new_id(), "tags": {"branch": "main", "ci": "1"},
                                    "sweep": SweepPoint(sweep_id="sw1", point_key='{"batch":1}')})
        b = base.model_copy(update={"id": new_id(), "tags": {"branch": "dev"},
                                    "sweep": SweepPoint(sweep_id="sw1", point_key='{"batch":2}'), "status": "failed"})
        c = base.model_copy(update={"id": new_id()})
        for r in (a, b, c):
            st.save(r)
        assert [x.id for x in st.list(tags={"branch": "main"})] == [a.id]
        assert [x.id for x in st.list(tags={"branch": "main", "ci": "1"})] == [a.id]
        assert st.list(tags={"branch": "main", "ci": "2"}) == []
        assert {x.id for x in st.list(sweep="sw1")} == {a.id, b.id}
        assert [x.id for x in st.sweep("sw")] == [a.id, b.id]  # unique prefix
        assert st.done_points("sw1") == {'{"batch":1}'}  # failed points are redone on resume
        st.set_tags(c.id, {"branch": "main"})
        assert {x.id for x in st.list(tags={"branch": "main"})} == {a.id, c.id}
        assert st.get(c.id).tags == {"branch": "main"}
        st.delete(a.id)
        assert [x.id for x in st.list(tags={"branch": "main"})] == [c.id]
        with pytest.raises(StoreError, match="no sweep"):
            st.sweep("nope")


def test_v1_store_is_migrated_in_place(tmp_path):
    import sqlite3

    from infermeter import store as store_mod

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    store_mod._migrate_0_to_1(conn)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(path) as st:  # the v1 file gets v2's columns and tags table
        r = make_result(id=new_id()).model_copy(update={"tags": {"k": "v"}})
        st.save(r)
        assert [x.id for x in st.list(tags={"k": "v"})] == [r.id]


def test_hardware_profiles_keep_history_and_return_the_newest(tmp_path):
    from datetime import datetime, timedelta, timezone

    store = Store(tmp_path / "s.db")
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert store.hardware() is None
    store.save_hardware("box", "name: box\nv: 1\n", created=t0)
    store.save_hardware("box", "name: box\nv: 2\n", created=t0 + timedelta(hours=1))
    store.save_hardware("other", "name: other\n", created=t0 - timedelta(hours=1))
    assert store.hardware("box") == "name: box\nv: 2\n"
    assert store.hardware() == "name: box\nv: 2\n"
    assert store.hardware("missing") is None
    assert [n for n, _ in store.list_hardware()] == ["box", "box", "other"]
