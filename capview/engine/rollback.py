"""``capview rollback``: lock -> stop -> atomic switch -> retag -> start -> health. No file copied.

Three round trips when healthy: (1) lock + read releases and history,
(2) the switch, (3) health + record + unlock. An unhealthy target is
reverted to the release that was live, the same way.
"""

from __future__ import annotations

import asyncio

from capview.config import Environment, HostConfig
from capview.engine import switch as sw
from capview.engine.context import Context, OperationResult
from capview.engine.deploy import last_line, run_hosts, wrap_health
from capview.engine.events import DowntimeMeasured, HostFinished, OperationFinished, OperationStarted, HostWarning
from capview.engine.history import parse_history, previous_live
from capview.engine.hostrun import HostRun, PhaseFailed, await_through_cancel
from capview.engine.layout import validate_version
from capview.engine.lock import LockOwner, acquire_script, describe_holder, parse_owner, release_script, stale_hint
from capview.engine.releases_meta import ReleaseListing, parse_release_listing, release_listing_script
from capview.engine.script import MARK, append_line, parse_markers, q, write_json
from capview.errors import EXIT_LOCKED, EXIT_UNREACHABLE, HostUnreachable

ROLLBACK_PHASES = ("lock", "switch", "health", "cleanup")


async def rollback(
    ctx: Context, env: Environment, *, to: str | None = None, host: str | None = None, force: bool = False,
) -> OperationResult:
    if to is not None:
        validate_version(to)
    hosts = env.select(host)
    ctx.event(OperationStarted, None, operation="rollback", env=env.name, hosts=tuple(h.name for h in hosts), version=to)

    async def one(h: HostConfig):
        return await HostRollback(ctx, h, to, force).execute()

    results = await run_hosts(ctx, env, hosts, one, version=to)
    finished = tuple(r for r, _ in results)
    out = OperationResult.from_hosts(finished, tuple(c for _, c in results))
    ctx.event(OperationFinished, None, operation="rollback", ok=out.ok, results=finished)
    return out


def choose_target(listing: ReleaseListing, to: str | None, force: bool, host: str) -> str:
    """The release to switch to, or a PhaseFailed saying why not."""
    existing = {m.version: m for m in listing.releases}
    if to is None:
        target = previous_live(parse_history(listing.history), listing.current, existing=set(existing))
        if target is None:
            raise PhaseFailed("no previous live release to roll back to", hint="name one with --to VERSION")
    else:
        target = to
    meta = existing.get(target)
    if meta is None:
        known = ", ".join(sorted(existing)) or "none"
        raise PhaseFailed(f"release {target} is not on the host (retained: {known})")
    if target == listing.current:
        raise PhaseFailed(f"{target} is already live")
    if meta.state in ("uploading", "building", "incomplete"):
        raise PhaseFailed(f"release {target} is {meta.state}; it was never complete")
    if meta.state == "failed" and not force:
        raise PhaseFailed(f"release {target} failed its deploy", hint="use --force to switch to it anyway")
    return target


