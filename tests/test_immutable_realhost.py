"""Issue 13 on the real testbed (OpenSSH, systemd --user, a non-root deploy user, for
whom the read-only mode of uploaded files is what stops an in-place write):

* builds that write a new file, append to a file they created, append to an uploaded
  unchanged file (refused loudly; then allowed by upload.writable), and an app that
  writes into its release at run time: after v1..v4 every earlier release verifies clean;
* nested shared paths whose parent is a symlink (into shared/, or outside deploy_path):
  refused, the release removed, nothing outside it changed;
* ``capview verify`` (the real CLI) finds a flipped byte, a changed mode, an extra file;
* the rsync upload method keeps the same promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

import pytest

from capview.config import BuildConfig, SharedConfig, UploadConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostWarning
from capview.engine.verify import verify
from capview.remote.ssh import SshTransport
from faultkit import cli, diff_snapshots, snapshot_tree, write_config
from realhost import make_source, new_app

pytestmark = pytest.mark.testbed

# The v4 app: writes into its own release at run time (a log it appends to, a cache dir, a
# result file), tries an in-place write into an uploaded file, then runs the usual app.
WRITER_APP = '''import os, runpy, sys
HERE = os.path.dirname(os.path.realpath(__file__))
with open(os.path.join(HERE, "runtime.log"), "a") as f:
    f.write("started\\n")
os.makedirs(os.path.join(HERE, "cache"), exist_ok=True)
with open(os.path.join(HERE, "cache", "c.bin"), "wb") as f:
    f.write(b"cached")
try:
    with open(os.path.join(HERE, "templates", "page1.html"), "a") as f:
        f.write("written in place\\n")
    result = "written"
except PermissionError as exc:
    result = "refused: " + str(exc)
with open(os.path.join(HERE, "inplace.result"), "w") as f:
    f.write(result)
sys.argv = [os.path.join(HERE, "webapp.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


@pytest.fixture
async def transport():
    t = SshTransport()
    yield t
    await t.close()


class Rec(list):
    def __call__(self, ev):
        self.append(ev)

    def warnings(self):
        return [e.message for e in self if isinstance(e, HostWarning)]


def ctx(transport, rec=None) -> Context:
    return Context(transport=transport, emit=rec if rec is not None else (lambda e: None), operator="tester@ci")


def _un(text: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def manifest_mismatches(rel: Path) -> list[str]:
    """Independent of capview's code: every manifest.tsv line against the disk."""
    bad = []
    for line in (rel / ".capview" / "manifest.tsv").read_text("utf-8", "surrogateescape").splitlines():
        t, mode, size, digest, path = line.split("\t")
        p = rel / _un(path)
        try:
            st = p.lstat()
        except FileNotFoundError:
            bad.append(f"missing {path}")
            continue
        if t == "f":
            ok = (stat.S_ISREG(st.st_mode) and st.st_size == int(size) and stat.S_IMODE(st.st_mode) == int(mode, 8)
                  and hashlib.sha256(p.read_bytes()).hexdigest() == digest)
        elif t == "l":
            ok = stat.S_ISLNK(st.st_mode) and os.readlink(p) == _un(digest)
        else:
            ok = stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == int(mode, 8)
        if not ok:
            bad.append(path)
    return bad


