"""The main screen's dialogs: what each action asks before it starts anything.

Each function reads the engine's own state (``HostStatus``, ``LockInfo``, the engine's
``lock.why_not_stale`` rule) to say exactly what will happen on which host, and sets
the safe default: Cancel is focused everywhere; rolling back to a failed release and
forcing a lock that capview cannot prove dead need the version (or host) typed. A restart
changes no release, so Cancel focused and ``y`` are enough. Where the hosts keep SQLite
snapshots, the rollback dialog is ``RollbackScreen`` (the data plan, ``d`` to restore it).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from capview.engine.hooks import snapshots_on
from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.rollback_dialog import RollbackScreen
from capview.tui.text import ago, clean_line, plural
from capview.tui.widgets.host_list import Target
from capview.tui.widgets.releases_table import ReleaseRow


def deploy(main: Any, target: Target) -> None:
    from capview.tui.screens.deploy_dialog import DeployDialog, DeployRequest

    app = main.app

    def done(req: DeployRequest | None) -> None:
        if req is not None:
            app.start_release(req)

    app.push_screen(DeployDialog(list(app.envs), app.status, env=target.env, host=target.host,
                                 version=app.default_version()), done)


def rollback(main: Any, target: Target, row: ReleaseRow | None) -> None:
    app = main.app
    if row is None:
        app.notify("Highlight the release to roll back to.", severity="warning")
        return
    to = row.version
    env = app.env(target.env)
    names = [target.host] if target.host else [h.name for h in env.hosts]
    statuses = [s for s in main.statuses(target) if s.reachable]
    if not statuses:
        app.notify(f"{target.label}: no reachable host.", severity="error", markup=False)
        return
    if all(s.current == to for s in statuses):
        app.notify(f"{to} is already current on {target.label}.", markup=False)
        return
    failed = row.info.state == "failed"
    body = Text()
    body.append("Hosts   ", style="dim")
    body.append(", ".join(clean_line(h) for h in names), style="bold")
    width = max(len(clean_line(s.host)) for s in statuses) + 2
    missing = []
    for st in statuses:
        body.append(f"\n{clean_line(st.host):<{width}}", style="dim")
        body.append(clean_line(st.current) if st.current else "none", style="bold")
        body.append("  →  ")
        body.append(clean_line(to), style="bold green")
        if st.current == to:
            body.append("  (already current: unchanged)", style="dim")
        elif not any(r.version == to for r in st.releases):
            missing.append(st.host)
            body.append("  (not on this host: it fails there)", style="bold red")
    down = [h for h in names if h not in {s.host for s in statuses}]
    if down:
        body.append(f"\n\n{', '.join(clean_line(h) for h in down)} unreachable: it fails there.", style="yellow")
    if failed:
        body.append(f"\n\n{clean_line(to)} FAILED its health check"
                    + (f" ({clean_line(row.info.error)})" if row.info.error else "")
                    + ". Rolling back to it forces it live anyway.", style="bold red")
    image = env.settings.build.image if env.settings.build is not None else None
    body.append("\nImage   " if not failed and not missing else "\n\nImage   ", style="dim")
    body.append(f"{clean_line(image)}:{clean_line(to)} → retagged :current" if image else "no image configured",
                style="cyan")
    body.append("\n\nNothing is copied: stop, atomic symlink switch, start, health check; an unhealthy "
                "release is switched back.", style="dim")

    title, danger, typing = f"Roll back {target.label} to {to}?", failed or bool(missing), to if failed else None
    with_data = [h for h in env.select(target.host) if snapshots_on(h.settings)]
    if not with_data:
        def done(ok: bool | None) -> None:
            if ok:
                app.start_rollback(target, to, force=failed)

        app.push_screen(ConfirmScreen(title, body, confirm_label="Roll back", danger=danger, type_to_confirm=typing,
                                      id="rollback-confirm"), done)
        return
    # issue 18: the data plan under the body, and d to restore the target's snapshot too
    screen = RollbackScreen(title, body, version=to, danger=danger, type_to_confirm=typing, clock=app.clock,
                            plan=lambda: app.backend.plan_data(target.env, to=to, host=target.host, force=failed))

    def done_data(ok: bool | None) -> None:
        if ok:
            app.start_rollback(target, to, force=failed, restore_data=screen.restore_data)

    app.push_screen(screen, done_data)


def pin(main: Any, target: Target, version: str, pin: bool) -> None:
    """Pin (prune never deletes it) or unpin ``version`` on the target's hosts that have it."""
    app = main.app
    hosts = [s.host for s in main.statuses(target)
             if s.reachable and any(r.version == version for r in s.releases)]
    if not hosts:
        app.notify(f"{version}: not on any reachable host.", severity="warning", markup=False)
        return
    call = app.backend.pin if pin else app.backend.unpin

    async def run() -> None:
        for host in hosts:
            await call(target.env, version, host=host)
        verb = "Pinned" if pin else "Unpinned"
        app.log_activity(f"{verb.lower()} {version} on {', '.join(hosts)}")
        app.notify(f"{verb} {version} on {plural(len(hosts), 'host')}"
                   + (": prune keeps it." if pin else "."), markup=False)
        app.refresh_status()

    app.run_worker(run(), name=f"{'pin' if pin else 'unpin'} {version}", group="pin", exit_on_error=False)