class HostRollback(HostRun):
    def __init__(self, ctx: Context, host: HostConfig, to: str | None, force: bool) -> None:
        super().__init__(ctx, host)
        self.to = to
        self.force = force
        self.owner = LockOwner.new(ctx.operator, "rollback", to, ctx.clock())
        self.locked = False
        self.listing: ReleaseListing | None = None
        self.target: str | None = None
        self.downtime: float | None = None
        self.stop_begun: str | None = None  # host clock when the service stop began

    async def execute(self) -> tuple[HostFinished, int]:
        switching: asyncio.Task | None = None
        try:
            await self.lock_and_read()
            switching = asyncio.ensure_future(self.switch_and_health())
            outcome, message = await asyncio.shield(switching)
            return self.finish(outcome, message, self.target), 0 if outcome == "ok" else 1
        except PhaseFailed as exc:
            await self.unlock()
            return self.finish("failed", str(exc), self.target), exc.code
        except HostUnreachable as exc:
            return self.finish("failed", str(exc), self.target), EXIT_UNREACHABLE
        except asyncio.CancelledError:
            if switching is not None:
                # Cancelled after the switch began: finish it (health, record, unlock)
                # rather than unlock beside it; then pass the cancellation on.
                result = await await_through_cancel(switching)
                if result is not None:
                    outcome, message = result
                    self.finish(outcome, message + " (interrupted: the switch was finished first)", self.target)
            await asyncio.shield(self.unlock())
            raise
        except Exception as exc:
            await self.unlock()
            return self.finish("failed", f"unexpected error: {type(exc).__name__}: {exc}", self.target), 1

    async def lock_and_read(self) -> None:
        async with self.timed("lock") as info:
            script = acquire_script(self.paths, self.owner, self.ctx.clock()) + release_listing_script(
                self.paths, manifest_of_current=False)
            res = await self.run(script, quiet=True)
            if res.exit_status == 3:
                info = parse_owner(res.stdout)
                holder = describe_holder(info, self.ctx.clock())
                raise PhaseFailed(holder, code=EXIT_LOCKED,
                                  hint=stale_hint(info, self.host.env, self.host.name))
            if res.exit_status != 0:
                raise PhaseFailed(f"reading releases failed: {last_line(res.stderr) or res.exit_status}")
            self.locked = True
            self.listing = parse_release_listing(res.stdout)
            self.target = choose_target(self.listing, self.to, self.force, self.host.name)
            info["detail"] = f"{self.listing.current or 'nothing'} -> {self.target}"

    async def switch_and_health(self) -> tuple[str, str]:
        assert self.listing is not None and self.target is not None
        current, target = self.listing.current, self.target
        if not await self.switch(target, check_image=True):
            return "failed", f"switch to {target} failed; " + (f"{current} restarted" if current else "nothing was live")
        if await self.health(target, current):
            return "ok", (f"rolled back {current} -> {target}" if current else f"{target} is live (nothing was live before)") + (
                f" (downtime {self.downtime:.2f}s)" if self.downtime is not None else "")
        self.ctx.event(HostWarning, self.host.name, message=f"{target} is unhealthy; switching back to {current}")
        if current:
            await self.switch(current, check_image=False)
        await self.finish_script(append_line(self.paths.history, self.record(current, "rolled_back",
                                                                             error=f"{target} unhealthy")))
        return "failed", f"{target} was unhealthy; " + (f"{current} is live again" if current else "nothing was live before it")

    async def switch(self, version: str, *, check_image: bool) -> bool:
        async with self.timed("switch") as info:
            pre = ""
            b = self.settings.build
            if check_image and b is not None and b.image:
                image = f"{b.image}:{version}"
                pre = (f"podman image exists {q(image)} || {{ printf '%s noimage\\n' {MARK}; exit 6; }}\n")
            marks: dict[str, str] = {}
            res = await self.run(pre + sw.switch_script(self.settings, version),
                                 on_marker=lambda n, v: marks.__setitem__(n, v))
            if "noimage" in marks:
                raise PhaseFailed(f"image {b.image}:{version} no longer exists; "
                                  "rebuild it or pick another release", code=1)
            if "downtime" in marks:
                self.downtime = float(marks["downtime"])
                self.ctx.event(DowntimeMeasured, self.host.name, seconds=self.downtime)
            self.stop_begun = marks.get("stop_begun")
            info["detail"] = f"current -> releases/{version}" + sw.held_note(marks)
            if res.exit_status != 0:
                info["ok"] = False
                info["detail"] += f" failed: {last_line(res.stderr)}"
                if "switched" not in marks:
                    await self.run(sw.service_start(self.settings), quiet=True)
                return "switched" in marks  # moved but did not start: health fails, we revert
            return True

    async def health(self, target: str, current: str | None) -> bool:
        async with self.timed("health") as info:
            now = self.ctx.clock()
            metas = {m.version: m for m in self.listing.releases}
            on_ok = ""
            t = metas.get(target)
            if t and t.raw is not None:
                on_ok += write_json(self.paths.release(target) + "/.capview/release.json",
                                    {**t.raw, "state": "live", "deployed_at": t.raw.get("deployed_at") or now})
            c = metas.get(current) if current else None
            if c and c.raw is not None and c.raw.get("state") == "live":
                on_ok += write_json(self.paths.release(current) + "/.capview/release.json", {**c.raw, "state": "superseded"})
            measure, numbers = sw.unavailable_since(self.stop_begun)
            on_ok += measure + append_line(self.paths.history, self.record(target, "ok"), numbers)
            on_ok += release_script(self.paths, self.owner) + f"printf '%s unlocked\\n' {MARK}\n"
            res = await self.run(wrap_health(sw.health_script(self.settings), on_ok), quiet=True)
            marks = parse_markers(res.stdout)
            if "unlocked" in marks:
                self.locked = False
            healthy = res.exit_status == 0
            info["ok"] = healthy
            info["detail"] = ("healthy " if healthy else "unhealthy: ") + marks.get("health", [""])[-1]
            return healthy

    def record(self, to: str | None, outcome: str, **extra) -> dict:
        return {"at": self.ctx.clock(), "op": "rollback", "host": self.host.name, "operator": self.ctx.operator,
                "version": self.target, "from": self.listing.current if self.listing else None, "to": to,
                "outcome": outcome, "downtime": self.downtime, "phases": dict(self.phases), **extra}

    async def finish_script(self, script: str) -> None:
        await self.run(script + release_script(self.paths, self.owner), quiet=True)
        self.locked = False

    async def unlock(self) -> None:
        if not self.locked:
            return
        try:
            await self.run(release_script(self.paths, self.owner), quiet=True, timeout=30)
            self.locked = False
        except Exception as exc:
            self.log(f"could not release the lock ({exc}); clear it with: capview unlock {self.host.env or 'ENV'} --host {self.host.name} --force")
