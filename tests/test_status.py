"""status(): one script per host, parsed defensively (LocalTransport, hand-built trees)."""

from __future__ import annotations

import os

import pytest

from capview.engine.context import Context
from capview.engine.status import snapshot, status
from capview.errors import HostUnreachable
from capview.remote.local import LocalTransport
from fakehost import FakeHost, environment, host_config

BIG = "x" * 10_000


def ctx(transport=None) -> Context:
    return Context(transport=transport or LocalTransport(), clock=lambda: 5000.0, operator="tester@box")


@pytest.fixture
def fh(tmp_path):
    return FakeHost(tmp_path / "app")


async def test_sizes_count_hard_links_once_and_odd_names_parse(fh):
    odd = "we\nird\x1b[31m\t.txt"
    fh.release("v1", {"app.py": BIG, "lib/a.py": "a" * 3000}, deployed_at=100)
    fh.release("v2", {"app.py": BIG, "lib/a.py": "b" * 3000, odd: "z" * 100}, link_from="v1", deployed_at=200)
    os.link(fh.rel("v2") / "lib/a.py", fh.rel("v2") / "lib/a-again.py")  # same inode twice in one release
    fh.set_current("v2")
    fh.history_release("v1"), fh.history_release("v2", "v1")
    snap = await snapshot(ctx(), host_config(fh.dp))
    st = snap.status
    assert st.reachable and st.layout == "releases" and st.current == "v2" and st.previous == "v1"
    v1, v2 = st.releases
    assert (v1.version, v1.state, v1.previous) == ("v1", "superseded", True)
    assert (v2.version, v2.state, v2.current) == ("v2", "live", True)
    assert v1.files == 2 and v1.size_bytes == 13_000
    assert v2.files == 4 and v2.size_bytes == 13_100  # a-again.py is the same inode as a.py
    assert v1.unique_bytes > 3000 - 1 and v1.unique_bytes < 10_000  # app.py is shared with v2
    assert v2.unique_bytes >= 3100 and v2.unique_bytes < 13_000
    assert v1.unique_disk_bytes > 0 and v2.unique_disk_bytes > 0
    assert st.free_bytes and st.free_bytes > 0
    assert (v2.operator, v2.commit, v2.health, v2.downtime) == ("tester@box", "abc1234", "ok", 0.4)


async def test_states_incomplete_failed_and_in_progress(fh):
    fh.release("v1", {"a": "1"}, deployed_at=100)
    fh.release("v2", {"a": "2"}, state="live", deployed_at=200)  # was live, not current
    fh.release("v3", {"a": "3"}, state="failed")
    fh.release("v4", {"a": "4"}, write_json=False)
    fh.release("v5", {"a": "5"}, state="uploading")
    (fh.rel("v1") / ".capview" / "release.json").write_text('{"state": "live", trunc')  # corrupt
    fh.set_current("v2")
    states = {r.version: r.state for r in (await snapshot(ctx(), host_config(fh.dp))).status.releases}
    assert states == {"v1": "incomplete", "v2": "live", "v3": "failed", "v4": "incomplete", "v5": "incomplete"}
    fh.hold_lock(version="v5")
    st = (await snapshot(ctx(), host_config(fh.dp))).status
    assert {r.version: r.state for r in st.releases}["v5"] == "uploading"
    assert st.lock.operator == "someone@elsewhere" and st.lock.pid == 4242 and st.lock.machine == "elsewhere"
    # no history: previous falls back to the last superseded one (none here besides current)
    assert st.previous is None


async def test_superseded_and_previous_without_history(fh):
    fh.release("v1", {"a": "1"}, state="superseded", deployed_at=100)
    fh.release("v2", {"a": "2"}, state="superseded", deployed_at=300)
    fh.release("v3", {"a": "3"}, state="live", deployed_at=400)
    fh.set_current("v3")
    st = (await snapshot(ctx(), host_config(fh.dp))).status
    assert st.previous == "v2"
    assert [r.version for r in st.releases] == ["v1", "v2", "v3"]


