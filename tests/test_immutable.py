"""Issue 13, engine level (LocalTransport, local sh): releases are built from the previous
release's manifest only, uploaded files are read-only, drift is caught, verify re-hashes,
references between releases are warned about and honoured by prune, shared links never
resolve through a symlink, sizes add up.

These run as root here, and root ignores write bits: the in-place writes that a
non-root deploy user is refused (tests/test_immutable_realhost.py) go through, which
is exactly what the checks behind the read-only mode must catch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from capview.config import BuildConfig, Environment, HostConfig, Settings, SharedConfig, UploadConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import DryRunScript, HostWarning
from capview.engine.manifest import Entry, diff, scan_tree
from capview.engine.ops import init
from capview.engine.prune import classify, prune
from capview.engine.model import ReleaseInfo
from capview.engine.status import status
from capview.engine.verify import parse_listing, verify
from capview.remote.local import LocalTransport
from faultkit import snapshot_tree, diff_snapshots

ODD = ("odd\nname %41", "-rf", "tab\there", "caf\u00e9.txt")


class Rec(list):
    def __call__(self, ev):
        self.append(ev)

    def warnings(self) -> list[str]:
        return [e.message for e in self if isinstance(e, HostWarning)]


def make_src(root: Path) -> Path:
    src = root / "src"
    (src / "static" / "img").mkdir(parents=True)
    (src / "app.py").write_text("print('app')\n")
    (src / "static" / "a.css").write_text("a {}\n" * 50)
    (src / "static" / "img" / "logo.bin").write_bytes(bytes(range(256)) * 10)
    (src / "static" / "latest.css").symlink_to("a.css")
    (src / "bin").mkdir()
    (src / "bin" / "run").write_text("#!/bin/sh\nexit 0\n")
    (src / "bin" / "run").chmod(0o775)
    (src / "config.ini").write_text("a=1\n")
    for name in ODD:
        (src / name).write_text(f"{name!r}\n")
    return src


def setup_env(tmp_path: Path, *, build: str | None = None, writable: tuple[str, ...] = (),
              shared: SharedConfig | None = None) -> tuple[Environment, Path, Path]:
    src = make_src(tmp_path)
    dp = tmp_path / "host" / "web" / "app"
    (dp / "shared" / "data").mkdir(parents=True)
    (dp / "shared" / ".env").write_text("SECRET=x\n")
    s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=10,
                 build=BuildConfig(command=build) if build else None,
                 upload=UploadConfig(writable=writable), shared=shared or SharedConfig())
    return env_of(s), src, dp


def env_of(s: Settings) -> Environment:
    h = HostConfig(name="h1", host="local", settings=s, env="e")
    return Environment(name="e", hosts=(h,), settings=s)


def with_build(env: Environment, command: str | None) -> Environment:
    return env_of(dataclasses.replace(env.settings, build=BuildConfig(command=command) if command else None))


def ctx(rec=None) -> Context:
    return Context(transport=LocalTransport(), emit=rec if rec is not None else (lambda e: None), operator="t@box")


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def manifest_matches(rel: Path) -> list[str]:
    """Independent of capview's code: every manifest line against the disk."""
    bad = []
    for line in (rel / ".capview" / "manifest.tsv").read_text("utf-8", "surrogateescape").splitlines():
        t, mode, size, digest, path = line.split("\t")
        import re
        un = lambda s: re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), s)
        p = rel / un(path)
        st = p.lstat()
        if t == "f" and (not stat.S_ISREG(st.st_mode) or st.st_size != int(size) or sha(p) != digest
                         or stat.S_IMODE(st.st_mode) != int(mode, 8)):
            bad.append(un(path))
        elif t == "l" and os.readlink(p) != un(digest):
            bad.append(un(path))
        elif t == "d" and (not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != int(mode, 8)):
            bad.append(un(path))
    return bad


# ---------------------------------------------------------------- manifest rules (pure)

def test_files_are_recorded_read_only_and_writable_ones_keep_their_mode(tmp_path):
    src = make_src(tmp_path)
    scan = scan_tree(src, (), (), writable=("config.ini",)).entries
    assert scan["app.py"].mode == 0o444 and scan["bin/run"].mode == 0o555
    assert scan["config.ini"].mode == 0o644  # upload.writable: its own mode, never shared
    assert scan["static"].mode == 0o755  # dirs are fresh per release: writable
    nested = scan_tree(src, (), (), writable=("static",)).entries
    assert nested["static/img/logo.bin"].mode == 0o644  # a pattern matching a parent dir


