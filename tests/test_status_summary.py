"""The host-side size summary (capview releases) equals the client-side per-inode sums (prune)."""

from __future__ import annotations

import os
from pathlib import Path

from capview.config import Environment, HostConfig, Settings
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.status import snapshot
from capview.remote.local import LocalTransport


async def test_summary_matches_detail(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(30):
        (src / "d" / f"f{i}").write_bytes(os.urandom(1000 + i * 300))
    (src / "same1").write_text("x" * 5000)
    os.link(src / "same1", src / "same2")  # a hard link inside one release
    dp = tmp_path / "host" / "web" / "app"
    (dp / "shared").mkdir(parents=True)
    (dp / "shared" / ".env").write_text("")
    s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=10)
    h = HostConfig(name="h", host="local", settings=s, env="e")
    env = Environment(name="e", hosts=(h,), settings=s)
    ctx = Context(transport=LocalTransport())
    for v in ("v1", "v2", "v3"):
        (src / "d" / f"f{v}").write_bytes(os.urandom(7000))  # each release adds a file
        (src / "d" / "f0").write_bytes(os.urandom(2000))  # and changes one
        assert (await release(ctx, env, v)).ok
    detail = (await snapshot(ctx, h, detail=True)).status.releases
    summary = (await snapshot(ctx, h, detail=False)).status.releases
    fields = lambda r: (r.version, r.files, r.size_bytes, r.unique_bytes, r.unique_disk_bytes)  # noqa: E731
    assert [fields(r) for r in detail] == [fields(r) for r in summary]
    assert all(r.unique_bytes > 0 for r in summary) and summary[0].size_bytes > summary[0].unique_bytes
