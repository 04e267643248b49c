"""SQLite snapshots (issue 18): the host scripts run for real (local sh + sqlite3) on a
WAL-mode database, then the data is checked with Python's own sqlite3."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from capview.config import Settings
from capview.config import HostConfig
from capview.engine.layout import HostPaths
from capview.engine.snapshots import (
    describe_script, parse_marks, parse_meta, prune_script, restore_script, schema_changed, take_script, validate_tag,
)
from capview.remote.local import LocalTransport

DBS = ("data/app.db", "data/missing.db")


def run(tmp: Path, script: str, stdin: bytes | None = None) -> str:
    host = HostConfig(name="local", host="localhost", settings=Settings(app="a", deploy_path=str(tmp), source=tmp))
    res = asyncio.run(LocalTransport().run(host, script, stdin=stdin))
    assert res.ok, res.stderr
    return res.stdout


@pytest.fixture
def dp(tmp_path: Path) -> Path:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    return tmp_path


def open_db(dp: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(dp / "shared" / "data" / "app.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # keep rows in the -wal: the snapshot must still see them
    return conn


def test_take_describe_restore_round_trip(dp: Path) -> None:
    conn = open_db(dp)
    conn.execute('CREATE TABLE hits (at REAL)')
    conn.execute('CREATE TABLE "odd ""name"" ][ %s" (x)')
    conn.executemany("INSERT INTO hits VALUES (?)", [(i,) for i in range(120)])
    conn.execute("PRAGMA user_version = 1")
    assert (dp / "shared/data/app.db-wal").stat().st_size > 0
    paths = HostPaths(str(dp))

    out = run(dp, take_script(paths, DBS, "v2"))
    assert [m[0] for m in parse_marks(out, "snap")] == ["data/app.db"]  # the missing one is skipped
    snap = dp / "shared/.snapshots/v2/data/app.db"
    assert sqlite3.connect(snap).execute("SELECT count(*) FROM hits").fetchone() == (120,)
    assert oct(snap.parent.parent.stat().st_mode & 0o777) == "0o700"

    out = run(dp, describe_script(paths, DBS, "v2", taken_at=10.0, serving="v1", reason="before v2 started"))
    meta = parse_meta(out.partition("@meta ")[2])
    assert meta is not None and meta.serving == "v1" and meta.taken_at == 10.0 and meta.ok
    (db,) = meta.dbs
    assert db.user_version == 1 and db.tables == {"hits": 120, 'odd "name" ][ %s': 0}
    assert len(db.schema_sha256) == 64 and db.integrity == "ok" and db.bytes == snap.stat().st_size

    # v2 migrates and writes; then restore v1's data
    conn.execute("ALTER TABLE hits ADD COLUMN version TEXT")
    conn.executemany("INSERT INTO hits VALUES (?, 'v2')", [(i,) for i in range(30)])
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    now = run(dp, take_script(paths, DBS, "probe") + describe_script(paths, DBS, "probe", taken_at=11.0,
                                                                         serving="v2", reason="probe"))
    assert schema_changed(meta, parse_meta(now.partition("@meta ")[2])) == ["data/app.db: user_version 1 -> 2"]

    out = run(dp, restore_script(paths, DBS, "v2", "_restore-1234"))
    assert parse_marks(out, "restored") == [("data/app.db",)]
    live = sqlite3.connect(dp / "shared/data/app.db")
    assert live.execute("SELECT count(*) FROM hits").fetchone() == (120,)
    assert live.execute("PRAGMA user_version").fetchone() == (1,)
    assert live.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    undo = sqlite3.connect(dp / "shared/.snapshots/_restore-1234/data/app.db")
    assert undo.execute("SELECT count(*) FROM hits").fetchone() == (150,)  # the pre-restore data is kept


def test_a_corrupt_snapshot_is_never_restored(dp: Path) -> None:
    conn = open_db(dp)
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(2000)])
    conn.close()
    paths = HostPaths(str(dp))
    run(dp, take_script(paths, DBS, "v3"))
    snap = dp / "shared/.snapshots/v3/data/app.db"
    data = bytearray(snap.read_bytes())
    data[4096: 4096 + 400] = b"\xff" * 400  # trash a b-tree page, its header included
    snap.write_bytes(bytes(data))
    before = (dp / "shared/data/app.db").read_bytes()
    host = HostConfig(name="local", host="localhost", settings=Settings(app="a", deploy_path=str(dp), source=dp))
    res = asyncio.run(LocalTransport().run(host, restore_script(paths, DBS, "v3", "_restore-9")))
    assert res.exit_status != 0 and "integrity_check" in res.stderr
    assert (dp / "shared/data/app.db").read_bytes() == before
    assert not (dp / "shared/data/app.db.capview-restore").exists()


def test_prune_keeps_listed_tags_and_recent_restores(dp: Path) -> None:
    base = dp / "shared/.snapshots"
    for tag in ("v1", "v2", "v3", "_restore-1", "_restore-2", "_restore-3"):
        (base / tag).mkdir(parents=True)
    out = run(dp, prune_script(HostPaths(str(dp)), keep_restores=2), stdin=b"v2\nv3\n")
    assert sorted(p.name for p in base.iterdir()) == ["_restore-2", "_restore-3", "v2", "v3"]
    assert sorted(m[0] for m in parse_marks(out, "pruned")) == ["_restore-1", "v1"]


@pytest.mark.parametrize("tag", ["../x", "a b", "-rf", "_restore-x", "_x", "", "v1;id"])
def test_bad_tags_are_refused(tag: str) -> None:
    with pytest.raises(ValueError):
        validate_tag(tag)


def test_meta_from_a_hostile_host_is_parsed_defensively() -> None:
    assert parse_meta("not json") is None
    assert parse_meta('{"dbs": []}') is None
    m = parse_meta('{"tag": "v1", "from": "../../etc", "taken_at": "now", "dbs": {"x": {"bytes": 1, '
                   '"tables": [{"name": 3, "rows": 1}, {"name": "t", "rows": "9"}]}}}')
    assert m is not None and m.serving is None and m.taken_at is None and m.dbs[0].tables == {}


def test_a_wal_that_cannot_be_emptied_falls_back_to_sqlite_backup(dp: Path) -> None:
    """A reader holding a transaction (a cron job, say) blocks the checkpoint: the copy of
    the bare file would miss the WAL's rows, so SQLite's .backup is used instead."""
    conn = open_db(dp)
    conn.execute("CREATE TABLE t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(500)])
    reader = sqlite3.connect(dp / "shared/data/app.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # a read snapshot pins the WAL
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(500)])
    run(dp, take_script(HostPaths(str(dp)), DBS, "v4"))
    assert (dp / "shared/data/app.db-wal").stat().st_size > 0  # it really could not be emptied
    snap = sqlite3.connect(dp / "shared/.snapshots/v4/data/app.db")
    assert snap.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    reader.execute("COMMIT")