def test_diff_keeps_unchanged_entries_in_manifest_order_and_always_sends_writable():
    def f(p, mode=0o444, d="0" * 64):
        return Entry(p, "f", mode, 1, d)
    prev = {"z": f("z"), "a": f("a"), "w": f("w", 0o644), "gone": f("gone"), "dir": Entry("dir", "d", 0o755, 0, "-")}
    new = {"z": f("z"), "a": f("a", d="1" * 64), "w": f("w", 0o644), "dir": Entry("dir", "d", 0o700, 0, "-")}
    d = diff(new, prev)
    assert [e.path for e in d.keep] == ["z"]  # prev order, unchanged, shareable only
    assert [e.path for e in d.send] == ["a", "dir", "w"]
    assert set(d.drop) == {"a", "dir", "gone", "w"}  # a dir whose mode changed is not taken over either
    assert d.manifest.splitlines()[0].endswith("\tz")


# ---------------------------------------------------------------- building releases

async def test_only_manifest_entries_are_carried_over(tmp_path):
    """Build outputs, run-time files, stray links and the old .capview never reach the next
    release; unchanged files are hard links by path, changed ones new inodes."""
    env, src, dp = setup_env(tmp_path, build="echo {version} > BUILD_ID && mkdir -p .venv/bin && "
                                             "echo '#!{release_path}/.venv/bin/python' > .venv/bin/pip")
    assert (await release(ctx(), env, "v1")).ok
    v1 = dp / "releases" / "v1"
    (v1 / "runtime.log").write_text("written by the app\n")
    (v1 / "cache").mkdir()
    (v1 / "static" / "stray-link").symlink_to("/etc")
    (v1 / ".capview" / "extra-meta").write_text("v1 only")
    # the collision: a link the app made where v2 has a directory
    (v1 / "newdir").symlink_to("static")
    (src / "newdir").mkdir()
    (src / "newdir" / "x").write_text("new\n")
    (src / "static" / "a.css").write_text("changed\n")
    rec = Rec()
    r = await release(ctx(rec), env, "v2")
    assert r.ok, r.hosts[0].message
    v2 = dp / "releases" / "v2"
    for junk in ("runtime.log", "cache", "static/stray-link", ".capview/extra-meta"):
        assert not os.path.lexists(v2 / junk), junk
    assert (v2 / "newdir").is_dir() and not (v2 / "newdir").is_symlink()
    assert (v2 / "BUILD_ID").read_text() == "v2\n" and (v1 / "BUILD_ID").read_text() == "v1\n"
    assert (v2 / "BUILD_ID").stat().st_ino != (v1 / "BUILD_ID").stat().st_ino
    assert str(v2) in (v2 / ".venv/bin/pip").read_text()  # its own venv, not v1's
    for p in ("app.py", "static/img/logo.bin", "bin/run", *ODD):
        assert (v1 / p).stat().st_ino == (v2 / p).stat().st_ino, p
    assert os.lstat(v1 / "static/latest.css").st_ino == os.lstat(v2 / "static/latest.css").st_ino
    assert (v1 / "static/a.css").stat().st_ino != (v2 / "static/a.css").stat().st_ino
    assert (v1 / "static/a.css").read_text() == "a {}\n" * 50
    assert stat.S_IMODE((v2 / "bin/run").stat().st_mode) == 0o555
    assert stat.S_IMODE((v2 / "static").stat().st_mode) == 0o755
    assert manifest_matches(v1) == [] and manifest_matches(v2) == []
    assert not rec.warnings()


async def test_paths_to_link_never_reach_argv_and_bytes_stay_small(tmp_path):
    env, src, dp = setup_env(tmp_path)
    for i in range(300):
        (src / "static" / f"file-{i:04d}-with-a-rather-long-name.css").write_text(f"{i}\n" * 40)
    assert (await release(ctx(), env, "v1")).ok
    (src / "static" / "a.css").write_text("changed\n")
    rec = Rec()
    r = await release(ctx(rec), env, "v2", dry_run=True)
    scripts = "".join(e.script for e in rec if isinstance(e, DryRunScript))
    assert "file-0001-with-a-rather-long-name" not in scripts and "logo.bin" not in scripts
    r = await release(ctx(), env, "v2")
    assert r.ok
    # 300 unchanged files linked; only a.css (8 bytes) and tar/meta overhead sent
    assert r.hosts[0].bytes_sent <= 8 + 64 * 1024
    assert manifest_matches(dp / "releases" / "v2") == []