def unlock(main: Any, target: Target) -> None:
    """Unlock asks once for a lock the engine would remove (stale heartbeat, holder gone on
    this machine); a lock it cannot prove dead needs the version (or host) typed to force."""
    from capview.engine.lock import why_not_stale

    app = main.app
    locked = [s for s in main.statuses(target) if s.reachable and s.lock is not None]
    if not locked:
        app.notify(f"{target.label}: no lock is held.", markup=False)
        return
    now = app.clock()
    reasons = {st.host: why_not_stale(st.lock, now) for st in locked}  # this machine's id, as the CLI
    live = [st for st in locked if reasons[st.host] is not None]
    body = Text()
    for st in locked:
        lk = st.lock
        body.append(f"{clean_line(st.host)}: ", style="bold")
        body.append(clean_line(lk.operator), style="yellow")
        body.append(f"  {clean_line(lk.operation)}" + (f" {clean_line(lk.version)}" if lk.version else ""))
        body.append(f"\n  pid {lk.pid} on {clean_line(lk.machine or '?')}, started {ago(now - lk.started)}, "
                    f"heartbeat {ago(now - lk.heartbeat)}\n", style="dim")
        if reasons[st.host]:
            body.append(f"  capview cannot prove it is dead: {clean_line(reasons[st.host])}.\n", style="yellow")
    if live:
        body.append("\nRemoving a live lock lets two operations run at once on the same host. Force it only "
                    "if you know that operation is dead.", style="bold red")
        word = (live[0].lock.version or live[0].host) if len(live) == 1 else target.env
    else:
        body.append("\nIts heartbeat is stale and its process is gone: safe to remove.", style="dim")
        word = None

    def done(ok: bool | None) -> None:
        if ok:
            app.run_worker(app.unlock(target, force=bool(live)), name=f"unlock {target.label}", group="ops",
                           exit_on_error=False)

    title = f"Force unlock {target.label}?" if live else f"Unlock {target.label}?"
    app.push_screen(ConfirmScreen(title, body, confirm_label="Force unlock" if live else "Unlock",
                                  danger=bool(live), type_to_confirm=word, id="unlock-confirm"), done)


def restart(main: Any, target: Target) -> None:
    """Restart the live release (stop -> start -> health, under the lock) on the target's hosts."""
    app = main.app
    env = app.env(target.env)
    names = [target.host] if target.host else [h.name for h in env.hosts]
    statuses = {s.host: s for s in main.statuses(target)}
    running = [n for n in names if statuses.get(n) is not None and statuses[n].reachable and statuses[n].current]
    if not running:
        app.notify(f"{target.label}: no reachable host has a current release to restart.", severity="warning",
                   markup=False)
        return
    width = max(len(clean_line(n)) for n in names) + 2
    body = Text()
    for name in names:
        st = statuses.get(name)
        body.append(f"{clean_line(name):<{width}}", style="dim")
        if name in running:
            body.append(clean_line(st.current), style="bold")
            body.append("  restarted in place")
        else:
            body.append("unreachable or no current release: it fails there", style="yellow")
        body.append("\n")
    order = "one host at a time" if env.strategy == "rolling" and len(running) > 1 else "all at once"
    body.append(f"\nstop -> start -> health check, {order}, under the deploy lock. No release changes: "
                "an unhealthy restart stays current and its logs go to the release's health.log.", style="dim")

    def done(ok: bool | None) -> None:
        if ok:
            app.start_restart(target)

    app.push_screen(ConfirmScreen(f"Restart {target.label}?", body, confirm_label="Restart",
                                  id="restart-confirm"), done)
