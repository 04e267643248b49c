"""engine/hooks.py's sh, run for real by local sh (LocalTransport) in a temp deploy path:
quoting, the CAPVIEW_* environment, hooks.log, the [point] prefix, timeouts, failures;
and the snapshot prune that goes with the releases."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from capview.config import DataConfig, HooksConfig, HostConfig, Settings
from capview.engine.hooks import (
    HookContext, dry_run_listing, failure_words, hook_failure, hook_function, is_hook_output, release_pieces,
    rollback_pieces,
)
from capview.engine.layout import HostPaths
from capview.engine.scripts.shell import Frames
from capview.engine.snapshots import prune_with_releases_script
from capview.remote.local import LocalTransport

F = Frames("@@cv-test")
HOSTILE = """echo "it's $HOME" '$(id)' `echo tick`; printf '%s\\n' "a;b|c&d" """


def host_for(dp: Path, **hooks) -> HostConfig:
    s = Settings(app="a", deploy_path=str(dp), source=dp, hooks=HooksConfig(**hooks))
    return HostConfig(name="web-1", host="localhost", settings=s, env="prod")


def run(h: HostConfig, script: str) -> tuple[int, str, str]:
    res = asyncio.run(LocalTransport().run(h, F.prelude() + script))
    return res.exit_status, res.stdout, res.stderr


@pytest.fixture
def dp(tmp_path: Path) -> Path:
    (tmp_path / "releases" / "v2" / ".capview").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    return tmp_path


def hook(h: HostConfig, point: str = "before_start") -> str:
    hc = HookContext.of(h, "release", "v2", "v1")
    return hook_function("cv_h", h.settings, HostPaths(h.settings.deploy_path), point, hc)


def test_commands_reach_sh_c_intact_with_the_environment_and_the_log(dp: Path) -> None:
    env = 'echo "$CAPVIEW_VERSION|$CAPVIEW_PREVIOUS|$CAPVIEW_OPERATION|$CAPVIEW_ENV|$CAPVIEW_HOST|$(pwd)"'
    h = host_for(dp, before_start=(HOSTILE, env, "echo to stderr >&2"))
    rc, out, err = run(h, hook(h) + "cv_h\n")
    assert rc == 0, err
    lines = [line for line in out.splitlines() if not line.startswith("@@cv-test")]
    home = os.environ.get("HOME", "")
    assert lines == [f"[before_start] it's {home} $(id) tick", "[before_start] a;b|c&d",
                     f"[before_start] v2|v1|release|prod|web-1|{dp}/releases/v2", "[before_start] to stderr"]
    assert all(is_hook_output(line) for line in lines)
    log = dp / "releases/v2/.capview/hooks.log"
    assert (log.stat().st_mode & 0o777) == 0o600
    text = log.read_text()
    assert "== before_start 1/3: " in text and HOSTILE in text and "to stderr" in text
    assert [f.split(" ")[2:] for f in out.splitlines() if f.startswith("@@cv-test hook ")] == [
        ["before_start", "1", "3"], ["before_start", "2", "3"], ["before_start", "3", "3"]]


def test_a_failing_command_stops_the_list_and_says_which(dp: Path) -> None:
    h = host_for(dp, after_upload=("true", "echo no; exit 7", "echo never"))
    rc, out, err = run(h, hook(h, "after_upload") + "cv_h || echo \"rc=$?\"\n")
    assert "rc=7" in out and "never" not in out
    frames = [F.line(line) for line in out.splitlines()]
    found = hook_failure([f for f in frames if f])
    assert found == ("after_upload", 2, 7)
    assert failure_words(found, "v2") == "hooks.after_upload command 2 failed (exit 7); see releases/v2/.capview/hooks.log"
    assert "after_upload 2 failed: exit 7" in (dp / "releases/v2/.capview/hooks.log").read_text()


def test_a_command_over_its_timeout_is_killed(dp: Path) -> None:
    h = host_for(dp, before_start=("echo start; sleep 30; echo late",), timeout=1)
    rc, out, err = run(h, hook(h) + "cv_h || echo \"rc=$?\"\n")
    assert "rc=124" in out and "late" not in out
    assert "timed out after 1s" in (dp / "releases/v2/.capview/hooks.log").read_text()


def test_no_commands_no_sh_and_the_dry_run_listing(dp: Path) -> None:
    h = host_for(dp, before_start=("./bin/migrate",), after_switch=("echo a", "echo b"))
    assert hook(h, "after_upload") == ""
    assert dry_run_listing(h.settings, ("after_upload", "before_start", "after_switch")) == [
        "hooks.before_start [1/1] (timeout 300s): ./bin/migrate",
        "hooks.after_switch [1/2] (timeout 300s): echo a", "hooks.after_switch [2/2] (timeout 300s): echo b"]
    pieces = release_pieces(h, "v2", "v1", 0.0)
    assert pieces["after_stop"] == "" and pieces["before_revert"] == ""  # no data.sqlite: no snapshot
    assert "cv_start_reason='before_start hook failed'" in pieces["before_start"]
    assert "hooks.after_switch failed" in pieces["after_healthy"]
    assert rollback_pieces(h, "v1", "v2", 0.0, run_hooks=False, restore=False)["before_start"] == ""
    assert "cv_hooks_before_start" in rollback_pieces(h, "v1", "v2", 0.0, run_hooks=True, restore=False)["before_start"]


def test_snapshots_go_with_their_releases_and_beyond_the_count(dp: Path) -> None:
    snaps = dp / "shared" / ".snapshots"
    for i, tag in enumerate(["gone", "v0", "v1", "v2", "_restore-1", "_restore-2", "_restore-3"]):
        (snaps / tag).mkdir(parents=True)
        os.utime(snaps / tag, (1000 + i, 1000 + i))
    for v in ("v0", "v1"):
        (dp / "releases" / v).mkdir()
    h = dataclasses.replace(host_for(dp), settings=dataclasses.replace(host_for(dp).settings,
                                                                        data=DataConfig(sqlite=("data/app.db",), snapshots=2)))
    rc, out, err = run(h, prune_with_releases_script(HostPaths(str(dp)), 2))
    assert rc == 0, err
    assert sorted(p.name for p in snaps.iterdir()) == ["_restore-2", "_restore-3", "v1", "v2"]


def test_preflight_checks_sqlite3_and_timeout_only_when_configured(dp: Path) -> None:
    from capview.engine.scripts.status import preflight

    plain = host_for(dp)
    assert "sqlite3 is not" not in preflight(plain) and "timeout (coreutils)" not in preflight(plain)
    h = host_for(dp, before_start=("./bin/migrate",))
    h = dataclasses.replace(h, settings=dataclasses.replace(h.settings, data=DataConfig(sqlite=("data/app.db",))))
    text = preflight(h)
    assert "sqlite3 is not installed on the host (data.sqlite snapshots need it)" in text
    assert "timeout (coreutils) is not installed" in text


def test_the_loss_report_and_the_schema_warning_show_host_strings_inert() -> None:
    from capview.cli.data import data_text
    from capview.engine.data import DataPlan, losses
    from capview.engine.snapshots import DbSnapshot, SnapshotMeta

    evil = "t\x1b]52;c;aGk=\x07\u202e"
    then = SnapshotMeta("v1", 100.0, "v1", "", (DbSnapshot("data/app.db", 4096, 1, "a" * 64, "ok", {evil: 3, "keep": 1}),))
    now = SnapshotMeta("_live", 200.0, None, "", (DbSnapshot("data/app.db", 8192, 2, "b" * 64, "ok", {evil: 10, "new": 2}),))
    plan = DataPlan("web-1\x1b[2J", "v1", then, now, ["data/app.db: user_version 1 -> 2"], losses(then, now))
    assert "  table new: 2 rows now, not in the snapshot (dropped)" in plan.losses
    assert "  table keep: not there now, 1 rows in the snapshot" in plan.losses
    for restore in (True, False):
        text = data_text([plan], restore=restore, now=300.0)
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
    text = data_text([plan], restore=True, now=300.0)
    assert "7 rows written since are lost" in text and "8192 bytes now, 4096 bytes in the snapshot" in text
    from capview.units import ago

    assert f"snapshot taken {ago(200.0)};" in text
    assert "crosses a schema change (data/app.db: user_version 1 -> 2)" in data_text([plan], restore=False)