async def test_writable_files_are_private_copies_sent_every_time(tmp_path):
    env, src, dp = setup_env(tmp_path, writable=("config.ini",))
    assert (await release(ctx(), env, "v1")).ok
    assert (await release(ctx(), env, "v2")).ok
    v1, v2 = dp / "releases" / "v1", dp / "releases" / "v2"
    assert stat.S_IMODE((v2 / "config.ini").stat().st_mode) == 0o644
    assert (v1 / "config.ini").stat().st_ino != (v2 / "config.ini").stat().st_ino
    with open(v2 / "config.ini", "a") as f:  # the app may write it in place
        f.write("b=2\n")
    assert (v1 / "config.ini").read_text() == "a=1\n"


async def test_previous_release_changed_in_place_is_never_linked(tmp_path):
    """Drift in the previous release (here: root appended to a shared file): the upload
    links nothing from it, sends every file, and says so."""
    env, src, dp = setup_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    v1 = dp / "releases" / "v1"
    with open(v1 / "static" / "img" / "logo.bin", "ab") as f:
        f.write(b"corrupt")
    rec = Rec()
    r = await release(ctx(rec), env, "v2")
    assert r.ok, r.hosts[0].message
    v2 = dp / "releases" / "v2"
    assert (v2 / "static/img/logo.bin").stat().st_ino != (v1 / "static/img/logo.bin").stat().st_ino
    assert (v2 / "static/img/logo.bin").read_bytes() == (src / "static/img/logo.bin").read_bytes()
    assert manifest_matches(v2) == []
    w = [m for m in rec.warnings() if "releases/v1" in m]
    assert w and "static/img/logo.bin" in w[0] and "capview verify e v1" in w[0]
    # a tampered manifest of the previous release (an escaping line is ignored by both sides;
    # a duplicated one makes the host's merge differ from the client's): same fallback
    man = v2 / ".capview" / "manifest.tsv"
    app_line = next(l for l in man.read_text().splitlines() if l.endswith("\tapp.py"))
    man.write_text(man.read_text() + "f\t444\t3\t" + "0" * 64 + "\t../../../outside\n" + app_line + "\n")
    rec = Rec()
    assert (await release(ctx(rec), env, "v3")).ok
    assert any("manifest.tsv is not the one read at setup" in m for m in rec.warnings())
    assert not (dp / "releases" / "outside").exists() and not (tmp_path / "host" / "outside").exists()


# ---------------------------------------------------------------- the check after the build

async def test_build_writing_into_a_shared_file_fails_the_deploy(tmp_path):
    env, src, dp = setup_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    r = await release(ctx(), with_build(env, "echo more >> static/a.css"), "v2")
    assert not r.ok
    msg = r.hosts[0].message
    assert "changed 1 file(s) of releases/v1 in place (e.g. static/a.css)" in msg
    assert "capview verify e v1 --host h1" in msg and "upload.writable" in msg
    assert os.readlink(dp / "current") == "releases/v1"
    assert json.loads((dp / "releases/v2/.capview/release.json").read_text())["state"] == "failed"


async def test_build_touching_a_shared_file_is_only_a_warning(tmp_path):
    env, src, dp = setup_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    rec = Rec()
    r = await release(ctx(rec), with_build(env, "touch static/a.css"), "v2")
    assert r.ok, r.hosts[0].message
    assert any("touched 1 file(s)" in w and "static/a.css" in w for w in rec.warnings())


async def test_references_to_another_release_are_warned_recorded_and_kept_by_prune(tmp_path):
    env, src, dp = setup_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    bad = with_build(env, f"printf '#!{dp}/releases/v1/.venv/bin/python\\n' > tool && chmod +x tool")
    rec = Rec()
    assert (await release(ctx(rec), bad, "v2")).ok
    assert any("v2 references another release by absolute path: releases/v1/ (in tool)" in w for w in rec.warnings())
    meta = json.loads((dp / "releases/v2/.capview/release.json").read_text())
    assert meta["references"] == [{"release": "v1", "path": "tool"}]
    hist = [json.loads(l) for l in (dp / ".capview/history.jsonl").read_text().splitlines()]
    assert hist[-1]["references"] == [{"release": "v1", "path": "tool"}]
    for v in ("v3", "v4"):
        assert (await release(ctx(), env, v)).ok
    # v2 is retained (keep 3 of v2..v4) and names v1: prune keeps v1 and says why
    rec = Rec()
    assert (await prune(ctx(rec), env, keep=3)).ok
    assert (dp / "releases/v1").is_dir()
    st = (await status(ctx(), env))[0]
    item = {i.version: i for i in classify(st.releases, st.current, st.previous, 3)}["v1"]
    assert item.action == "protected" and item.reason.startswith("referenced by v2")
    assert (await prune(ctx(), env, keep=2)).ok  # v2 goes, and then v1 may go too
    assert sorted(os.listdir(dp / "releases")) == ["v3", "v4"]


