"""A real third-party Python app from PyPI (datasette), deployed the way an operator would:
the source tree ships the wheels, ``build.command`` makes a venv *inside the release*
(``pip install --no-index --find-links wheels/``), the systemd --user unit runs the
live release's venv python. The old bug this guards: a venv carried from release to
release by hard links, its scripts pointing into an older release, so that pruning
that release broke the live one.

After 4 releases, ``prune --keep 2`` and a rollback, the live release serves and
every retained release verifies clean. The wheels are downloaded from PyPI once and
kept in pytest's cache dir (``.pytest_cache/d/datasette-wheels``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import platform
import subprocess
import tempfile
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from capview.config import BuildConfig, HealthConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostWarning
from capview.engine.prune import prune
from capview.engine.rollback import rollback
from capview.engine.verify import verify
from capview.remote.ssh import SshTransport
from realhost import App, free_port

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

PACKAGE = "datasette==0.65.*"
BUILD = ("/usr/bin/python3 -m venv .venv && .venv/bin/pip install -q --no-index --find-links wheels "
         "--disable-pip-version-check datasette")


@pytest.fixture(scope="session")
def wheels(request) -> Path:
    """datasette and its dependencies as wheels for the host's Python (this machine's)."""
    if getattr(request.config, "cache", None) is not None:
        cache = Path(request.config.cache.mkdir("datasette-wheels"))
    else:  # pytest -p no:cacheprovider: a per-machine cache dir instead
        cache = Path(tempfile.gettempdir()) / "capview-test-datasette-wheels"
        cache.mkdir(exist_ok=True)
    done = cache / ".complete"
    if not done.exists():
        for old in cache.glob("*.whl"):
            old.unlink()
        host_py = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(f'{sys.version_info[0]}{sys.version_info[1]}')"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
               "--python-version", host_py, "--platform", f"manylinux2014_{platform.machine()}", "--implementation", "cp",
               "-d", str(cache), PACKAGE]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"pip download failed (PyPI unreachable?): {res.stderr[-2000:]}"
        done.write_text("ok\n")
    return cache


def datasette_source(root: Path, version: str, wheels: Path) -> Path:
    d = root / f"ds-{version}"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(wheels, d / "wheels", ignore=shutil.ignore_patterns(".complete"))
    (d / "metadata.json").write_text(json.dumps({"title": f"capview test {version}"}))
    (d / "VERSION").write_text(version + "\n")
    return d


def get_json(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


async def test_datasette_venv_per_release_survives_prune_and_rollback(host, tmp_path, wheels):
    name = f"cvds-{int(time.time() * 1000) % 10**8}"
    dp = f"{host.base}/web/{name}"
    port = free_port()
    host.run_as_user(f"mkdir -p {dp}/shared/data && : > {dp}/shared/.env && chmod 600 {dp}/shared/.env")
    db = Path(dp) / "shared" / "data" / "app.db"
    host.run_as_user(f"python3 -c \"import sqlite3; c = sqlite3.connect('{db}'); "
                     "c.execute('create table notes (id integer primary key, body text)'); "
                     "c.executemany('insert into notes (body) values (?)', [('n%d' % i,) for i in range(25)]); c.commit()\"")
    # the unit runs the live release's venv python (through current/)
    host.install_unit(name, (
        "[Unit]\nDescription=capview third-party app test (datasette)\n\n"
        f"[Service]\nExecStart={dp}/current/.venv/bin/python -m datasette serve {dp}/current/data/app.db "
        f"--host 127.0.0.1 --port {port} --metadata {dp}/current/metadata.json\n"
        f"WorkingDirectory={dp}/current\nRestart=no\n"))
    app = App(host, name, dp, port, name, None)
    health = HealthConfig(url=f"http://127.0.0.1:{port}/-/versions.json", timeout=60, interval=0.3)

    def env(version: str):
        return app.env(datasette_source(tmp_path, version, wheels), build=BuildConfig(command=BUILD),
                       health=health, keep_releases=10)

    t = SshTransport()
    try:
        warnings: list[str] = []
        ctx = Context(transport=t, operator="tester@ci",
                      emit=lambda e: warnings.append(e.message) if isinstance(e, HostWarning) else None)
        for v in ("v1", "v2", "v3", "v4"):
            r = await release(ctx, env(v), v)
            assert r.ok, r.hosts[0].message
            assert get_json(port, "/-/metadata.json")["title"] == f"capview test {v}"
        assert warnings == []  # no release references another one
        rels = Path(dp) / "releases"
        # each release has its own venv; its scripts name its own release only
        for v in ("v1", "v2", "v3", "v4"):
            pip = (rels / v / ".venv/bin/pip").read_text().splitlines()[0]
            assert pip == f"#!{dp}/releases/{v}/.venv/bin/python3", pip
            assert (rels / v / ".venv/bin/python").is_symlink()
        site = next((rels / "v4" / ".venv/lib").glob("python3*/site-packages/datasette/__init__.py"))
        twin = rels / "v3" / site.relative_to(rels / "v4")
        assert site.stat().st_ino != twin.stat().st_ino  # built fresh, never hard-linked
        wheel = next((rels / "v4" / "wheels").glob("datasette-*.whl"))
        assert wheel.stat().st_ino == (rels / "v1" / wheel.relative_to(rels / "v4")).stat().st_ino  # shared upload

        assert (await prune(ctx, env("v4"), keep=2)).ok
        assert sorted(p.name for p in rels.iterdir()) == ["v3", "v4"]
        r = await rollback(ctx, env("v4"))
        assert r.ok, r.hosts[0].message
        assert app.current() == "releases/v3"
        assert get_json(port, "/-/metadata.json")["title"] == "capview test v3"
        rows = get_json(port, "/app/notes.json?_shape=array&_size=100")
        assert len(rows) == 25 and rows[0]["body"] == "n0"
        for v in ("v3", "v4"):
            [res] = await verify(ctx, env("v4"), v)
            assert res.ok, (v, res.differences[:10])
            assert res.built > 100  # the venv, recorded as the build made it
        assert sqlite3.connect(db).execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        host.systemctl("stop", name)
        await t.close()
