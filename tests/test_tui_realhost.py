"""The dashboard driven with Pilot against the real testbed (issue 6): real sshd, real
``systemd --user`` unit, ``EngineBackend`` over ``SshTransport``.

Every operation goes through the UI as a user would do it (keys, the deploy dialog,
the confirm dialogs, the prune screen) and is then checked ON THE HOST: the
``current`` link, what the running app answers on /health, the ``releases/`` listing
and each release's ``.capview/release.json``, not only what the screen says.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import signal
import time
from pathlib import Path

import pytest

from capview.config import Config, Environment
from capview.remote.ssh import SshTransport
from capview.tui.app import CapviewApp, MainScreen
from capview.tui.backend import EngineBackend
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.deploy_dialog import DeployDialog
from capview.tui.screens.deploy_progress import ProgressScreen
from capview.tui.screens.error import ErrorScreen
from capview.tui.screens.prune import PruneScreen
from capview.tui.widgets.host_list import HostList
from capview.tui.widgets.releases_table import ReleasesTable
from realhost import make_source, new_app
from tui_world import world  # noqa: F401

pytestmark = pytest.mark.testbed

SIZE = (140, 40)


# --------------------------------------------------------------------------- helpers


def make_ui(env: Environment, tmp_path: Path) -> CapviewApp:
    config = Config(path=tmp_path / "deploy.yaml", environments=(env,))
    backend = EngineBackend(config=config, transport=SshTransport(), operator="ui@pilot")
    # no timer refresh: the test refreshes by key (R) or the app does after each operation
    return CapviewApp(backend, refresh_interval=3600, animations=False)


async def until(pilot, cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await pilot.pause(0.02)


async def settled(pilot, app: CapviewApp) -> None:
    """Every worker done (refreshes, plans) and the screen caught up."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()


def refreshing(app: CapviewApp) -> bool:
    return any(w.group == "refresh" and w.is_running for w in app.workers)


def use_source(src: Path, tree: Path) -> None:
    """The working tree now holds ``tree`` (the deploy reads env.settings.source, as the CLI does)."""
    if src.is_symlink() or src.exists():
        src.unlink()
    src.symlink_to(tree, target_is_directory=True)


def shown(table: ReleasesTable) -> list[str]:
    """Versions in the order the table shows them."""
    return [str(r.key.value) for r in table.ordered_rows]


def host_releases(app) -> list[str]:
    return sorted(app.sh(f"ls {app.deploy_path}/releases").split())


def states(app, versions) -> dict[str, str]:
    return {v: app.release_json(v)["state"] for v in versions}


async def deploy_through_dialog(pilot, ui: CapviewApp, version: str) -> None:
    await pilot.press("d")
    assert isinstance(ui.screen, DeployDialog)
    await pilot.press("home", "ctrl+k", *version)  # replace the defaulted version by typing
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(ui.screen, ProgressScreen), ui.screen
    op = ui.last_operation
    await until(pilot, lambda: not op.running, 90, f"release {version}")
    assert op.state == "ok", op.summary()
    assert all(hp.phases["cleanup"].state == "done" for hp in op.hosts.values())
    await pilot.press("escape")  # back to the main screen
    await pilot.pause()
    assert isinstance(ui.screen, MainScreen)
    await settled(pilot, ui)


def stop_sshd(h) -> None:
    """Stop a testbed host's sshd the way a host going down would: the listener AND the
    per-connection sshd processes it forked (our open connection dies with them)."""
    listener = h.proc.pid
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    todo, tree = [listener], []
    while todo and len(tree) < 1000:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    h.proc.terminate()
    h.proc.wait(timeout=10)
    h.proc = None
    for pid in tree[1:]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- deploy, rollback, prune