def test_prune_reference_rule_is_transitive():
    r = lambda v, t, refs=(): ReleaseInfo(version=v, state="superseded", deployed_at=t, references=refs)
    rels = [r("v1", 1), r("v2", 2, ("v1",)), r("v3", 3, ("v2",)), r("v4", 4), r("v5", 5)]
    items = {i.version: i for i in classify(rels, "v5", "v4", 3)}
    assert items["v2"].action == "protected" and "v3" in items["v2"].reason
    assert items["v1"].action == "protected" and "v2" in items["v1"].reason


# ---------------------------------------------------------------- verify

async def test_verify_finds_a_flipped_byte_a_changed_mode_an_extra_file_and_more(tmp_path):
    env, src, dp = setup_env(tmp_path, build="echo {version} > BUILD_ID && mkdir out && echo o > out/o")
    assert (await release(ctx(), env, "v1")).ok
    [v] = await verify(ctx(), env)
    assert v.ok and v.version == "v1" and v.built == 3 and v.checked > 10, v
    rel = dp / "releases" / "v1"
    data = bytearray((rel / "static/img/logo.bin").read_bytes())
    data[1000] ^= 0x01
    os.chmod(rel / "static/img/logo.bin", 0o644)
    (rel / "static/img/logo.bin").write_bytes(bytes(data))
    os.chmod(rel / "static/img/logo.bin", 0o444)
    os.chmod(rel / "app.py", 0o644)
    (rel / "extra.txt").write_text("x")
    (rel / ODD[0]).unlink()
    os.remove(rel / "static/latest.css")
    os.symlink("img", rel / "static/latest.css")
    (rel / "BUILD_ID").write_text("tampered\n")
    os.remove(rel / "data")
    [v] = await verify(ctx(), env, "v1")
    got = {(d.kind, d.path): d.detail for d in v.differences}
    assert got == {
        ("changed", "static/img/logo.bin"): "sha256 differs",
        ("changed", "app.py"): "mode 644, deployed 444",
        ("extra", "extra.txt"): "file",
        ("missing", ODD[0]): "",
        ("changed", "static/latest.css"): "link target 'img', deployed 'a.css'",
        ("changed", "BUILD_ID"): "size 9, deployed 3",
        ("missing", "data"): "the link to shared/data",
    }, got
    assert not v.ok
    [none] = await verify(ctx(), env, "v9")
    assert none.error == "no release v9 on h1" and not none.ok


def test_listing_parser_ignores_garbage():
    listing = "f\x00644\x003\x00\x00a\x00zz\x00?\x00x\x00\x00b\x00l\x00777\x001\x00t\x00c\x00"
    hashes = "0" * 64 + "  ./a\x00not a hash\x00"
    got = parse_listing(listing, hashes)
    assert got["a"] == Entry("a", "f", 0o644, 3, "0" * 64)
    assert got["c"] == Entry("c", "l", 0o777, 0, "t") and "b" not in got


# ---------------------------------------------------------------- shared paths never through a symlink

