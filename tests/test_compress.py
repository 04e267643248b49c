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