async def test_builds_and_a_writing_app_never_change_an_earlier_release(host, tmp_path, transport):
    app = new_app(host, build=False)
    dp = Path(app.deploy_path)

    def env(src, cmd, **over):
        return app.env(src, build=BuildConfig(command=cmd), **over)

    # v1: a build that writes a new file
    src1 = make_source(tmp_path, "v1")
    r = await release(ctx(transport), env(src1, "echo {version} > BUILD_ID"), "v1")
    assert r.ok, r.hosts[0].message
    # v2: a build that appends to a file it created
    src2 = make_source(tmp_path, "v2")
    r = await release(ctx(transport), env(src2, "echo {version} > BUILD_ID && echo appended >> BUILD_ID"), "v2")
    assert r.ok, r.hosts[0].message
    assert (dp / "releases/v2/BUILD_ID").read_text() == "v2\nappended\n"
    assert (dp / "releases/v1/BUILD_ID").read_text() == "v1\n"
    # v3: a build that appends to an uploaded, unchanged file: refused by the file's mode,
    # with a message that says why and what to do
    src3 = make_source(tmp_path, "v3")
    r = await release(ctx(transport), env(src3, "echo build-was-here >> templates/page2.html"), "v3")
    assert not r.ok
    msg = r.hosts[0].message
    assert "build failed" in msg and "uploaded files are read-only" in msg and "upload.writable" in msg, msg
    assert "Permission denied" in (dp / "releases/v3/.capview/build.log").read_text()
    assert app.current() == "releases/v2" and app.get() == (200, "v2")
    # ... the same build with that file listed in upload.writable: a private copy
    r = await release(ctx(transport), env(src3, "echo build-was-here >> templates/page2.html",
                                          upload=UploadConfig(writable=("templates/page2.html",))), "v3b")
    assert r.ok, r.hosts[0].message
    assert (dp / "releases/v3b/templates/page2.html").read_text().endswith("build-was-here\n")
    for v in ("v1", "v2"):
        assert "build-was-here" not in (dp / f"releases/{v}/templates/page2.html").read_text()
    # v4: an app that writes into its release at run time
    src4 = make_source(tmp_path, "v4")
    (src4 / "app.py").rename(src4 / "webapp.py")
    (src4 / "app.py").write_text(WRITER_APP)
    rec = Rec()
    r = await release(ctx(transport, rec), env(src4, "true"), "v4")
    assert r.ok, r.hosts[0].message
    assert app.get() == (200, "v4")
    assert (dp / "releases/v4/inplace.result").read_text().startswith("refused: [Errno 13] Permission denied")
    assert not rec.warnings()

    results = {v: (await verify(ctx(transport), app.env(src4), v))[0] for v in ("v1", "v2", "v3b", "v4")}
    for v in ("v1", "v2", "v3b"):
        assert results[v].ok, (v, results[v])
        # (v3b's build appended to its writable copy of page2.html: the release as built, not drift)
        assert manifest_mismatches(dp / "releases" / v) == (["templates/page2.html"] if v == "v3b" else []), v
        for f in ("templates/page1.html", "static/img/logo.bin"):  # still one inode for all releases
            assert (dp / f"releases/{v}/{f}").stat().st_ino == (dp / f"releases/v4/{f}").stat().st_ino, (v, f)
    assert results["v3b"].built == 1  # the build replaced templates/page2.html: recorded, not drift
    # v4's own run-time files are what verify calls extra; its manifest entries still match
    assert {(d.kind, d.path) for d in results["v4"].differences} == {
        ("extra", "runtime.log"), ("extra", "cache"), ("extra", "cache/c.bin"), ("extra", "inplace.result")}
    assert manifest_mismatches(dp / "releases/v4") == []
    # the app never reached v1..v3b's copies of the file it tried to write
    assert all("written in place" not in (dp / f"releases/{v}/templates/page1.html").read_text()
               for v in ("v1", "v2", "v3b", "v4"))


# An app that dies at start writing in place into an uploaded (read-only, shared) file.
DYING_WRITER_APP = '''import os
HERE = os.path.dirname(os.path.realpath(__file__))
with open(os.path.join(HERE, "templates", "page1.html"), "a") as f:
    f.write("written in place\\n")
'''


async def test_an_app_refused_an_in_place_write_is_told_why(host, tmp_path, transport):
    """Issue 13, item 2: an app (not a build) that fails on a read-only uploaded file gets
    an error saying why and what to do; the release is rolled back, no file changed."""
    app = new_app(host, build=False)
    dp = Path(app.deploy_path)
    src1 = make_source(tmp_path, "v1")
    assert (await release(ctx(transport), app.env(src1), "v1")).ok
    src2 = make_source(tmp_path, "v2")
    (src2 / "app.py").write_text(DYING_WRITER_APP)
    r = await release(ctx(transport), app.env(src2), "v2")
    h = r.hosts[0]
    assert not r.ok and h.outcome == "rolled_back", h.message
    assert "Permission denied" in h.message and "uploaded files are read-only" in h.message, h.message
    assert "upload.writable" in h.message, h.message
    assert "Permission denied" in (dp / "releases/v2/.capview/health.log").read_text()
    assert app.current() == "releases/v1" and app.get() == (200, "v1")
    assert "written in place" not in (dp / "releases/v1/templates/page1.html").read_text()


@pytest.mark.parametrize("kind", ["relative-into-shared", "absolute-outside"])
async def test_symlinked_parent_of_a_nested_shared_path_is_refused(host, tmp_path, transport, kind):
    app = new_app(host, build=False)
    dp = Path(app.deploy_path)
    outside = host.base / f"outside-{kind}" / "var"
    host.run_as_user(f"mkdir -p {outside}/uploads {dp}/shared/var/uploads && echo precious > {outside}/uploads/keep.png"
                     f" && echo upload > {dp}/shared/var/uploads/u.png")
    shared = SharedConfig(dirs=("data", "var/uploads"), files=(".env",))
    src1 = make_source(tmp_path, "v1")
    assert (await release(ctx(transport), app.env(src1, shared=shared), "v1")).ok
    assert os.readlink(dp / "releases/v1/var/uploads") == "../../../shared/var/uploads"
    src2 = make_source(tmp_path, "v2")
    (src2 / "var").symlink_to("../../shared/var" if kind == "relative-into-shared" else str(outside))
    skip = (dp / "releases" / "v2", dp / ".capview")
    before = snapshot_tree(host.base, skip=skip)
    r = await release(ctx(transport), app.env(src2, shared=shared), "v2")
    assert not r.ok and r.exit_code == 1
    msg = r.hosts[0].message
    assert msg.startswith("linking shared paths failed: shared path var/uploads: releases/v2/var is a symlink; "
                          "refusing to go through it"), msg
    assert not os.path.lexists(dp / "releases/v2")
    assert app.current() == "releases/v1" and app.get() == (200, "v1")
    after = snapshot_tree(host.base, skip=skip)
    for snap in (before, after):
        snap.pop(str(dp / "releases"))  # v2 was made, then removed
    assert diff_snapshots(before, after) == []
    assert (outside / "uploads" / "keep.png").read_text() == "precious\n"
    assert (dp / "shared/var/uploads/u.png").read_text() == "upload\n"
    # the next good deploy works
    src3 = make_source(tmp_path, "v3")
    assert (await release(ctx(transport), app.env(src3, shared=shared), "v3")).ok


