"""Security promises, each with a test, on the real testbed.

* Host-key checking is always on: a changed host key is refused with the fingerprint and
  the fix -- tests/test_ssh_transport.py::test_changed_host_key_is_refused (transport
  level); here: a *deploy* to a host whose key changed changes nothing on it (exit 4).
* ``.env`` contents never appear in the CLI's output (plain, verbose, --json), in the
  history, release.json, build/health logs, or asyncssh's logging; a local ``.env`` in
  the source tree is never uploaded.
* ``shared/.env`` stays mode 0600 across deploys and rollbacks, and is put back to 0600
  if someone loosened it.
* Nothing outside ``deploy_path`` is written or deleted by release / rollback / prune.
* asyncssh's own logging, at the default level, does not carry the scripts (commands,
  paths, secrets): capture every logger at DEBUG while deploying.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
from pathlib import Path

import pytest

from capview.config import HealthConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.prune import prune
from capview.engine.rollback import rollback
from capview.errors import EXIT_UNREACHABLE
from capview.remote.ssh import SshTransport
from faultkit import cli, diff_snapshots, snapshot_tree, verify_host, write_config
from realhost import make_source, new_app
from testbed import rotate_host_key

pytestmark = [pytest.mark.testbed]

SECRET = "sk_live_" + secrets.token_hex(12)


def ctx(t) -> Context:
    return Context(transport=t, operator="tester@ci")


@pytest.fixture(scope="module")
def site(module_host, tmp_path_factory):
    """An app whose shared/.env holds SECRET, with v1 deployed, and its deploy.yaml."""
    app = new_app(module_host, tag="sec" + secrets.token_hex(2))
    app.sh(f"printf 'DATABASE_PASSWORD={SECRET}\\nAPI_KEY={SECRET}-2\\n' > {app.deploy_path}/shared/.env")
    root = tmp_path_factory.mktemp("security")
    srcs = {"v1": make_source(root, "v1")}

    async def first():
        async with SshTransport() as t:
            assert (await release(ctx(t), app.env(srcs["v1"]), "v1")).ok

    asyncio.run(first())
    return app, root, srcs, write_config(root / "deploy.yaml", app, root)


def env_mode(app) -> int:
    return stat.S_IMODE(os.stat(f"{app.deploy_path}/shared/.env").st_mode)


def test_env_contents_never_printed_logged_or_recorded(site):
    app, root, srcs, cfg = site
    dp = app.deploy_path
    v2 = make_source(root, "v2", extra={".env": f"LOCAL_ONLY={SECRET}-local\n"})  # must never be uploaded
    bad = make_source(root, "v3", broken=True)
    outputs = []
    for args in (("release", "v2", "test", "--json", "--source", str(v2)),
                 ("rollback", "test", "--to", "v1", "--yes", "-v"),
                 ("release", "v3", "test", "-v", "--source", str(bad)),  # unhealthy: health.log captured
                 ("releases", "test"), ("releases", "test", "--json"), ("history", "test", "--json"),
                 ("prune", "test", "--dry-run", "--json"), ("check", "test", "--json")):
        r = cli(*args, "-c", str(cfg), timeout=120)
        assert "Traceback" not in r.stderr, (args, r.stderr)
        outputs.append(r.stdout + r.stderr)
    blob = "\n".join(outputs)
    assert "v2 is live" in blob or '"outcome": "ok"' in blob  # the commands did run
    assert SECRET not in blob
    # on the host: only shared/.env holds it (history, release.json, manifests, logs do not)
    hits = app.sh(f"grep -rl --exclude-dir=data -e {SECRET} {dp} || true").split()
    assert hits == [f"{dp}/shared/.env"], hits
    assert not os.path.lexists(f"{dp}/releases/v2/.env") or os.readlink(f"{dp}/releases/v2/.env") == "../../shared/.env"
    assert ".env" not in [line.split("\t")[-1] for line in Path(f"{dp}/releases/v2/.capview/manifest.tsv").read_text().splitlines()]
    assert env_mode(app) == 0o600


async def test_shared_env_stays_0600(site):
    app, root, srcs, _ = site
    assert env_mode(app) == 0o600
    app.sh(f"chmod 644 {app.deploy_path}/shared/.env")  # someone loosened it by hand
    src = make_source(root, "v4")
    async with SshTransport() as t:
        assert (await release(ctx(t), app.env(src), "v4")).ok
        assert env_mode(app) == 0o600
        cur = verify_host(app)
        other = next(v for v in ("v1", "v2") if (Path(app.deploy_path) / "releases" / v).is_dir() and v != cur)
        assert (await rollback(ctx(t), app.env(src), to=other)).ok
        assert env_mode(app) == 0o600
        assert (await rollback(ctx(t), app.env(src), to=cur)).ok
    assert env_mode(app) == 0o600


async def test_nothing_outside_deploy_path_is_written_or_deleted(site, caplog):
    """Snapshot the deploy user's whole home (type, mode, size, mtime, link target of
    everything) except deploy_path, before and after release, rollback, a failed release
    and prune. Left out of the snapshot, because *other test sessions* write there
    concurrently as the same user: other hosts' base dirs under ~/tb, podman's storage
    (their builds; this app builds too, so its image lands there by design) and
    ~/.config/systemd/user (their units)."""
    app, root, srcs, _ = site
    home = app.host.home
    dp = Path(app.deploy_path)
    skip = (home / "tb", home / ".local/share/containers", home / ".config/systemd/user", home / ".cache")

    def snap() -> dict:
        return {**snapshot_tree(home, skip), **snapshot_tree(app.host.base, (dp,))}

    caplog.set_level(logging.DEBUG)  # and: asyncssh at its default level logs no script
    before = snap()
    async with SshTransport() as t:
        src5 = make_source(root, "v5")
        assert (await release(ctx(t), app.env(src5), "v5")).ok
        cur = verify_host(app)
        assert (await rollback(ctx(t), app.env(src5))).ok
        assert (await rollback(ctx(t), app.env(src5), to=cur)).ok
        quick = HealthConfig(url=f"http://127.0.0.1:{app.port}/health", timeout=2, interval=0.2)
        r = await release(ctx(t), app.env(make_source(root, "v6", broken=True), health=quick), "v6")
        assert not r.ok
        assert (await prune(ctx(t), app.env(src5), keep=0)).ok
    after = snap()
    assert diff_snapshots(before, after) == []
    # the runtime dir the scripts export (XDG_RUNTIME_DIR) is the user manager's, not ours
    assert verify_host(app) == cur
    logged = caplog.text
    for needle in (SECRET, "mv -T", "set -eu", str(dp), "capview-pid"):
        assert needle not in logged, f"{needle!r} reached the logs"


async def test_deploy_to_a_host_whose_key_changed_changes_nothing(host, tmp_path):
    app = new_app(host, build=False)
    src = make_source(tmp_path, "v1")
    async with SshTransport() as t:
        assert (await release(ctx(t), app.env(src), "v1")).ok
    before = app.tree_hash()
    rotate_host_key(host)
    async with SshTransport() as t:
        r = await release(ctx(t), app.env(make_source(tmp_path, "v2")), "v2")
    assert not r.ok and r.exit_code == EXIT_UNREACHABLE
    msg = r.hosts[0].message
    assert "host key" in msg and "changed" in msg and "ssh-keygen" in msg and "\n" not in msg
    assert app.tree_hash() == before