async def test_untrusted_entries_symlink_junk_trash(fh, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    fh.release("v1", {"a": "1"}, deployed_at=100)
    fh.set_current("v1")
    os.symlink(str(outside), fh.rel("evil"))
    (fh.dp / "releases" / "bad\nname").mkdir()
    (fh.dp / "releases" / "-dash").mkdir()
    (fh.dp / "releases" / "afile").write_text("")
    (fh.dp / "releases" / ".trash-v0").mkdir()
    # forged markers inside a release.json cannot create sections
    fh.release("v2", {"a": "2"}, deployed_at=50)
    (fh.rel("v2") / ".capview" / "release.json").write_text("{\n@@cv section json v9\n@@cv-0 rel v9\n{}\n")
    snap = await snapshot(ctx(), host_config(fh.dp))
    assert snap.junk == 3 and snap.trash == 1
    assert snap.symlinks == {"evil": str(outside)}
    evil = next(r for r in snap.status.releases if r.version == "evil")
    assert evil.symlink == str(outside) and evil.state == "incomplete" and evil.files == 0
    assert sorted(r.version for r in snap.status.releases) == ["evil", "v1", "v2"]
    assert next(r for r in snap.status.releases if r.version == "v2").state == "incomplete"
    assert "evil" not in snap.listings  # never walked through the link


async def test_layouts(tmp_path):
    legacy = tmp_path / "legacy"
    (legacy / "data").mkdir(parents=True)
    (legacy / ".env").write_text("A=1")
    (legacy / "app").write_text("bin")
    (legacy / "odd\nname").write_text("")
    snap = await snapshot(ctx(), host_config(legacy))
    assert snap.status.layout == "legacy" and snap.status.needs_migration
    assert snap.stray == (".env", "app", "data", "odd\nname")
    (legacy / "releases").mkdir()
    assert (await snapshot(ctx(), host_config(legacy))).status.layout == "mixed"
    assert (await snapshot(ctx(), host_config(tmp_path / "missing"))).status.layout == "empty"
    fresh = FakeHost(tmp_path / "fresh")
    st = (await snapshot(ctx(), host_config(fresh.dp))).status
    assert st.layout == "releases" and st.releases == () and st.current is None


class FlakyTransport(LocalTransport):
    async def run(self, host, script, **kw):
        if host.name == "down":
            raise HostUnreachable("down: connection refused\nsecond line")
        return await super().run(host, script, **kw)


async def test_all_hosts_at_once_and_unreachable_is_not_raised(tmp_path):
    a, b = FakeHost(tmp_path / "a"), FakeHost(tmp_path / "b")
    a.release("v1", {"f": "1"}, deployed_at=1)
    a.set_current("v1")
    env = environment(host_config(a.dp, "a"), host_config(b.dp, "down"), host_config(b.dp, "b"))
    sts = await status(ctx(FlakyTransport()), env)
    assert [s.host for s in sts] == ["a", "down", "b"]
    assert sts[0].current == "v1" and sts[0].env == "test"
    assert not sts[1].reachable and sts[1].error == "down: connection refused"
    assert sts[2].reachable and sts[2].releases == ()
    only = await status(ctx(), env, host="a")
    assert [s.host for s in only] == ["a"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("detail", [True, False])
async def test_release_json_that_is_a_fifo_a_device_link_or_huge_never_stalls_the_listing(fh, detail):
    """issue 21's one awk reads every release.json: only regular files reach it (a FIFO
    would block it, a link to /dev/zero never end), and one over 1 MiB is still cut."""
    for i, v in enumerate(("v1", "v2", "v3", "v4")):
        fh.release(v, {"a": v}, deployed_at=100 + i)
    fh.set_current("v4")
    meta = lambda v: fh.rel(v) / ".capview" / "release.json"  # noqa: E731
    meta("v1").unlink()
    os.mkfifo(meta("v1"))
    meta("v2").unlink()
    os.symlink("/dev/zero", meta("v2"))
    meta("v3").write_text('{"state": "superseded", "pad": [\n' + '"xxxxxxxxxxxxxxxx",\n' * 120_000 + '""]}')
    snap = await snapshot(ctx(), host_config(fh.dp), detail=detail)
    by = {r.version: r for r in snap.status.releases}
    assert by["v1"].state == by["v2"].state == "incomplete" and by["v4"].state == "live"
    assert "release.json missing or unreadable" in (by["v1"].error or "")
    assert "over 1024 KiB" in (by["v3"].error or ""), by["v3"]
