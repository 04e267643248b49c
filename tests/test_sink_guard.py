"""A front that breaks (a closed stdout, a terminal gone, a renderer bug) never breaks the
operation (issue 15 item 1, the engine's part): Context swallows the sink's exceptions,
remembers the first, and the result is the same as with a working sink."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capview.config import Environment, HostConfig, Settings
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import PhaseStarted
from capview.engine.rollback import rollback
from capview.remote.local import LocalTransport


def env_for(tmp_path: Path) -> Environment:
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.html").write_text("hi\n")
    dp = tmp_path / "app"
    (dp / "shared").mkdir(parents=True)
    (dp / "shared" / ".env").write_text("")
    s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=3)
    h = HostConfig(name="h1", host="local", settings=s, env="e")
    return Environment(name="e", hosts=(h,), settings=s)


class Pipe:
    """A sink that works until ``after`` events, then raises like a closed pipe."""

    def __init__(self, after: int) -> None:
        self.after, self.seen = after, 0

    def __call__(self, ev) -> None:
        self.seen += 1
        if self.seen > self.after:
            raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("after", [0, 5, 12])
async def test_a_broken_sink_changes_nothing(tmp_path, after):
    env = env_for(tmp_path)
    dp = Path(env.settings.deploy_path)
    ok = Context(transport=LocalTransport(), operator="t@b")
    assert (await release(ok, env, "v1")).ok
    ctx = Context(transport=LocalTransport(), emit=Pipe(after), operator="t@b")
    r = await release(ctx, env, "v2")
    assert r.ok, r.hosts[0].message
    assert isinstance(ctx.sink_error, BrokenPipeError)
    assert json.loads((dp / "releases/v2/.capview/release.json").read_text())["state"] == "live"
    assert (dp / "current").readlink() == Path("releases/v2") and not (dp / ".capview/lock").exists()
    rb = await rollback(ctx, env)
    assert rb.ok and (dp / "current").readlink() == Path("releases/v1")


async def test_a_sink_failing_on_the_health_phase_only(tmp_path):
    env = env_for(tmp_path)

    def sink(ev):
        if isinstance(ev, PhaseStarted) and ev.phase == "health":
            raise OSError(5, "Input/output error")  # the terminal went away

    ctx = Context(transport=LocalTransport(), emit=sink, operator="t@b")
    assert (await release(ctx, env, "v1")).ok
    assert isinstance(ctx.sink_error, OSError)