async def test_cli_verify_finds_a_flipped_byte_a_changed_mode_and_an_extra_file(host, tmp_path, transport):
    app = new_app(host, build=False)
    dp = Path(app.deploy_path)
    src = make_source(tmp_path, "v1")
    cfg = write_config(tmp_path / "deploy.yaml", app, src, build=False)
    assert (await release(ctx(transport), app.env(src), "v1")).ok
    ok = cli("-c", str(cfg), "verify", "test")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r"v1 verified: matches what was deployed \(\d+ entries\)", ok.stdout), ok.stdout

    logo = dp / "releases/v1/static/img/logo.bin"
    data = bytearray(logo.read_bytes())
    data[5000] ^= 0x40  # one flipped bit of one byte
    os.chmod(logo, 0o644)
    logo.write_bytes(bytes(data))
    os.chmod(logo, 0o444)
    os.chmod(dp / "releases/v1/bin/run.sh", 0o755)
    host.run_as_user(f"echo junk > {dp}/releases/v1/extra.txt")
    bad = cli("-c", str(cfg), "verify", "test", "v1")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "v1 DIFFERS from what was deployed: 2 changed, 0 missing, 1 extra" in bad.stdout, bad.stdout
    rows = [l.split() for l in bad.stdout.splitlines()[1:]]
    assert ["changed", "bin/run.sh", "mode", "755,", "deployed", "555"] in rows
    assert ["changed", "static/img/logo.bin", "sha256", "differs"] in rows
    assert ["extra", "extra.txt", "file"] in rows
    js = cli("-c", str(cfg), "--json", "verify", "test", "v1")
    assert js.returncode == 1
    doc = json.loads(js.stdout)
    assert doc["ok"] is False and doc["version"] == "v1"
    assert {(d["kind"], d["path"]) for d in doc["differences"]} == {
        ("changed", "bin/run.sh"), ("changed", "static/img/logo.bin"), ("extra", "extra.txt")}
    assert cli("-c", str(cfg), "verify", "test", "nope").returncode == 1
    assert cli("-c", str(cfg), "verify", "test", "../x").returncode == 2


async def test_rsync_upload_keeps_the_same_promises(host, tmp_path, transport):
    app = new_app(host, build=False)
    dp = Path(app.deploy_path)
    over = dict(upload=UploadConfig(method="rsync", writable=("VERSION",)))
    cmd = BuildConfig(command="echo {version} > BUILD_ID")
    src2 = make_source(tmp_path, "v1")  # one tree, changed in place: rsync links only same-mtime files
    assert (await release(ctx(transport), app.env(src2, build=cmd, **over), "v1")).ok
    host.run_as_user(f"echo run > {dp}/releases/v1/runtime.log")
    (src2 / "VERSION").write_text("v2\n")
    r = await release(ctx(transport), app.env(src2, build=BuildConfig(command="echo more >> static/style1.css"), **over), "v2")
    assert not r.ok and "uploaded files are read-only" in r.hosts[0].message
    r = await release(ctx(transport), app.env(src2, build=cmd, **over), "v2b")
    assert r.ok, r.hosts[0].message
    v1, v2 = dp / "releases/v1", dp / "releases/v2b"
    assert not (v2 / "runtime.log").exists()
    assert (v1 / "app.py").stat().st_ino == (v2 / "app.py").stat().st_ino
    assert stat.S_IMODE((v2 / "app.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((v2 / "VERSION").stat().st_mode) == 0o644  # writable: its own copy
    assert (v1 / "VERSION").stat().st_ino != (v2 / "VERSION").stat().st_ino
    for v in ("v1", "v2b"):
        [res] = await verify(ctx(transport), app.env(src2), v)
        assert res.ok or {(d.kind, d.path) for d in res.differences} == {("extra", "runtime.log")}, res
        assert manifest_mismatches(dp / "releases" / v) == []
