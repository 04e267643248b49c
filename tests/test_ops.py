"""init, pin/unpin, history, unlock on hand-built trees (LocalTransport)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

from capview.config import SharedConfig
from capview.engine.context import Context
from capview.engine.events import HostFinished, LogLine
from capview.engine.ops import history, init, pin, unpin
from capview.engine.prune import prune
from capview.engine.ops import unlock
from capview.remote.local import LocalTransport
from fakehost import FakeHost, environment, host_config

import pytest
from capview.errors import UsageError


class Rec(list):
    def __call__(self, ev):
        self.append(ev)

    def lines(self):
        return [e.line for e in self if isinstance(e, LogLine)]

    def finished(self):
        return [e for e in self if isinstance(e, HostFinished)]


def mkctx(rec=None, now=5000.0) -> Context:
    return Context(transport=LocalTransport(), clock=lambda: now, emit=rec if rec is not None else (lambda e: None), operator="tester@box")


async def test_init_creates_layout_and_is_idempotent(tmp_path):
    dp = tmp_path / "web" / "my app"
    h = host_config(dp, shared=SharedConfig(dirs=("data", "uploads/img"), files=(".env", "conf/secret.ini")))
    rec = Rec()
    res = await init(mkctx(rec), environment(h))
    assert res.ok, rec.finished()
    for d in ("releases", "shared/data", "shared/uploads/img", ".capview"):
        assert (dp / d).is_dir()
    for f in (".env", "conf/secret.ini"):
        p = dp / "shared" / f
        assert p.read_bytes() == b"" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert "created" in rec.finished()[0].message
    (dp / "shared" / ".env").write_text("SECRET=x")
    rec2 = Rec()
    res = await init(mkctx(rec2), environment(h))
    assert res.ok and rec2.finished()[0].message == "already initialised (everything existed)"
    assert (dp / "shared" / ".env").read_text() == "SECRET=x"  # never truncated
    assert any(line.startswith("exists ") and line.endswith("shared/.env") for line in rec2.lines())
    assert [r["op"] for r in FakeHost(dp).records()] == ["init", "init"]


async def test_init_refuses_legacy_layout_and_bad_shared_paths(tmp_path):
    dp = tmp_path / "legacy"
    (dp / "data").mkdir(parents=True)
    (dp / "app").write_text("bin")
    rec = Rec()
    res = await init(mkctx(rec), environment(host_config(dp)))
    assert not res.ok and res.exit_code == 1 and "migrate-data" in rec.finished()[0].message
    assert not (dp / "releases").exists()
    with pytest.raises(UsageError):
        await init(mkctx(), environment(host_config(tmp_path / "x", shared=SharedConfig(files=("../etc/passwd",)))))


async def test_pin_protects_from_prune_and_unpin(tmp_path):
    fh = FakeHost(tmp_path / "app")
    for i in range(1, 5):
        fh.release(f"v{i}", {"a": str(i)}, deployed_at=i)
    fh.set_current("v4")
    env = environment(host_config(fh.dp))
    rec = Rec()
    assert (await pin(mkctx(rec), env, "v1")).ok
    assert (fh.rel("v1") / ".capview" / "pinned").exists()
    assert (await pin(mkctx(rec), env, "v1")).ok and "already pinned" in rec.finished()[-1].message
    bad = await pin(mkctx(rec), env, "v9")
    assert not bad.ok and "no release v9" in rec.finished()[-1].message
    with pytest.raises(UsageError):
        await pin(mkctx(), env, "../v1")
    await prune(mkctx(), env, keep=1)
    assert sorted(os.listdir(fh.dp / "releases")) == ["v1", "v3", "v4"]
    assert (await unpin(mkctx(), env, "v1")).ok and not (fh.rel("v1") / ".capview" / "pinned").exists()
    await prune(mkctx(), env, keep=1)
    assert sorted(os.listdir(fh.dp / "releases")) == ["v3", "v4"]
    ops = [r["op"] for r in fh.records()]
    assert ops == ["pin", "prune", "unpin", "prune"]


async def test_history_per_host_with_limit_and_corrupt_lines(tmp_path):
    fh = FakeHost(tmp_path / "app")
    fh.history_release("v1"), fh.history_release("v2", "v1")
    with open(fh.dp / ".capview" / "history.jsonl", "a") as f:
        f.write('{"op": "trunc\n')
    fh.history_rollback("v2", "v1")
    empty = FakeHost(tmp_path / "empty")
    env = environment(host_config(fh.dp, "a"), host_config(empty.dp, "b"))
    got = await history(mkctx(), env)
    assert [r["op"] for r in got["a"]] == ["release", "release", "rollback"] and got["b"] == []
    got = await history(mkctx(), env, host="a", limit=2)
    assert [r["op"] for r in got["a"]] == ["rollback"]  # last 2 lines, one corrupt


def lock_owner(fh: FakeHost, **kw) -> dict:
    fh.hold_lock(**kw)
    return json.loads((fh.dp / ".capview/lock/owner.json").read_text())


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


async def test_unlock_rules(tmp_path):
    fh = FakeHost(tmp_path / "app")
    env = environment(host_config(fh.dp))
    me = socket.gethostname()
    rec = Rec()
    assert (await unlock(mkctx(rec), env)).ok and rec.finished()[-1].message == "not locked"
    # fresh heartbeat: kept
    lock_owner(fh, machine=me, pid=dead_pid(), heartbeat=4950.0)
    res = await unlock(mkctx(rec), env)
    assert res.exit_code == 3 and "heartbeat is recent" in rec.finished()[-1].message and "--force" in rec.finished()[-1].message
    assert any("locked by someone@elsewhere" in line for line in rec.lines())
    # stale, but its pid on this machine is alive (ours)
    (fh.dp / ".capview/lock/owner.json").write_text(json.dumps({"operator": "a@b", "machine": me, "pid": os.getpid(), "heartbeat": 100, "started": 100, "operation": "release"}))
    assert (await unlock(mkctx(rec), env)).exit_code == 3 and "still running" in rec.finished()[-1].message
    # stale, other machine: cannot check -> kept
    (fh.dp / ".capview/lock/owner.json").write_text(json.dumps({"operator": "a@b", "machine": "other", "pid": 1, "heartbeat": 100, "started": 100, "operation": "release"}))
    assert (await unlock(mkctx(rec), env)).exit_code == 3 and "cannot be checked" in rec.finished()[-1].message
    # stale, this machine, pid gone: removed
    (fh.dp / ".capview/lock/owner.json").write_text(json.dumps({"operator": "a@b", "machine": me, "pid": dead_pid(), "heartbeat": 100, "started": 100, "operation": "release"}))
    res = await unlock(mkctx(rec), env)
    assert res.ok and not (fh.dp / ".capview/lock").exists() and "removed lock" in rec.finished()[-1].message
    assert fh.records()[-1]["op"] == "unlock" and fh.records()[-1]["forced"] is False


async def test_unlock_force_and_unreadable_owner(tmp_path):
    fh = FakeHost(tmp_path / "app")
    env = environment(host_config(fh.dp))
    (fh.dp / ".capview/lock").mkdir()  # crashed before writing owner.json
    rec = Rec()
    assert (await unlock(mkctx(rec), env)).exit_code == 3 and "unreadable" in rec.finished()[-1].message
    assert (await unlock(mkctx(rec), env, force=True)).ok and not (fh.dp / ".capview/lock").exists()
    assert fh.records()[-1]["forced"] is True


async def test_unlock_never_removes_a_lock_taken_meanwhile(tmp_path):
    from capview.engine.layout import HostPaths
    from capview.engine.scripts.lock import remove_if_unchanged
    from capview.engine.scripts.ops import append_record
    from capview.engine.scripts.shell import Frames
    fh = FakeHost(tmp_path / "app")
    lock_owner(fh, heartbeat=1)
    frames = Frames.new()
    paths = HostPaths(str(fh.dp))
    script = remove_if_unchanged(paths, '{"other": "owner"}', frames, append_record(paths, {"op": "unlock"}))
    out = await LocalTransport().run(host_config(fh.dp), script)
    assert [k for k, _, _ in frames.parse(out.stdout)] == ["changed"]
    assert (fh.dp / ".capview/lock/owner.json").exists()
