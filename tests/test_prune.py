"""prune: the rules (pure), and the host script on hand-built trees (LocalTransport)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from capview.engine.context import Context
from capview.engine.events import DryRunScript, HostFinished, LogLine, PhaseFinished, HostWarning
from capview.engine.model import ReleaseInfo
from capview.engine.prune import choose_deletions, classify, plan_prune, prune
from capview.engine.status import snapshot
from capview.errors import UsageError
from capview.remote.local import LocalTransport
from fakehost import FakeHost, du_k, environment, host_config, tree_hash

COMMON = {"app.bin": "B" * 50_000, "templates/index.html": "<h1>hi</h1>" * 100}


class Rec:
    def __init__(self):
        self.events = []

    def __call__(self, ev):
        self.events.append(ev)

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def mkctx(rec=None) -> Context:
    return Context(transport=LocalTransport(), clock=lambda: 5000.0, emit=rec if rec is not None else (lambda e: None), operator="tester@box")


def issue_example(fh: FakeHost) -> None:
    """v1..v7, v5 failed (auto-rolled back), v2 pinned, current rolled back from v7 to v6."""
    prev = None
    for i in range(1, 8):
        v = f"v{i}"
        files = {**COMMON, "version.txt": v * 1000, f"assets/{v}.js": os.urandom(20_000)}
        failed = i == 5
        fh.release(v, files, link_from=prev, state="failed" if failed else "superseded",
                   deployed_at=None if failed else 100.0 * i, pinned=i == 2)
        fh.history_release(v, prev, outcome="rolled_back" if failed else "ok")
        if not failed:
            prev = v
    fh.history_rollback("v7", "v6")
    fh.set_current("v6")


def surviving(fh: FakeHost) -> list[str]:
    return sorted(os.listdir(fh.dp / "releases"))


def test_rules_issue_example_pure():
    def r(v, state="superseded", t=None, pinned=False):
        return ReleaseInfo(v, state, deployed_at=t, pinned=pinned, started_at=t)

    rels = [r("v1", t=1), r("v2", t=2, pinned=True), r("v3", t=3), r("v4", t=4), r("v5", "failed", None),
            r("v6", "live", 6), r("v7", t=7)]
    items = {i.version: (i.action, i.reason) for i in classify(rels, "v6", "v4", 3)}
    assert choose_deletions(rels, "v6", "v4", 3) == ["v5", "v1", "v3"]  # oldest first; failed has no deploy time
    assert items["v6"][0] == items["v4"][0] == items["v2"][0] == "protected"
    assert items["v7"] == ("keep", "within keep 3")
    assert items["v5"] == ("delete", "failed")
    assert items["v1"] == ("delete", "older than the newest 3")


def test_rules_order_by_deploy_time_not_name_and_edge_cases():
    rels = [ReleaseInfo("v10", "live", deployed_at=10), ReleaseInfo("v9", "superseded", deployed_at=9),
            ReleaseInfo("v8", "superseded", started_at=8), ReleaseInfo("b", "incomplete"),
            ReleaseInfo("c", "uploading"), ReleaseInfo("lnk", "incomplete", symlink="/etc")]
    assert choose_deletions(rels, "v10", None, 2) == ["b", "lnk", "v8"]
    assert choose_deletions(rels, "v10", "v8", 0) == ["b", "lnk", "v9"]
    with pytest.raises(UsageError):
        classify(rels, None, None, -1)


async def test_issue_example_on_disk_freed_matches_du(tmp_path):
    fh = FakeHost(tmp_path / "app")
    issue_example(fh)
    h = host_config(fh.dp, keep_releases=3)
    snap = await snapshot(mkctx(), h)
    assert snap.status.current == "v6" and snap.status.previous == "v4"
    [plan] = await plan_prune(mkctx(), environment(h))
    assert sorted(plan.deletions) == ["v1", "v3", "v5"]
    outside_hash = tree_hash(fh.dp / "shared")
    before = du_k(fh.dp / "releases")
    rec = Rec()
    res = await prune(mkctx(rec), environment(h))
    after = du_k(fh.dp / "releases")
    assert res.ok and res.exit_code == 0
    assert surviving(fh) == ["v2", "v4", "v6", "v7"]
    last = fh.records()[-1]
    assert last["op"] == "prune" and sorted(last["deleted"]) == ["v1", "v3", "v5"]
    assert last["freed"] == (before - after) * 1024 > 0
    assert abs(plan.total - last["freed"]) < 1024 * 3  # estimate from inode listing vs du's KiB rounding
    assert tree_hash(fh.dp / "shared") == outside_hash
    assert not (fh.dp / ".capview" / "lock").exists()
    [hf] = rec.of(HostFinished)
    assert hf.outcome == "ok" and "deleted 3 releases" in hf.message
    assert [e.phase for e in rec.of(PhaseFinished)] == ["cleanup"]
    # surviving releases still intact, hard links still fine
    assert (fh.rel("v2") / "app.bin").read_text() == COMMON["app.bin"]
    # again: nothing more to delete (keep 3 = v7,v6,v4 + pinned v2)
    res2 = await prune(mkctx(), environment(h))
    assert res2.ok and surviving(fh) == ["v2", "v4", "v6", "v7"] and fh.records()[-1]["deleted"] == []


async def test_dry_run_changes_nothing(tmp_path):
    fh = FakeHost(tmp_path / "app")
    issue_example(fh)
    before = tree_hash(fh.dp)
    rec = Rec()
    res = await prune(mkctx(rec), environment(host_config(fh.dp)), keep=3, dry_run=True)
    assert res.ok and tree_hash(fh.dp) == before
    assert len(rec.of(DryRunScript)) == 1 and "would delete 3" in rec.of(HostFinished)[0].message
    assert any("delete    v5 (failed" in e.line for e in rec.of(LogLine))


async def test_symlinked_release_is_unlinked_not_followed(tmp_path):
    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"a": "1"}, deployed_at=1)
    fh.set_current("v1")
    outside = tmp_path / "outside"
    (outside / ".capview").mkdir(parents=True)
    (outside / "precious").write_text("keep me")
    os.symlink(str(outside), fh.rel("evil"))
    os.symlink(str(outside), fh.rel("v0"))  # looks like an old release
    rec = Rec()
    res = await prune(mkctx(rec), environment(host_config(fh.dp)), keep=5)
    assert res.ok and surviving(fh) == ["v1"]
    assert (outside / "precious").read_text() == "keep me" and (outside / ".capview").is_dir()
    assert any("symlink" in w.message and "evil" in w.message for w in rec.of(HostWarning))
    assert sorted(fh.records()[-1]["deleted"]) == ["evil", "v0"]


async def test_trash_leftovers_are_finished_and_never_listed(tmp_path):
    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"a": "1"}, deployed_at=1)
    fh.set_current("v1")
    fh.release("v0", {"big": "x" * 100_000}, deployed_at=0.5)
    os.rename(fh.rel("v0"), fh.dp / "releases" / ".trash-v0")  # an interrupted earlier prune
    snap = await snapshot(mkctx(), host_config(fh.dp))
    assert [r.version for r in snap.status.releases] == ["v1"] and snap.trash == 1
    before = du_k(fh.dp / "releases")
    res = await prune(mkctx(), environment(host_config(fh.dp)), keep=1)
    assert res.ok and surviving(fh) == ["v1"]
    assert fh.records()[-1]["freed"] == (before - du_k(fh.dp / "releases")) * 1024 >= 100_000


async def test_host_rechecks_current_and_pinned(tmp_path):
    fh = FakeHost(tmp_path / "app")
    for i in range(1, 4):
        fh.release(f"v{i}", {"a": str(i)}, deployed_at=i)
    fh.set_current("v1")
    from capview.engine.layout import HostPaths
    from capview.engine.prune import parse_prune
    from capview.engine.scripts.cleanup import prune_script, stdin_list
    from capview.engine.scripts.shell import Frames
    (fh.rel("v2") / ".capview" / "pinned").touch()  # pinned after the plan was made
    frames = Frames.new()
    out = await LocalTransport().run(host_config(fh.dp), prune_script(HostPaths(str(fh.dp)), frames),
                                     stdin=stdin_list(["v1", "v2", "v3", "gone", "../etc", "-rf", ".."]))
    run = parse_prune((k, a) for k, a, _ in frames.parse(out.stdout))
    assert run.deleted == ("v3",) and dict(run.skipped) == {"v1": "it is current", "v2": "pinned", "gone": "no longer exists"}
    assert surviving(fh) == ["v1", "v2"]  # a name that is not a release name is never touched (the list is on stdin)


async def test_locked_host_exits_3_and_deletes_nothing(tmp_path):
    fh = FakeHost(tmp_path / "app")
    for i in range(1, 4):
        fh.release(f"v{i}", {"a": str(i)}, deployed_at=i)
    fh.set_current("v3")
    fh.hold_lock(version="v4", operation="release")
    rec = Rec()
    res = await prune(mkctx(rec), environment(host_config(fh.dp)), keep=1)
    assert not res.ok and res.exit_code == 3
    assert "locked by someone@elsewhere" in rec.of(HostFinished)[0].message
    assert surviving(fh) == ["v1", "v2", "v3"] and (fh.dp / ".capview/lock/owner.json").exists()


async def test_in_progress_release_of_the_lock_holder_is_protected(tmp_path):
    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"a": "1"}, deployed_at=1)
    fh.release("v2", {"a": "2"}, state="uploading")
    fh.release("v3", {"a": "3"}, state="building")  # crashed earlier deploy
    fh.set_current("v1")
    fh.hold_lock(version="v2")  # the deploy running now: its cleanup prunes under its own lock
    from capview.engine.layout import HostPaths
    from capview.engine.releases_meta import parse_release_listing
    from capview.engine.retention import after_deploy
    from capview.engine.scripts.cleanup import prune_script, stdin_list
    from capview.engine.scripts.release import listing
    from capview.engine.scripts.shell import Frames
    frames = Frames.new()
    h = host_config(fh.dp, keep_releases=1)
    paths = HostPaths(str(fh.dp))
    out = await LocalTransport().run(h, listing(paths, frames, manifest_of_current=False))
    lst = parse_release_listing(out.stdout, frames, str(fh.dp))
    deleting = after_deploy(lst.releases, "v2", "v1", 1, 10.0)  # the deploy's own rule (the one it runs)
    assert deleting == ["v3"]
    res = await LocalTransport().run(h, prune_script(paths, frames), stdin=stdin_list(deleting))
    assert res.ok and surviving(fh) == ["v1", "v2"]


@pytest.fixture
def immutable(tmp_path):
    made = []

    def make(path):
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
            pytest.skip("chattr +i unavailable (needed to force a permission error as root)")
        made.append(path)
    yield make
    for p in made:
        subprocess.run(["chattr", "-i", str(p)])


async def test_permission_error_is_a_warning_naming_the_path(tmp_path, immutable):
    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"a": "1", "sub/stuck": "s"}, deployed_at=1)
    fh.release("v2", {"a": "2"}, deployed_at=2)
    fh.release("v3", {"a": "3"}, deployed_at=3)
    fh.set_current("v3")
    if os.geteuid() == 0:
        immutable(fh.rel("v1") / "sub" / "stuck")
    else:
        (fh.rel("v1") / "sub").chmod(0o500)
    rec = Rec()
    res = await prune(mkctx(rec), environment(host_config(fh.dp)), keep=1)
    assert res.ok and surviving(fh) == [".trash-v1", "v2", "v3"]
    # the trash dir of the batch is named after its first release; the release keeps its name in it
    assert any(".trash-v1/v1/sub/stuck" in w.message for w in rec.of(HostWarning))
    assert [r.version for r in (await snapshot(mkctx(), host_config(fh.dp))).status.releases] == ["v2", "v3"]


async def test_images_of_pruned_releases_are_removed(tmp_path, monkeypatch):
    from capview.config import BuildConfig
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "podman.log"
    (bin_dir / "podman").write_text(
        f"#!/bin/sh\necho \"$*\" >> {log}\n"
        'if [ "$1 $2" = "image exists" ]; then case $3 in *:v1) exit 0;; *) exit 1;; esac; fi\nexit 0\n')
    (bin_dir / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    fh = FakeHost(tmp_path / "app")
    for i in range(1, 4):
        fh.release(f"v{i}", {"a": str(i)}, deployed_at=i)
    fh.set_current("v3")
    h = host_config(fh.dp, build=BuildConfig(command="podman build -t {image}:{version} .", image="localhost/app"))
    rec = Rec()
    res = await prune(mkctx(rec), environment(h), keep=1)
    assert res.ok and surviving(fh) == ["v2", "v3"]  # v2 is the previous (no history -> last superseded)
    assert log.read_text().splitlines() == ["image exists localhost/app:v1", "rmi localhost/app:v1"]
    assert any(e.line == "removed image localhost/app:v1" for e in rec.of(LogLine))


async def test_unreachable_host_is_exit_4(tmp_path):
    from capview.errors import HostUnreachable

    class Down(LocalTransport):
        async def run(self, host, script, **kw):
            raise HostUnreachable("h1: connection refused")

    ctx = Context(transport=Down(), clock=lambda: 1.0, operator="t@b")
    res = await prune(ctx, environment(host_config(tmp_path)))
    assert res.exit_code == 4 and res.hosts[0].message == "h1: connection refused"
    [plan] = await plan_prune(ctx, environment(host_config(tmp_path)))
    assert not plan.reachable and plan.error == "h1: connection refused"


async def test_hundreds_of_releases_go_in_batches_and_freed_is_exact(tmp_path):
    # more releases than one rm batch (scripts/cleanup.py BATCH): every one is deleted,
    # and a file shared only by deleted releases in different batches counts as freed once
    from capview.engine.scripts.cleanup import BATCH

    fh = FakeHost(tmp_path / "app")
    n = BATCH * 2 + 25
    prev = None
    for i in range(n):
        v = f"r{i:04d}"
        shared = "S" if i < n - 1 else "T"  # the newest (kept: the previous live one) shares nothing
        fh.release(v, {"shared.bin": shared * 40_000, "own.txt": v * 500}, link_from=prev, deployed_at=10.0 + i)
        prev = v
    fh.release("live", {"new.bin": "N" * 1000}, deployed_at=10.0 + n)
    fh.set_current("live")
    before = du_k(fh.dp / "releases")
    res = await prune(mkctx(), environment(host_config(fh.dp)), keep=1)
    assert res.ok and surviving(fh) == ["live", f"r{n - 1:04d}"]
    last = fh.records()[-1]
    assert len(last["deleted"]) == n - 1
    # du's difference also carries releases/ itself growing by a block or two under the
    # hundreds of renames (a directory never shrinks); everything deleted is counted
    du_freed = (before - du_k(fh.dp / "releases")) * 1024
    assert du_freed <= last["freed"] <= du_freed + 16 * 1024 and du_freed > 40_000 + n * 4096


async def test_removal_outliving_the_wait_is_reported_and_finishes_on_its_own(tmp_path, monkeypatch):
    """issue 21: the trash's rm runs in a job the script waits on RM_WAIT at most (10,000
    releases are 10+ s of filesystem time); when it outlives that, the prune says so, the
    deleted releases are never listed, and the job still removes everything."""
    import asyncio

    from capview.engine.scripts import cleanup

    monkeypatch.setattr(cleanup, "RM_WAIT", 0.0)  # not waited on at all: still running when the script ends
    fh = FakeHost(tmp_path / "app")
    many = {f"d{i // 50}/f{i}": "x" for i in range(3000)}  # enough files that rm takes a while
    fh.release("v1", many, deployed_at=1)
    fh.release("v2", {"a": "2"}, deployed_at=2)
    fh.release("v3", {"a": "3"}, deployed_at=3)
    fh.set_current("v3")
    rec = Rec()
    res = await prune(mkctx(rec), environment(host_config(fh.dp)), keep=1)
    done = rec.of(HostFinished)[0]
    assert res.ok and "still being removed on the host: 1 releases/.trash-* dirs" in done.message, done.message
    assert any("still being removed" in e.line for e in rec.of(LogLine))
    assert [r.version for r in (await snapshot(mkctx(), host_config(fh.dp))).status.releases] == ["v2", "v3"]
    for _ in range(200):
        if surviving(fh) == ["v2", "v3"]:
            break
        await asyncio.sleep(0.05)
    assert surviving(fh) == ["v2", "v3"]


async def test_deletes_of_a_cold_host_say_sizes_not_summed_instead_of_zero(tmp_path, monkeypatch):
    """The deletes read the sums listing; on a cold host it may not wait for them (issue 21):
    the plan shown says "not summed yet", never "frees 0 B", and the deletes are the same."""
    from capview.engine.scripts import usage

    monkeypatch.setattr(usage, "COLD_WAIT", 0.0)
    # the job starts before the release.json framing: slow it, so the wait surely ends first
    monkeypatch.setattr(usage, "BATCH_FIND", "sleep 1; " + usage.BATCH_FIND)
    fh = FakeHost(tmp_path / "app")
    for i in range(1, 5):
        fh.release(f"v{i}", {**COMMON, "version.txt": f"v{i}" * 1000}, deployed_at=float(i))
    fh.set_current("v4")
    rec = Rec()
    res = await prune(mkctx(rec), environment(host_config(fh.dp)), keep=2)
    assert res.ok and surviving(fh)[-2:] == ["v3", "v4"] and not {"v1", "v2"} & set(surviving(fh))
    lines = [e.line for e in rec.of(LogLine)]
    assert any(ln.startswith("delete") and "frees not summed yet" in ln for ln in lines), lines
    assert not any("frees 0 B" in ln for ln in lines), lines
