"""upload.compress: the gzip stream is what tar on the host unpacks into exactly the
manifest; auto compresses only what shrinks; a host without gzip still gets the
release (auto) or a clear error (always). Real local sh and tar (LocalTransport)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capview.config import Environment, HostConfig, Settings
from capview.config.model import UploadConfig
from capview.engine import compress
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import LogLine, PhaseFinished
from capview.engine.manifest import diff, scan_tree
from capview.remote.local import LocalTransport
from capview.remote.transport import Packed


def make_src(root: Path, text: bool) -> Path:
    (root / "d").mkdir(parents=True)
    for i in range(40):
        data = (f"line {i} of some very repetitive template text\n" * 1500).encode() if text else os.urandom(60_000)
        (root / "d" / f"f{i}").write_bytes(data)
    return root


def env_for(tmp_path: Path, src: Path, mode: str) -> tuple[Environment, HostConfig]:
    dp = tmp_path / "host" / "app"
    (dp / "shared").mkdir(parents=True, exist_ok=True)
    (dp / "shared" / ".env").write_text("")
    s = Settings(app="a", deploy_path=str(dp), source=src, upload=UploadConfig(compress=mode))
    h = HostConfig(name="h", host="local", settings=s, env="e")
    return Environment(name="e", hosts=(h,), settings=s), h


def test_auto_compresses_text_not_random(tmp_path: Path):
    text = make_src(tmp_path / "t", True)
    rand = make_src(tmp_path / "r", False)
    dt = diff(scan_tree(text, ()).entries, {})
    dr = diff(scan_tree(rand, ()).entries, {})
    assert compress.estimated_ratio(text, dt) < 0.1 and compress.estimated_ratio(rand, dr) > 0.99
    assert compress.wanted("auto", text, dt) and not compress.wanted("auto", rand, dr)
    assert compress.wanted("always", rand, dr) and not compress.wanted("never", text, dt)
    small = diff({k: v for k, v in scan_tree(text, ()).entries.items() if k in ("d", "d/f1")}, {})
    assert small.send_bytes < compress.MIN_BYTES and not compress.wanted("auto", text, small)


async def deploy(tmp_path: Path, src: Path, mode: str, version: str = "v1"):
    env, h = env_for(tmp_path, src, mode)
    t = LocalTransport()
    events: list = []
    res = await release(Context(transport=t, emit=events.append), env, version)
    return res, t, events, Path(h.settings.deploy_path)


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
async def test_the_release_is_the_same_whatever_the_mode(tmp_path: Path, mode: str):
    src = make_src(tmp_path / "src", True)
    res, t, events, dp = await deploy(tmp_path, src, mode)
    assert res.ok, res
    for i in (0, 17, 39):
        assert (dp / "releases" / "v1" / "d" / f"f{i}").read_bytes() == (src / "d" / f"f{i}").read_bytes()
    sent = t.bytes_sent
    plain = sum(p.stat().st_size for p in (src / "d").iterdir())
    up = next(e for e in events if isinstance(e, PhaseFinished) and e.phase == "upload")
    if mode == "never":
        assert sent > plain and "gzip" not in up.detail
    else:
        assert sent < plain / 10 and "gzip" in up.detail
    # a redeploy of a changed file goes the same way, hard-linking the rest
    (src / "d" / "f3").write_bytes(b"changed\n" * 200_000)
    res, _, _, _ = await deploy(tmp_path, src, mode, "v2")
    assert res.ok and (dp / "releases" / "v2" / "d" / "f3").read_bytes() == b"changed\n" * 200_000
    assert os.stat(dp / "releases" / "v2" / "d" / "f5").st_ino == os.stat(dp / "releases" / "v1" / "d" / "f5").st_ino


@pytest.fixture
def no_gzip(tmp_path: Path, monkeypatch):
    # a PATH where tar works but gzip is missing (as on a minimal host)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in os.environ["PATH"].split(":"):
        for name in os.listdir(tool) if os.path.isdir(tool) else ():
            if name not in ("gzip", "gunzip", "zcat") and not (bin_dir / name).exists():
                try:
                    os.symlink(os.path.join(tool, name), bin_dir / name)
                except OSError:
                    pass
    monkeypatch.setenv("PATH", str(bin_dir))


async def test_auto_without_gzip_on_the_host_sends_plain(tmp_path: Path, no_gzip):
    src = make_src(tmp_path / "src", True)
    res, _, events, dp = await deploy(tmp_path, src, "auto")
    assert res.ok, res
    assert (dp / "releases" / "v1" / "d" / "f2").read_bytes() == (src / "d" / "f2").read_bytes()
    assert any("no gzip on the host" in e.line for e in events if isinstance(e, LogLine))


async def test_always_without_gzip_is_one_clear_error_and_no_release(tmp_path: Path, no_gzip):
    src = make_src(tmp_path / "src", True)
    res, _, _, dp = await deploy(tmp_path, src, "always")
    assert not res.ok
    [h] = res.hosts
    assert "upload.compress is 'always'" in h.message and "has no gzip" in h.message
    assert not (dp / "releases" / "v1").exists()  # cut short before the switch: removed


# ------------------------------------------------- piece by piece (issue 21, Packer)

TEXT = b"line of some very repetitive template text, as a tree of sources has\n" * 16_000  # ~1.1 MB
HALF = os.urandom(compress.PIECE // 2) + TEXT[:compress.PIECE // 2]  # packs to about half


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_link(packer: compress.Packer, wire_rate: float, pieces: int, *, streams: int = 1,
             data: bytes = TEXT, burst_at_once: bool = True) -> list[bytes]:
    """Feed ``pieces`` pieces per stream through a link of ``wire_rate`` bytes/s: each
    stream's first BURST bytes are taken at once (buffers), the rest at the link's pace."""
    clock = packer._clock
    meters = [packer.meter() for _ in range(streams)]
    taken = [0] * streams
    out = []
    for _ in range(pieces):
        for i, took in enumerate(meters):
            piece = packer.pack(data[:compress.PIECE])
            if not (burst_at_once and taken[i] < compress.BURST):
                clock.now += len(piece) / wire_rate
            taken[i] += len(piece)
            took(piece)
            out.append(piece)
    return out


def test_a_thin_link_gets_every_piece_packed():
    p = compress.Packer("auto", Clock())
    out = run_link(p, 6.25e6, 40)  # 50 Mbit/s
    assert all(isinstance(x, Packed) for x in out) and p.packing and p.share == 1.0
    assert all(x.inflate() == TEXT[:compress.PIECE] for x in out[:3])


def test_a_fast_link_goes_plain_after_its_burst_and_a_short_look():
    p = compress.Packer("auto", Clock())
    out = run_link(p, 80e6, 60, data=HALF)  # the loopback's pace
    packed = sum(isinstance(x, Packed) for x in out)
    # the burst (4 MiB: 8 pieces) and a look (0.1 s at 80 MB/s: ~15 pieces), then plain
    assert not p.packing and 8 < packed <= 26, packed
    assert not any(isinstance(x, Packed) for x in out[-20:])


def test_a_burst_into_buffers_does_not_make_a_thin_link_look_fast():
    # four parts: each dumps its window at once, then all share 50 Mbit/s
    p = compress.Packer("auto", Clock())
    out = run_link(p, 6.25e6 / 4, 12, streams=4)
    assert all(isinstance(x, Packed) for x in out)


def test_the_pace_is_the_links_not_the_datas():
    """Data that packs 50-fold through a 2 MB/s link: plain-equivalent 100 MB/s, but the
    link is thin, so it stays packed (judging by the inflated size would flip to plain)."""
    p = compress.Packer("auto", Clock())
    out = run_link(p, 2e6, 60, data=b"a" * compress.PIECE)
    assert all(isinstance(x, Packed) for x in out) and p.packing


def test_a_link_that_slows_down_gets_packed_again():
    p = compress.Packer("auto", Clock())
    run_link(p, 80e6, 40, data=HALF)
    assert not p.packing
    out = run_link(p, 3e6, 10, data=HALF, burst_at_once=False)
    assert p.packing and isinstance(out[-1], Packed)


def test_what_does_not_shrink_goes_plain_unless_always():
    noise = os.urandom(compress.PIECE)
    auto = compress.Packer("auto", Clock())
    assert not any(isinstance(x, Packed) for x in run_link(auto, 6.25e6, 8, data=noise)) and auto.share == 0
    always = compress.Packer("always", Clock())
    out = run_link(always, 80e6, 30, data=noise)
    assert all(isinstance(x, Packed) for x in out) and always.share == 1.0


def test_when_a_packer_is_used(tmp_path: Path):
    text = make_src(tmp_path / "t", True)
    big = diff(scan_tree(text, ()).entries, {})
    small = diff({k: v for k, v in scan_tree(text, ()).entries.items() if k in ("d", "d/f1")}, {})
    assert compress.packer("auto", big, True) is not None and compress.packer("always", small, True) is not None
    assert compress.packer("auto", small, True) is None  # under MIN_BYTES: plain
    assert compress.packer("never", big, True) is None
    assert compress.packer("auto", big, False) is None and compress.packer("always", big, False) is None


async def test_packed_pieces_reach_a_local_script_inflated(tmp_path: Path):
    """A transport without a session loop (here LocalTransport) inflates Packed pieces."""
    import hashlib

    p = compress.Packer("always", Clock())
    data = [TEXT, os.urandom(5000), TEXT[:777]]

    async def stream():
        for d in data:
            yield p.pack(d)
            yield b"plain\n"

    r = await LocalTransport().run(HostConfig(name="h", host="local", settings=Settings(app="a", deploy_path="/x", source=tmp_path)),
                                   "sha256sum | cut -c1-64", stdin=stream())
    assert r.stdout == hashlib.sha256(b"".join(d + b"plain\n" for d in data)).hexdigest()
