"""The release lifecycle on the real testbed: sshd, systemd --user, podman build."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import DryRunScript, HostFinished
from capview.errors import EXIT_LOCKED
from capview.remote.ssh import SshTransport
from realhost import make_source, new_app

pytestmark = pytest.mark.testbed


@pytest.fixture
async def transport():
    t = SshTransport()
    yield t
    await t.close()


def ctx_for(transport, events=None) -> Context:
    return Context(transport=transport, emit=(events.append if events is not None else (lambda e: None)),
                   operator="tester@ci")


async def test_deploy_v1_then_v2_layout_hardlinks_and_bytes(host, tmp_path, transport):
    app = new_app(host)
    src1 = make_source(tmp_path, "v1")
    r1 = await release(ctx_for(transport), app.env(src1), "v1")
    assert r1.ok, r1
    assert app.get() == (200, "v1")
    v1_files = app.sh(f"cd {app.deploy_path}/releases/v1 && find . -path ./.capview -prune -o -type f -print "
                      "| LC_ALL=C sort | xargs sha256sum")

    src2 = make_source(tmp_path, "v2")  # VERSION changes; templates/static/app.py are the same bytes
    (src2 / "templates" / "page3.html").write_text("changed in v2\n")
    events: list = []
    r2 = await release(ctx_for(transport, events), app.env(src2), "v2")
    assert r2.ok, r2
    assert app.get() == (200, "v2")

    dp = app.deploy_path
    # Layout contract: relative current, links to shared, manifests, states, history.
    assert app.current() == "releases/v2"
    assert app.sh(f"readlink {dp}/releases/v2/.env").strip() == "../../shared/.env"
    assert app.sh(f"readlink {dp}/releases/v2/data").strip() == "../../shared/data"
    assert app.sh(f"stat -c %a {dp}/shared/.env").strip() == "600"
    assert app.sh(f"readlink {dp}/releases/v2/static/latest.css").strip() == "style0.css"
    assert app.sh(f"stat -c %a {dp}/releases/v2/bin/run.sh").strip() == "555"  # uploaded read-only (issue 13)
    manifest = app.sh(f"cat {dp}/releases/v2/.capview/manifest.tsv")
    assert "\ttemplates/page3.html\n" in manifest and "\tapp.py\n" in manifest
    assert app.release_json("v1")["state"] == "superseded"
    v2 = app.release_json("v2")
    assert v2["state"] == "live" and v2["health"] == "ok" and v2["previous"] == "v1"
    assert v2["downtime"] is not None and v2["operator"] == "tester@ci"
    assert v2["image"] == f"{app.image}:v2"
    hist = app.history()
    assert [(h["op"], h["to"], h["outcome"]) for h in hist] == [("release", "v1", "ok"), ("release", "v2", "ok")]
    # the window a proxy must hide: stop begun -> first healthy answer (>= stop -> start returned)
    assert hist[-1]["unavailable"] >= hist[-1]["downtime"] > 0
    assert app.sh(f"podman image exists {app.image}:v2 && podman image exists {app.image}:current && echo yes").strip() == "yes"
    assert "SECRET" not in app.sh(f"cat {dp}/.capview/history.jsonl {dp}/releases/*/.capview/release.json")

    # Every unchanged file of v2 shares its inode with v1; changed ones do not.
    inodes = app.sh(
        f"cd {dp}/releases && for f in $(cd v2 && find . -path ./.capview -prune -o -type f -print); do "
        f"echo \"$f $(stat -c %i v1/$f 2>/dev/null || echo -) $(stat -c %i v2/$f)\"; done")
    rows = [l.split() for l in inodes.splitlines()]
    changed = {"./VERSION", "./templates/page3.html"}
    for path, i1, i2 in rows:
        if path in changed:
            assert i1 != i2, path
        else:
            assert i1 == i2, f"{path} was copied, not hard-linked"
    assert len(rows) > 40
    # v1's files are byte-identical to before.
    assert app.sh(f"cd {dp}/releases/v1 && find . -path ./.capview -prune -o -type f -print "
                  "| LC_ALL=C sort | xargs sha256sum") == v1_files
    # Only the changed files crossed the wire (plus tar headers and the manifest delta).
    finished = [e for e in events if isinstance(e, HostFinished)][0]
    changed_bytes = len("v2\n") + len("changed in v2\n")
    assert finished.bytes_sent <= changed_bytes + 64 * 1024
    assert finished.bytes_sent < sum(f.stat().st_size for f in src2.rglob("*") if f.is_file()) / 4
    assert finished.round_trips <= 8


async def test_unhealthy_release_is_rolled_back(host, tmp_path, transport):
    app = new_app(host, build=False)
    assert (await release(ctx_for(transport), app.env(make_source(tmp_path, "v1")), "v1")).ok
    assert (await release(ctx_for(transport), app.env(make_source(tmp_path, "v2")), "v2")).ok
    r3 = await release(ctx_for(transport), app.env(make_source(tmp_path, "v3", broken=True)), "v3")
    assert not r3.ok and r3.exit_code == 1
    assert "rolled back to v2" in r3.hosts[0].message
    assert app.get() == (200, "v2")
    assert app.current() == "releases/v2"
    v3 = app.release_json("v3")
    assert v3["state"] == "failed" and v3["health"] == "failed"
    log = app.sh(f"cat {app.deploy_path}/releases/v3/.capview/health.log")
    assert app.unit in log  # the unit's status/journal was captured
    assert app.history()[-1]["outcome"] == "rolled_back"
    # lock released (ops/ keeps the last switch transaction's result for a client that lost the link)
    assert app.sh(f"ls -A {app.deploy_path}/.capview").split() == ["history.jsonl", "ops", "usage.cache"]


async def test_failed_build_leaves_current_and_service_untouched(host, tmp_path, transport):
    app = new_app(host)
    assert (await release(ctx_for(transport), app.env(make_source(tmp_path, "v1")), "v1")).ok
    pid = app.main_pid()
    bad = make_source(tmp_path, "v4", containerfile="FROM scratch\nCOPY no-such-file /\n")
    r = await release(ctx_for(transport), app.env(bad), "v4")
    assert not r.ok and r.exit_code == 1
    assert "build failed" in r.hosts[0].message
    assert app.current() == "releases/v1"
    assert app.main_pid() == pid and app.get() == (200, "v1")
    assert app.release_json("v4")["state"] == "failed"
    assert "no-such-file" in app.sh(f"cat {app.deploy_path}/releases/v4/.capview/build.log")
    assert not app.sh(f"ls -A {app.deploy_path}/.capview/lock 2>/dev/null || true").strip()


async def test_two_deploys_at_once_one_is_refused_with_the_holder(host, tmp_path, transport):
    app = new_app(host, build=False)
    assert (await release(ctx_for(transport), app.env(make_source(tmp_path, "v1")), "v1")).ok
    t2 = SshTransport()
    try:
        a = Context(transport=transport, operator="alice@laptop")
        b = Context(transport=t2, operator="bob@desk")
        ra, rb = await asyncio.gather(
            release(a, app.env(make_source(tmp_path, "v2a")), "v2a"),
            release(b, app.env(make_source(tmp_path, "v2b")), "v2b"),
        )
    finally:
        await t2.close()
    results = sorted([ra, rb], key=lambda r: r.ok)
    refused, won = results
    assert won.ok and refused.exit_code == EXIT_LOCKED
    msg = refused.hosts[0].message
    assert "locked by" in msg and ("alice@laptop" in msg or "bob@desk" in msg)
    assert "pid" in msg


async def test_dry_run_changes_nothing(host, tmp_path, transport):
    app = new_app(host)
    assert (await release(ctx_for(transport), app.env(make_source(tmp_path, "v1")), "v1")).ok
    before = app.tree_hash()
    events: list = []
    r = await release(ctx_for(transport, events), app.env(make_source(tmp_path, "v2")), "v2", dry_run=True)
    assert r.ok
    assert app.tree_hash() == before
    phases = {e.phase for e in events if isinstance(e, DryRunScript)}
    assert {"upload", "link", "build", "switch", "health"} <= phases


async def test_three_hosts_parallel_and_rolling(hosts3, tmp_path, transport):
    apps = [new_app(h, build=False, tag=f"m{i}") for i, h in enumerate(hosts3)]

    def env_for(version: str, strategy: str):
        src = make_source(tmp_path, version)
        hcs = tuple(dataclasses.replace(a.host_config(src), name=f"{a.host.name}-{i}") for i, a in enumerate(apps))
        return dataclasses.replace(apps[0].env(src, strategy=strategy), hosts=hcs)

    r = await release(ctx_for(transport), env_for("v1", "parallel"), "v1")
    assert r.ok and [h.outcome for h in r.hosts] == ["ok"] * 3
    assert all(a.get() == (200, "v1") for a in apps)

    # Rolling: the second host fails its preflight (no .env). issue 17: stage 1 runs on
    # every host before any switch, so no host switches and no v2 is left anywhere.
    apps[1].sh(f"rm {apps[1].deploy_path}/shared/.env")
    r = await release(ctx_for(transport), env_for("v2", "rolling"), "v2")
    assert [h.outcome for h in r.hosts] == ["failed", "failed", "failed"]
    assert ".env is missing" in r.hosts[1].message and "capview init" in r.hosts[1].message
    assert all("not switched" in r.hosts[i].message and hosts3[1].name in r.hosts[i].message for i in (0, 2))
    assert r.exit_code == 4
    assert [a.get()[1] for a in apps] == ["v1", "v1", "v1"]
    assert all("v2" not in a.sh(f"ls {a.deploy_path}/releases") for a in apps)
    assert all(not a.sh(f"ls -A {a.deploy_path}/.capview | grep -x lock || true").strip() for a in apps)


async def test_cleanup_prunes_beyond_keep_releases(host, tmp_path, transport):
    app = new_app(host, build=False)
    events: list = []
    for v in ("v1", "v2", "v3", "v4"):
        r = await release(ctx_for(transport, events), app.env(make_source(tmp_path, v), keep_releases=2), v)
        assert r.ok, r
    # keep 2 successful (v4 live, v3 previous); v1, v2 pruned by the deploys' cleanup phases.
    assert app.sh(f"ls {app.deploy_path}/releases").split() == ["v3", "v4"]
    assert not app.sh(f"ls -A {app.deploy_path}/releases | grep trash || true").strip()
    prunes = [h for h in app.history() if h["op"] == "prune"]
    assert sorted(v for p in prunes for v in p["deleted"]) == ["v1", "v2"]
    assert all(p["freed"] > 0 for p in prunes)
    assert max(e.round_trips for e in events if isinstance(e, HostFinished)) <= 8


async def test_rsync_upload_method_links_unchanged_files(host, tmp_path, transport):
    import shutil

    from capview.config import UploadConfig

    app = new_app(host, build=False)
    src1 = make_source(tmp_path, "v1")
    rs = UploadConfig(method="rsync")
    assert (await release(ctx_for(transport), app.env(src1, upload=rs), "v1")).ok
    src2 = tmp_path / "src-v2-rsync"
    shutil.copytree(src1, src2, symlinks=True)
    (src2 / "VERSION").write_text("v2\n")
    assert (await release(ctx_for(transport), app.env(src2, upload=rs), "v2")).ok
    assert app.get() == (200, "v2")
    dp = app.deploy_path
    same = app.sh(f"stat -c %i {dp}/releases/v1/app.py {dp}/releases/v2/app.py").split()
    assert same[0] == same[1]
    assert app.sh(f"readlink {dp}/releases/v2/data").strip() == "../../shared/data"
    assert "\tVERSION\n" in app.sh(f"cat {dp}/releases/v2/.capview/manifest.tsv")
    assert app.release_json("v2")["state"] == "live"


async def test_large_upload_is_split_over_parallel_channels(host, tmp_path, transport):
    import os

    from capview.engine.upload import SPLIT_BYTES

    app = new_app(host, build=False)
    src = make_source(tmp_path, "v1")
    for i in range(3):  # 3 x 14 MB: more than two parts' worth
        (src / "static" / f"blob{i}.bin").write_bytes(os.urandom(14 * 1024 * 1024))
    # Many small files in nested new dirs, spread over the parts: the parts must not race
    # on creating those dirs, and a dir's mode (0750 here) must survive the merge.
    for d in range(8):
        sub = src / "media" / f"d{d}" / "deep"
        sub.mkdir(parents=True)
        for f in range(40):
            (sub / f"a{f}.png").write_bytes(os.urandom(2000 + f))
    (src / "media" / "d3").chmod(0o750)
    events: list = []
    r = await release(ctx_for(transport, events), app.env(src), "v1")
    assert r.ok, r
    fin = [e for e in events if isinstance(e, HostFinished)][0]
    # a deploy's 3 trips + the 2 extra parts' channels: part 0 links once all parts are in,
    # so the link is no trip of its own (issue 21; it was 4 + 2)
    assert fin.round_trips == 3 + 2
    done = [(e.phase, e.ok) for e in events if type(e).__name__ == "PhaseFinished"]
    assert [p for p, _ in done][:5] == ["lock", "setup", "upload", "link", "build"] and all(ok for _, ok in done)
    assert fin.bytes_sent >= 3 * 14 * 1024 * 1024 > 2 * SPLIT_BYTES
    # Every file on the host matches the manifest's sha256; nothing left in incoming/.
    dp = app.deploy_path
    check = app.sh(
        f"cd {dp}/releases/v1 && awk -F '\\t' '$1==\"f\" {{print $4 \"  \" $5}}' .capview/manifest.tsv | sha256sum -c --quiet"
        f" && echo verified; ls -A {dp}/releases/v1/.capview")
    assert "verified" in check and "incoming" not in check
    assert app.sh(f"stat -c %a {dp}/releases/v1/media/d3").strip() == "750"
    assert int(app.sh(f"find {dp}/releases/v1/media -type f | wc -l")) == 320
    # A split redeploy on top: unchanged dirs keep their mode, new files arrive.
    src2 = make_source(tmp_path, "v2")
    import shutil
    shutil.copytree(src / "media", src2 / "media")
    for i in range(3):
        (src2 / "static" / f"blob{i}.bin").write_bytes(os.urandom(14 * 1024 * 1024))
    (src2 / "media" / "d5" / "deep" / "new.png").write_bytes(b"new")
    r2 = await release(ctx_for(transport), app.env(src2), "v2")
    assert r2.ok, r2
    check = app.sh(
        f"cd {dp}/releases/v2 && awk -F '\\t' '$1==\"f\" {{print $4 \"  \" $5}}' .capview/manifest.tsv | sha256sum -c --quiet"
        f" && echo verified")
    assert "verified" in check
    assert app.sh(f"stat -c %a {dp}/releases/v2/media/d3").strip() == "750"
    assert int(app.sh(f"find {dp}/releases/v2/media -type f | wc -l")) == 321
    assert app.get() == (200, "v2")


async def test_a_split_upload_builds_in_part_0s_script_and_a_failed_build_changes_nothing(host, tmp_path, transport):
    """issue 21: the build runs in part 0's script once every part is in; a failure there
    is a failure before the switch: the live release and its service are untouched."""
    import os

    app = new_app(host)
    assert (await release(ctx_for(transport), app.env(make_source(tmp_path, "v1")), "v1")).ok
    pid = app.main_pid()
    bad = make_source(tmp_path, "v2", containerfile="FROM scratch\nCOPY no-such-file /\n")
    for i in range(2):  # 2 x 14 MB: a split upload (2 parts)
        (bad / "static" / f"blob{i}.bin").write_bytes(os.urandom(14 * 1024 * 1024))
    events: list = []
    r = await release(ctx_for(transport, events), app.env(bad), "v2")
    assert not r.ok and "build failed" in r.hosts[0].message
    fin = [e for e in events if isinstance(e, HostFinished)][0]
    assert fin.round_trips == 1 + 2 + 1  # lock, the 2 parts, the cleanup after the failure
    done = [(e.phase, e.ok) for e in events if type(e).__name__ == "PhaseFinished"]
    assert done[-3:] == [("upload", True), ("link", True), ("build", False)]
    assert app.current() == "releases/v1" and app.main_pid() == pid and app.get() == (200, "v1")
    assert app.release_json("v2")["state"] == "failed"
    assert "no-such-file" in app.sh(f"cat {app.deploy_path}/releases/v2/.capview/build.log")
    assert not app.sh(f"ls -A {app.deploy_path}/.capview/lock 2>/dev/null || true").strip()