@pytest.mark.parametrize("target", ["../../shared/var", "ABS"])
async def test_link_phase_refuses_a_symlinked_parent_of_a_shared_path(tmp_path, target):
    outside = tmp_path / "outside" / "var"
    (outside / "uploads").mkdir(parents=True)
    (outside / "uploads" / "keep.png").write_text("precious")
    env, src, dp = setup_env(tmp_path, shared=SharedConfig(dirs=("data", "var/uploads"), files=(".env",)))
    (dp / "shared" / "var" / "uploads").mkdir(parents=True)
    (dp / "shared" / "var" / "uploads" / "u.png").write_text("user upload")
    assert (await release(ctx(), env, "v1")).ok
    (src / "var").symlink_to(str(outside) if target == "ABS" else target)
    before = snapshot_tree(tmp_path, skip=(dp / "releases" / "v2", dp / ".capview"))
    r = await release(ctx(), env, "v2")
    assert not r.ok
    msg = r.hosts[0].message
    assert "shared path var/uploads: releases/v2/var is a symlink; refusing" in msg, msg
    assert not (dp / "releases" / "v2").exists()  # the release is removed
    assert os.readlink(dp / "current") == "releases/v1"
    after = snapshot_tree(tmp_path, skip=(dp / "releases" / "v2", dp / ".capview"))
    for snap in (before, after):  # releases/ itself changed: v2 was made, then removed
        snap.pop(str(dp / "releases"))
    assert diff_snapshots(before, after) == []
    assert (outside / "uploads" / "keep.png").read_text() == "precious"


async def test_init_refuses_a_symlinked_parent_inside_shared(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    dp = tmp_path / "host" / "web" / "app"
    (dp / "shared").mkdir(parents=True)
    (dp / "shared" / "var").symlink_to(outside)
    s = Settings(app="a", deploy_path=str(dp), source=tmp_path,
                 shared=SharedConfig(dirs=("var/uploads",), files=(".env",)))
    r = await init(ctx(), env_of(s))
    assert not r.ok
    assert "shared/var is a symlink; refusing" in r.hosts[0].message
    assert list(outside.iterdir()) == [] and not (dp / "releases").exists()


# ---------------------------------------------------------------- sizes

async def test_unique_never_exceeds_size_and_counts_the_same_files(tmp_path):
    env, src, dp = setup_env(tmp_path, build="head -c 5000 /dev/zero > big.log")
    for v in ("v1", "v2"):
        assert (await release(ctx(), env, v)).ok
    (src / "static" / "a.css").write_text("changed\n")
    assert (await release(ctx(), env, "v3")).ok
    st = (await status(ctx(), env))[0]
    files = sum(1 for p in src.rglob("*") if p.is_file() and not p.is_symlink()) + 1  # + big.log
    for r in st.releases:
        assert 0 < r.unique_bytes <= r.size_bytes, r
        assert r.files == files
    v2 = {r.version: r for r in st.releases}["v2"]
    assert v2.unique_bytes == 5000  # only its build output is its own (everything else is shared)


async def test_migrate_refuses_a_symlinked_parent_of_a_shared_path_and_changes_nothing(tmp_path):
    from capview.config import ServiceConfig
    from capview.engine.migrate import migrate
    from fakehost import environment, host_config, tree_hash

    flag = tmp_path / "running"
    flag.touch()
    svc = ServiceConfig(manager="command", start=f"touch {flag}", stop=f"rm -f {flag}", status=f"test -f {flag}")
    outside = tmp_path / "srv" / "var"
    (outside / "uploads").mkdir(parents=True)
    (outside / "uploads" / "keep.png").write_text("precious")
    dp = tmp_path / "web" / "my-app"
    dp.mkdir(parents=True)
    (dp / "app").write_text("binary")
    (dp / "var").symlink_to(outside.parent / "var")
    h = host_config(dp, service=svc, shared=SharedConfig(dirs=("var/uploads",), files=()))
    before = tree_hash(tmp_path)
    r = await migrate(ctx(), environment(h))
    assert not r.ok
    assert "var is a symlink; refusing" in r.hosts[0].message, r.hosts[0].message
    assert tree_hash(tmp_path) == before
    assert flag.exists()  # refused before the service was stopped


async def test_references_in_a_shared_file_are_carried_to_the_next_release(tmp_path):
    """Shared inodes are not grepped again: their findings come from the previous release.json."""
    env, src, dp = setup_env(tmp_path)
    assert (await release(ctx(), env, "v1")).ok
    (src / "paths.conf").write_text(f"cache = {dp}/releases/v1/cache\n")
    for v in ("v2", "v3"):
        rec = Rec()
        assert (await release(ctx(rec), env, v)).ok
        meta = json.loads((dp / f"releases/{v}/.capview/release.json").read_text())
        assert meta["references"] == [{"release": "v1", "path": "paths.conf"}], v
        assert any("releases/v1/ (in paths.conf)" in w for w in rec.warnings())
    assert (dp / "releases/v2/paths.conf").stat().st_ino == (dp / "releases/v3/paths.conf").stat().st_ino
