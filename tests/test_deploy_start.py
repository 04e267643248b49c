"""issue 21: a deploy opens its connections while the source is scanned (engine/source.py).

The scan's failure still wins (its one line, nothing run on any host, the connects
dropped); a connect's failure is the lock phase's, reported as before, and never tried twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from capview.config import Environment, HostConfig, Settings
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostFinished
from capview.engine.hostrun import PhaseFailed
from capview.errors import EXIT_UNREACHABLE, HostUnreachable
from capview.remote.local import LocalTransport


class PreparingTransport(LocalTransport):
    """LocalTransport with SshTransport's ``prepare``: it records when it starts and ends."""

    def __init__(self, fail: bool = False, hold: bool = False) -> None:
        super().__init__()
        self.fail, self.hold = fail, hold
        self.prepared: list[str] = []
        self.cancelled: list[str] = []
        self.first_run_after_prepare: bool | None = None

    async def prepare(self, host: HostConfig) -> None:
        self.prepared.append(host.name)
        try:
            await asyncio.sleep(3600 if self.hold else 0.05)
        except asyncio.CancelledError:
            self.cancelled.append(host.name)
            raise
        if self.fail:
            raise HostUnreachable(f"{host.name}: connection refused")

    async def run(self, host, script, **kw):
        if self.first_run_after_prepare is None:
            self.first_run_after_prepare = bool(self.prepared)
        return await super().run(host, script, **kw)


def _env(tmp_path: Path, src: Path) -> Environment:
    dp = tmp_path / "host" / "app"
    (dp / "shared").mkdir(parents=True)
    (dp / "shared" / ".env").write_text("")
    s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=3)
    hc = HostConfig(name="h0", host="local", settings=s, env="e")
    return Environment(name="e", hosts=(hc,), settings=s, strategy="parallel")


async def test_connect_starts_before_the_scan_and_the_deploy_goes_on(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    t = PreparingTransport()
    assert (await release(Context(transport=t), _env(tmp_path, src), "v1")).ok
    assert t.prepared == ["h0"] and t.first_run_after_prepare is True


async def test_a_failed_scan_drops_the_connects_and_runs_nothing(tmp_path: Path) -> None:
    t = PreparingTransport(hold=True)
    with pytest.raises(PhaseFailed) as exc:
        await release(Context(transport=t), _env(tmp_path, tmp_path / "missing"), "v1")
    assert exc.value.code == 2 and "is not a directory" in str(exc.value)
    await asyncio.sleep(0)  # the cancel is delivered
    assert t.prepared == ["h0"] and t.cancelled == ["h0"] and t.round_trips == 0


async def test_an_unreachable_host_fails_its_lock_phase_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    t = PreparingTransport(fail=True)
    events: list = []
    res = await release(Context(transport=t, emit=events.append), _env(tmp_path, src), "v1")
    assert res.exit_code == EXIT_UNREACHABLE and t.round_trips == 0 and t.prepared == ["h0"]
    fin = [e for e in events if isinstance(e, HostFinished)]
    assert len(fin) == 1 and fin[0].outcome == "failed" and "connection refused" in fin[0].message
    assert not (tmp_path / "host" / "app" / "releases").exists()
