"""Issue 18: strikes during a hook, and the CLI's words about data (real testbed).

A connection cut, or capview SIGKILLed, while a before_start migration runs: the host's
transaction finishes on its own -> the new release live, migrated once, the lock
released, the states consistent (tests/invariants.py). The CLI: rollback --restore-data
needs --yes off a TTY; without it a schema change is warned; hostile hook output is inert."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402  (faultkit puts the repo on sys.path)
from faultkit import CliRun, cli, env_via, known_hosts_for, settle, write_config
from invariants import assert_states_consistent, current_release
from capview.config import DataConfig, HealthConfig, HooksConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import LogLine
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DB = "data/app.db"
SLOW_MIGRATION = ('echo migrating; sleep 2; [ "$(sqlite3 data/app.db "PRAGMA user_version")" -ge 2 ] || '
                  'sqlite3 data/app.db "CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at REAL, version TEXT); '
                  'ALTER TABLE hits ADD COLUMN note TEXT; PRAGMA user_version = 2;"; '
                  'echo "$CAPVIEW_VERSION" >> "$CAPVIEW_SHARED_PATH/migrations"; echo migrated')


def columns(db: Path) -> list[str]:
    return [r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(hits)")]


def struck_and_finished(app, version: str) -> None:
    settle(app.deploy_path)
    assert_states_consistent(app.deploy_path)
    assert current_release(app.deploy_path) == version and app.get() == (200, version)
    assert not Path(app.deploy_path, ".capview", "lock").exists()
    shared = Path(app.deploy_path, "shared")
    assert (shared / "migrations").read_text().split() == [version]  # ran once, not again after the strike
    assert "note" in columns(shared / DB)
    assert app.release_json(version)["state"] == "live"


async def test_connection_cut_during_a_before_start_hook(host, tmp_path):
    app = new_app(host, build=False)
    kw = {"health": HealthConfig(url=f"http://127.0.0.1:{app.port}/health", timeout=5, interval=0.2),
          "data": DataConfig(sqlite=(DB,)), "hooks": HooksConfig(before_start=("[ -f MIGRATE ] || exit 0; " + SLOW_MIGRATION,))}
    async with SshTransport() as t:
        assert (await release(Context(transport=t, operator="t"), app.env(make_source(tmp_path, "v1"), **kw), "v1")).ok
    assert app.get("/hit")[0] == 200
    async with LatencyProxy(host.port, one_way=0.003) as proxy:
        src = make_source(tmp_path, "v2", extra={"MIGRATE": "yes\n"})
        env = env_via(app.env(src, **kw), proxy.port, known_hosts_for(host, proxy.port, tmp_path / "kh"))
        seen: list = []

        def emit(e):
            if isinstance(e, LogLine) and e.line == "[before_start] migrating":
                seen.append(e)
                proxy.sever()

        async with SshTransport() as t:
            r = await asyncio.wait_for(release(Context(transport=t, emit=emit, operator="t"), env, "v2"), 180)
        assert seen and proxy.severed >= 1
    assert r.ok, r.hosts[0].message  # reconnected and read the host's result
    struck_and_finished(app, "v2")


def config(tmp_path: Path, app, source: Path, **extra) -> Path:
    path = write_config(tmp_path / "deploy.yaml", app, source, build=False, health_timeout="5s")
    doc = json.loads(path.read_text())
    doc.update(extra)
    path.write_text(json.dumps(doc))
    return path


async def test_sigkill_of_capview_during_a_before_start_hook(host, tmp_path):
    app = new_app(host, build=False)
    cfg = config(tmp_path, app, make_source(tmp_path, "v1"), data={"sqlite": [DB]},
                 hooks={"before_start": ["[ -f MIGRATE ] || exit 0; " + SLOW_MIGRATION]})
    assert cli("-c", str(cfg), "release", "v1", "test").returncode == 0
    assert app.get("/hit")[0] == 200
    src = make_source(tmp_path, "v2", extra={"MIGRATE": "yes\n"})
    run = await CliRun("-c", str(cfg), "--json", "release", "v2", "test", "--source", str(src)).start()
    for _ in range(600):
        if any(e.get("event") == "LogLine" and e.get("line") == "[before_start] migrating" for e in run.events):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"the hook never started: {run.events[-3:]} {run.stderr}")
    run.signal(signal.SIGKILL)
    assert await run.wait() == -signal.SIGKILL
    struck_and_finished(app, "v2")


async def test_cli_restore_needs_yes_warns_of_schema_changes_and_shows_hook_output_inert(host, tmp_path):
    app = new_app(host, build=False)
    hostile = "printf 'boom \\033]52;c;aGk=\\007 \\033[2J\\342\\200\\256gnp.exe\\n'; exit 3"
    cfg = config(tmp_path, app, make_source(tmp_path, "v1"), data={"sqlite": [DB]},
                 hooks={"before_start": ["[ -f MIGRATE ] || exit 0; " + SLOW_MIGRATION.replace("sleep 2", "true")],
                        "on_failure": [hostile]})
    assert cli("-c", str(cfg), "release", "v1", "test").returncode == 0
    for _ in range(5):
        assert app.get("/hit")[0] == 200
    v2 = make_source(tmp_path, "v2", extra={"MIGRATE": "yes\n"})
    assert cli("-c", str(cfg), "release", "v2", "test", "--source", str(v2)).returncode == 0
    def state() -> tuple:  # everything a rollback or a restore would change (the app's -shm moves on its own)
        shared = Path(app.deploy_path, "shared")
        return (current_release(app.deploy_path), len(app.history()), sorted(p.name for p in (shared / ".snapshots").iterdir()),
                columns(shared / DB), sqlite3.connect(shared / DB).execute("SELECT count(*) FROM hits").fetchone())

    before = state()

    refused = cli("-c", str(cfg), "rollback", "test", "--to", "v1", "--restore-data")
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused
    assert "5 rows" in refused.stdout or "bytes now" in refused.stdout, refused.stdout  # the loss report first
    assert state() == before and before[0] == "v2"  # nothing changed

    warned = cli("-c", str(cfg), "rollback", "test", "--to", "v1")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "crosses a schema change (data/app.db: user_version 0 -> 2)" in warned.stdout, warned.stdout
    assert "note" in columns(Path(app.deploy_path, "shared", DB))  # not restored without --restore-data

    v3 = make_source(tmp_path, "v3", extra={"BROKEN": "x\n"})
    failed = cli("-c", str(cfg), "release", "v3", "test", "--source", str(v3))
    assert failed.returncode == 1
    out = failed.stdout + failed.stderr
    assert "[on_failure] boom" in out and "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b]52" in out and "\\u202e" in out
    assert current_release(app.deploy_path) == "v1"
    assert_states_consistent(app.deploy_path)
