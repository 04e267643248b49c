"""The host's usage cache: used only while valid, never written when it could be stale."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from capview.config import Environment, HostConfig, Settings
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.scripts.shell import Frames
from capview.engine.scripts.status import status_script
from capview.engine.scripts.usage import CACHE
from capview.engine.status import snapshot
from capview.remote.local import LocalTransport


def sizes(snap) -> list[tuple]:
    return [(r.version, r.files, r.size_bytes, r.unique_bytes, r.unique_disk_bytes) for r in snap.status.releases]


@pytest.fixture
async def site(tmp_path: Path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(20):
        (src / "d" / f"f{i}").write_bytes(os.urandom(1000 + i * 100))
    dp = tmp_path / "host" / "app"
    (dp / "shared").mkdir(parents=True)
    (dp / "shared" / ".env").write_text("")
    s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=10)
    h = HostConfig(name="h", host="local", settings=s, env="e")
    env = Environment(name="e", hosts=(h,), settings=s)
    ctx = Context(transport=LocalTransport())
    for v in ("v1", "v2"):
        (src / "d" / f"new-{v}").write_bytes(os.urandom(5000))
        assert (await release(ctx, env, v)).ok
    return ctx, env, h, dp, src


async def raw_status(ctx, h) -> str:
    frames = Frames.new()
    res = await ctx.transport.run(h, status_script(h.settings.deploy_path, frames, detail=False))
    assert res.ok, res.stderr
    return res.stdout.replace(frames.marker, "@@")


async def test_second_status_reads_the_cache_with_the_same_sums(site) -> None:
    ctx, env, h, dp, _ = site
    (dp / CACHE).unlink(missing_ok=True)
    first = await snapshot(ctx, h, detail=False)
    assert (dp / CACHE).is_file()
    out = await raw_status(ctx, h)
    assert "@@ usage" in out and "@@ sums" not in out  # no release was summed again
    assert sizes(await snapshot(ctx, h, detail=False)) == sizes(first) == sizes(await snapshot(ctx, h, detail=True))
    assert not list((dp / ".capview").glob("usage.cache.*"))  # no temp file left


async def test_a_new_release_invalidates_it_and_the_unique_sums_change(site) -> None:
    ctx, env, h, dp, src = site
    before = {r.version: r for r in (await snapshot(ctx, h, detail=False)).status.releases}
    assert "@@ usage" in await raw_status(ctx, h)
    # a release added behind capview's back (hard-link copy): v2's files are now shared
    subprocess.run(["cp", "-al", str(dp / "releases" / "v2"), str(dp / "releases" / "v3")], check=True)
    out = await raw_status(ctx, h)
    assert "@@ usage" not in out and "@@ sums" in out and "\nv3 " in out
    after = await snapshot(ctx, h, detail=False)
    assert sizes(after) == sizes(await snapshot(ctx, h, detail=True))
    # a stale cache would still show v2's unique bytes
    assert before["v2"].unique_bytes > 0 and {r.version: r for r in after.status.releases}["v2"].unique_bytes == 0


async def test_a_held_lock_means_no_cache_read_or_written(site) -> None:
    ctx, env, h, dp, _ = site
    (dp / CACHE).unlink(missing_ok=True)
    (dp / ".capview" / "lock").mkdir()
    for _ in range(2):
        out = await raw_status(ctx, h)
        assert "@@ usage" not in out and "@@ sums" in out and "\nv1 " in out
    assert not (dp / CACHE).exists()
    (dp / ".capview" / "lock").rmdir()
    await raw_status(ctx, h)
    assert "@@ usage" in await raw_status(ctx, h)


async def test_metadata_change_inside_a_release_invalidates_it(site) -> None:
    ctx, env, h, dp, _ = site
    await raw_status(ctx, h)
    assert "@@ usage" in await raw_status(ctx, h)
    (dp / "releases" / "v1" / ".capview" / "note.log").write_bytes(b"x" * 9000)
    out = await raw_status(ctx, h)
    assert "@@ usage" not in out


async def test_a_forged_cache_line_is_ignored_and_odd_versions_never_trusted(site) -> None:
    ctx, env, h, dp, _ = site
    await raw_status(ctx, h)
    cache = dp / CACHE
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines + ["../etc 1 2 3 4", "v9 x y z w"]) + "\n")
    snap = await snapshot(ctx, h, detail=False)
    assert [r.version for r in snap.status.releases] == ["v1", "v2"]


def test_the_fingerprint_is_stable_without_changes_and_moves_with_a_rename(tmp_path: Path) -> None:
    from capview.engine.scripts.usage import FINGERPRINT
    rel = tmp_path / "releases" / "v1" / ".capview"
    rel.mkdir(parents=True)
    fp = lambda: subprocess.run(["sh", "-c", FINGERPRINT], cwd=tmp_path, capture_output=True, text=True).stdout  # noqa: E731
    a = fp()
    assert a == fp() and a.strip()
    os.rename(tmp_path / "releases" / "v1", tmp_path / "releases" / "v2")
    assert fp() != a


async def test_a_deploy_leaves_a_valid_cache_behind(site) -> None:
    ctx, env, h, dp, src = site
    (src / "d" / "new-v3").write_bytes(os.urandom(3000))
    assert (await release(ctx, env, "v3")).ok
    out = await raw_status(ctx, h)
    assert "@@ usage" in out and "@@ sums" not in out  # the first listing after the deploy is warm
    assert sizes(await snapshot(ctx, h, detail=False)) == sizes(await snapshot(ctx, h, detail=True))


async def test_a_huge_deploy_leaves_the_refresh_running_and_it_fills_the_cache(site, monkeypatch) -> None:
    """issue 21: beyond 100,000 retained files the switch script only starts the refresh
    (niced, not waited on); it still ends with a valid cache."""
    import asyncio

    from capview.engine import deploy

    ctx, env, h, dp, src = site
    monkeypatch.setattr(deploy, "usage_wait", lambda files: 0.0)
    (src / "d" / "new-v3").write_bytes(os.urandom(3000))
    assert (await release(ctx, env, "v3")).ok
    for _ in range(200):  # the job's own pace, not a timing: up to 20 s on a loaded machine
        if (dp / CACHE).exists():
            break
        await asyncio.sleep(0.1)
    out = await raw_status(ctx, h)
    assert "@@ usage" in out and "@@ sums" not in out
    assert sizes(await snapshot(ctx, h, detail=False)) == sizes(await snapshot(ctx, h, detail=True))


async def test_more_releases_than_one_find_batch_are_all_summed_right(site) -> None:
    # the sums list releases BATCH at a time (scripts/usage.py): every release of every
    # batch gets its own line, and the same numbers as the per-release detail listing
    import shutil

    from capview.engine.scripts.usage import BATCH

    ctx, env, h, dp, _ = site
    rel = dp / "releases"
    for i in range(BATCH + 20):
        d = rel / f"x{i:04d}"
        shutil.copytree(rel / "v1", d, copy_function=os.link if i % 2 else shutil.copy2, symlinks=True)
        (d / "own").write_bytes(b"o" * (i + 1))
    (dp / CACHE).unlink(missing_ok=True)
    fast = await snapshot(ctx, h, detail=False)
    assert len(fast.status.releases) == BATCH + 22
    assert sizes(fast) == sizes(await snapshot(ctx, h, detail=True))
    assert {r.version: r.files for r in fast.status.releases}["x0007"] == 22  # v1: 20 + new-v1, and its own


@pytest.mark.parametrize("detail", [True, False])
async def test_no_releases_lists_nothing_else(tmp_path: Path, detail: bool) -> None:
    # xargs runs its command once even on empty input: the batch must not become a
    # find of "." (every file of deploy_path) or an awk waiting on stdin
    dp = tmp_path / "app"
    (dp / "releases").mkdir(parents=True)
    (dp / "shared").mkdir()
    for i in range(50):
        (dp / "shared" / f"f{i}").write_text("x")
    frames = Frames.new()
    h = HostConfig(name="h", host="local", settings=Settings(app="a", deploy_path=str(dp), source=tmp_path))
    res = await LocalTransport().run(h, status_script(str(dp), frames, detail=detail))
    assert res.ok, res.stderr
    body = res.stdout.split(f"{frames.marker} finds")[-1] if detail else res.stdout.split(f"{frames.marker} sums")[-1]
    assert "shared/f1" not in res.stdout and body.strip().endswith(f"{frames.marker} end")
    assert body.count("\n") <= 3, body


async def test_cold_listing_does_not_wait_for_big_sums_and_the_job_fills_the_cache(site, monkeypatch):
    """issue 21: a cold listing waits COLD_WAIT at most for the sums (they stat every file);
    releases not summed by then are usage_pending (never shown as 0 bytes), the host's job
    goes on, commits the cache, and the next listing is exact, with no leftovers in .capview."""
    import asyncio

    from capview.cli.tables import releases_text
    from capview.engine.scripts import usage

    ctx, env, h, dp, src = site
    exact = sizes(await snapshot(ctx, h, detail=True))
    for i in range(4000):  # v1 gets many more entries, so the job is still running when the wait ends
        (dp / "releases" / "v1" / "d" / f"x{i}").write_bytes(b"")
    exact = sizes(await snapshot(ctx, h, detail=True))
    (dp / CACHE).unlink(missing_ok=True)
    monkeypatch.setattr(usage, "COLD_WAIT", 0.0)
    # the job starts before the release.json framing: slow it, so the wait surely ends first
    monkeypatch.setattr(usage, "BATCH_FIND", "sleep 1; " + usage.BATCH_FIND)
    snap = await snapshot(ctx, h, detail=False)
    pending = [r.version for r in snap.status.releases if r.usage_pending]
    assert pending and all(r.size_bytes == 0 for r in snap.status.releases if r.usage_pending)
    assert "still being summed on the host" in releases_text([snap.status])
    for _ in range(200):
        if (dp / CACHE).exists():
            break
        await asyncio.sleep(0.05)
    assert (dp / CACHE).exists()
    again = await snapshot(ctx, h, detail=False)
    assert sizes(again) == exact and not any(r.usage_pending for r in again.status.releases)
    assert sorted(os.listdir(dp / ".capview")) == sorted(n for n in os.listdir(dp / ".capview")
                                                        if not n.startswith("usage.cache."))


async def test_no_second_summing_job_while_one_is_at_it(site):
    """A dashboard polling a cold host must not start a job per poll: a recent
    usage.cache.* (another listing's job) means every release is pending, nothing started;
    one older than BUSY_SECONDS (a killed listing's leftover) does not stop a new one."""
    from capview.engine.scripts.usage import BUSY_SECONDS

    ctx, env, h, dp, src = site
    (dp / CACHE).unlink(missing_ok=True)
    busy = dp / ".capview" / "usage.cache.424242"
    busy.write_text("fingerprint\n")
    snap = await snapshot(ctx, h, detail=False)
    assert all(r.usage_pending for r in snap.status.releases)
    assert not (dp / CACHE).exists() and sorted(p.name for p in (dp / ".capview").glob("usage.cache*")) == [busy.name]
    old = busy.stat().st_mtime - BUSY_SECONDS - 5
    os.utime(busy, (old, old))
    snap = await snapshot(ctx, h, detail=False)
    assert not any(r.usage_pending for r in snap.status.releases) and (dp / CACHE).exists()