@pytest.mark.slow
async def test_deploy_rollback_and_prune_through_the_ui(host, tmp_path):
    app = new_app(host, build=False)
    src = tmp_path / "src"
    use_source(src, make_source(tmp_path, "v1"))
    ui = make_ui(app.env(src), tmp_path)
    async with ui.run_test(size=SIZE) as pilot:
        await settled(pilot, ui)
        hosts = ui.main_screen.query_one(HostList)
        assert ui.status[host.name].reachable, ui.status[host.name].error
        assert hosts.has_focus
        await pilot.press("down")  # from the environment to its one host
        assert hosts.target.host == host.name

        # -- deploy v1, v2, v3 with the dialog; the working tree changes between them
        for i, v in enumerate(("v1", "v2", "v3")):
            if i:
                use_source(src, make_source(tmp_path, v))
            await deploy_through_dialog(pilot, ui, v)
            assert app.current() == f"releases/{v}"
            assert app.get("/health") == (200, v)
            assert app.release_json(v)["state"] == "live"
            assert app.release_json(v)["operator"] == "ui@pilot"
        assert host_releases(app) == ["v1", "v2", "v3"]
        assert states(app, ["v1", "v2"]) == {"v1": "superseded", "v2": "superseded"}

        # the table lists them, newest first, v3 marked current
        table = ui.main_screen.query_one(ReleasesTable)
        assert shown(table) == ["v3", "v2", "v1"]
        assert table.get_cell("v3", "mark").plain.strip() == "●"

        # -- rollback: tab to the releases, highlight the oldest, r, y
        await pilot.press("tab")
        assert table.has_focus
        await pilot.press("down", "down")
        assert table.highlighted.version == "v1"
        await pilot.press("r")
        assert isinstance(ui.screen, ConfirmScreen)
        body = ui.screen.body.plain
        assert host.name in body and "v3  →  v1" in body, body
        assert ui.screen.focused.id == "no"  # Cancel is the default
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(ui.screen, ProgressScreen)
        op = ui.last_operation
        await until(pilot, lambda: not op.running, 60, "rollback")
        assert op.kind == "rollback" and op.state == "ok", op.summary()
        assert op.hosts[host.name].downtime is not None
        assert app.current() == "releases/v1"
        assert app.get("/health") == (200, "v1")
        assert host_releases(app) == ["v1", "v2", "v3"]  # nothing copied, nothing removed
        assert states(app, ["v1", "v2", "v3"]) == {"v1": "live", "v2": "superseded", "v3": "superseded"}
        assert app.history()[-1]["op"] == "rollback" and app.history()[-1]["to"] == "v1"
        await pilot.press("escape")
        await settled(pilot, ui)
        assert isinstance(ui.screen, MainScreen)
        assert ui.status[host.name].current == "v1"
        assert table.get_cell("v1", "mark").plain.strip() == "●"

        # -- prune: p, lower keep to 1, enter, y
        await pilot.press("p")
        assert isinstance(ui.screen, PruneScreen)
        prune = ui.screen
        await settled(pilot, ui)
        assert prune.keep == 5 and prune._deletions() == []  # keep_releases=5: nothing to delete
        for _ in range(4):
            await pilot.press("minus")
        await until(pilot, lambda: not prune.planning, 30, "prune plan")
        await settled(pilot, ui)
        assert prune.keep == 1
        # current (v1) is protected whatever keep says, the newest other one (v3) is kept, v2 goes
        assert [(h, v) for h, v, _ in prune._deletions()] == [(host.name, "v2")]
        actions = {i.version: i.action for i in prune.plans[0].items}
        assert actions == {"v1": "protected", "v3": "keep", "v2": "delete"}, prune.plans
        await pilot.press("enter")
        assert isinstance(ui.screen, ConfirmScreen)
        assert "v2" in ui.screen.body.plain and "v3" not in ui.screen.body.plain
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(ui.screen, ProgressScreen)
        op = ui.last_operation
        await until(pilot, lambda: not op.running, 60, "prune")
        assert op.kind == "prune" and op.state == "ok", op.summary()
        assert host_releases(app) == ["v1", "v3"]
        assert app.current() == "releases/v1"
        assert app.get("/health") == (200, "v1")
        assert states(app, ["v1", "v3"]) == {"v1": "live", "v3": "superseded"}
        assert app.sh(f"cat {app.deploy_path}/shared/.env").startswith("SECRET=")  # shared/ untouched
        assert not app.sh(f"ls -A {app.deploy_path}/releases | grep -v '^v' || true").strip()  # no .trash left
        await settled(pilot, ui)
        assert shown(table) == ["v3", "v1"]  # newest deploy first; a rollback does not reorder
        assert table.get_cell("v1", "mark").plain.strip() == "●"

        # -- q on the progress screen quits too (the app leaves you there after every operation)
        assert isinstance(ui.screen, ProgressScreen)
        await pilot.press("q")
        await until(pilot, lambda: ui.return_value is not None, 10, "quit")
    assert ui.return_value == 0


