"""The upload packed piece by piece (issue 21, compress.Packer) on real OpenSSH: through
a thin link the stream goes gzipped and lands byte for byte, split over parts and in a
redeploy; through a fast one it lands the same; a channel per script (no session loop)
inflates packed pieces itself. No mocks: the session loop's own gzip -dc inflates them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
from pathlib import Path

import pytest

from capview.engine import compress, upload
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import PhaseFinished
from capview.remote.ssh import SshTransport
from capview.remote.transport import Packed
from benchmarks.latency_proxy import LatencyProxy
from faultkit import env_via, known_hosts_for
from realhost import make_source, new_app
from test_ssh_transport import hostcfg

pytestmark = pytest.mark.testbed

WORDS = [w.encode() for w in "alpha beta gamma delta config template render static route view model "
         "query index table column value string number return import class def self".split()]


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch):
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def sources(tmp_path: Path, version: str, seed: int = 1) -> Path:
    """The sample app plus ~9 MB of text that packs to about a third, and 1 MB that does not."""
    src = make_source(tmp_path, version)
    rng = random.Random(seed)
    (src / "lib").mkdir()
    for i in range(30):
        (src / "lib" / f"mod{i}.py").write_bytes(b" ".join(rng.choice(WORDS) for _ in range(50_000)))
    (src / "static" / "img" / "photo.jpg").write_bytes(rng.randbytes(1 << 20))
    return src


def host_sums(app, version: str) -> dict[str, str]:
    out = app.sh(f"cd {app.deploy_path}/releases/{version} && find . -path ./.capview -prune -o -type f -print0 "
                 "| xargs -0 sha256sum")
    return {line[66:]: line[:64] for line in out.splitlines()}


def local_sums(src: Path) -> dict[str, str]:
    return {"./" + str(p.relative_to(src)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in src.rglob("*") if p.is_file() and not p.is_symlink()}


async def deploy_via(app, host, tmp_path: Path, src: Path, version: str, rate: float | None):
    events: list = []
    async with LatencyProxy(host.port, one_way=0.002, rate=rate) as proxy:
        env = env_via(app.env(src), proxy.port, known_hosts_for(host, proxy.port, tmp_path / "kh"))
        async with SshTransport() as t:
            r = await asyncio.wait_for(release(Context(transport=t, emit=events.append, operator="tester@ci"),
                                               env, version), 180)
        up = proxy.bytes_up
    assert r.ok, r
    detail = next(e.detail for e in events if isinstance(e, PhaseFinished) and e.phase == "upload")
    return detail, up


def gzip_share(detail: str) -> int:
    m = re.search(r"(\d+)% gzip", detail)
    return int(m.group(1)) if m else 0


async def test_a_thin_link_gets_a_packed_stream_that_lands_byte_for_byte(host, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(upload, "SPLIT_BYTES", 4 << 20)  # three parts, each its own session
    app = new_app(host, build=False)
    src = sources(tmp_path, "v1")
    plain = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    detail, up = await deploy_via(app, host, tmp_path, src, "v1", rate=2e6)  # 16 Mbit/s
    assert gzip_share(detail) >= 85, detail  # all but the photo
    assert up < plain * 0.6, (up, plain)
    assert host_sums(app, "v1") == local_sums(src)
    # a redeploy: a few changed files packed, the rest hard-linked
    for i in (3, 4):
        (src / "lib" / f"mod{i}.py").write_bytes(b"changed " * 200_000)
    detail, _ = await deploy_via(app, host, tmp_path, src, "v2", rate=2e6)
    assert gzip_share(detail) == 100, detail
    assert host_sums(app, "v2") == local_sums(src)
    same = app.sh(f"stat -c %i {app.deploy_path}/releases/v1/lib/mod9.py {app.deploy_path}/releases/v2/lib/mod9.py")
    assert len(set(same.split())) == 1, "an unchanged file is a hard link of the previous release's"


async def test_a_fast_link_lands_the_same(host, tmp_path: Path):
    # whatever the pace makes of it (plain after the first MBs on a quick box, packed on a slow one)
    app = new_app(host, build=False)
    src = sources(tmp_path, "v1", seed=2)
    await deploy_via(app, host, tmp_path, src, "v1", rate=None)
    assert host_sums(app, "v1") == local_sums(src)


@pytest.mark.parametrize("sessions", [True, False])
async def test_packed_pieces_reach_the_script_inflated(host, tmp_path: Path, sessions: bool):
    """Through the session loop (its gzip -dc) and through a channel per script (inflated
    here): the script reads the plain stream, packed pieces and plain ones in order."""
    p = compress.Packer("always")
    data = [os.urandom(70_000), b"text " * 300_000, b"x", b"", b"tail " * 99]

    async def stream():
        for i, d in enumerate(data):
            yield p.pack(d) if i % 2 == 0 else d

    pieces = [p.pack(d) for d in data[::2] if d]
    assert all(isinstance(x, Packed) for x in pieces)
    hc = hostcfg(host, tmp_path)
    async with SshTransport(sessions=sessions) as t:
        await t.run(hc, "true")
        assert t.unpacks(hc) is sessions  # this host's loop has gzip; a channel per script never
        r = await t.run(hc, "sha256sum | cut -c1-64", stdin=stream())
    assert r.stdout == hashlib.sha256(b"".join(data)).hexdigest()