# --------------------------------------------------------------------------- unreachable host, q


async def test_a_host_whose_sshd_stops_shows_as_unreachable_and_q_quits(testbed, tmp_path):
    up = testbed.start_host("tb-ui-up")
    down = testbed.start_host("tb-ui-down")
    try:
        apps = [new_app(up, build=False), new_app(down, build=False)]
        src = make_source(tmp_path, "v1")
        hcs = [a.host_config(src) for a in apps]
        env = Environment(name="test", hosts=tuple(hcs), settings=hcs[0].settings, strategy="parallel")
        ui = make_ui(env, tmp_path)
        async with ui.run_test(size=SIZE) as pilot:
            await settled(pilot, ui)
            assert ui.status[up.name].reachable and ui.status[down.name].reachable

            # deploy v1 to both through the dialog (the environment is selected), then one goes down
            await deploy_through_dialog(pilot, ui, "v1")
            assert [a.get("/health") for a in apps] == [(200, "v1"), (200, "v1")]

            stop_sshd(down)
            await pilot.press("R")
            await settled(pilot, ui)
            st = ui.status[down.name]
            assert not st.reachable and st.error, st
            assert ui.status[up.name].reachable and ui.status[up.name].current == "v1"
            assert isinstance(ui.screen, MainScreen)  # a message, not a modal, not a crash
            assert not any(isinstance(s, ErrorScreen) for s in ui.screen_stack)
            assert any(down.name in n.message for n in ui._notifications)
            hosts = ui.main_screen.query_one(HostList)
            label = hosts._target_nodes[next(t for t in hosts._target_nodes if t.host == down.name)].label
            assert "unreachable" in label.plain
            print(f"\nunreachable reason shown: {st.error}")
            table = ui.main_screen.query_one(ReleasesTable)
            assert shown(table) == ["v1"]
            # the app keeps working on the live host
            await pilot.press("R")
            await settled(pilot, ui)
            assert ui.status[up.name].reachable and not ui.status[down.name].reachable

            # -- q on the main screen quits
            assert isinstance(ui.screen, MainScreen)
            await pilot.press("q")
            await until(pilot, lambda: ui.return_value is not None, 10, "quit")
        assert ui.return_value == 0
        assert apps[0].get("/health") == (200, "v1")  # quitting touches nothing on the hosts
    finally:
        for h in (up, down):
            testbed.stop_host(h)


# --------------------------------------------------------------------------- what the benchmarks drove


class CountingTransport:
    """SshTransport wrapper: how many scripts were in flight at once."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.now = self.peak = 0

    @property
    def round_trips(self) -> int:
        return self.inner.round_trips

    async def run(self, *a, **kw):
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            return await self.inner.run(*a, **kw)
        finally:
            self.now -= 1

    async def close(self) -> None:
        await self.inner.close()


async def test_dashboard_status_fetches_every_host_at_once_whatever_max_parallel(host, tmp_path):
    """max_parallel paces deploys; the read-only listing asks all hosts at once (tui_bench: 50
    hosts at 100 ms RTT went from five waves to one), one round trip each."""
    app = new_app(host, build=False)
    base = app.host_config(tmp_path)
    hcs = tuple(dataclasses.replace(base, name=f"h{i:02d}", settings=dataclasses.replace(
        base.settings, deploy_path=f"{app.deploy_path}-{i}")) for i in range(12))
    env = Environment(name="test", hosts=hcs, settings=hcs[0].settings, max_parallel=2)
    transport = CountingTransport(SshTransport())
    backend = EngineBackend(config=Config(path=tmp_path / "deploy.yaml", environments=(env,)),
                            transport=transport)
    try:
        st = await backend.status("test")
        assert [s.host for s in st] == [h.name for h in hcs] and all(s.reachable for s in st)
        assert transport.peak == 12 and transport.round_trips == 12
    finally:
        await backend.close()


async def test_freeze_gc_freezes_after_the_first_frame_and_unfreezes_on_exit(world):
    app = world.app(freeze_gc=True)
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, app)
        assert gc.get_freeze_count() > 10_000  # the startup heap is out of the collector's view
        await pilot.press("q")
        await until(pilot, lambda: app.return_value is not None, 10, "quit")
    assert gc.get_freeze_count() == 0
