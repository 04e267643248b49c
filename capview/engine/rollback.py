"""``capview rollback``: lock -> the switch transaction to a retained release. No file copied.

Two round trips: (1) lock + read releases and history, (2) the transaction
(switching.py: stop -> swap -> retag -> start -> health -> record -> unlock; an
unhealthy target is reverted to the release that was live, the same way).
"""

from __future__ import annotations

import asyncio

from capview.config import Environment, HostConfig
from capview.engine import switching
from capview.engine.context import Context, OperationResult
from capview.engine.history import history_record, parse_history, previous_live
from capview.engine.scripts.hooks import restore_precheck, rollback_pieces
from capview.engine.hostrun import HostRun, PhaseFailed
from capview.engine.hosts import HostResult, operation
from capview.engine.layout import validate_version
from capview.engine.lock import HostLock, LockOwner, locked_listing, unlock_quietly
from capview.engine.releases_meta import ReleaseListing
from capview.engine.scripts.switch import SwitchPlan

ROLLBACK_PHASES = ("lock", "switch", "health")


async def rollback(
    ctx: Context, env: Environment, *, to: str | None = None, host: str | None = None, force: bool = False,
    run_hooks: bool = False, restore_data: bool = False,
) -> OperationResult:
    """``run_hooks``: run the target's before_start hooks too (never by default);
    ``restore_data``: put back the target's SQLite snapshot (engine/data.py plans and
    words what that loses; the CLI asks first)."""
    if to is not None:
        validate_version(to)

    async def one(h: HostConfig) -> HostResult:
        return await HostRollback(ctx, h, to, force, run_hooks=run_hooks, restore_data=restore_data).execute()

    hosts = env.select(host)
    if to is not None and len(hosts) > 1:  # issue 17: converge the environment on ``to``

        async def run_all(_hosts) -> list[HostResult]:
            return await converge(env, [HostRollback(ctx, h, to, force, converging=True, run_hooks=run_hooks,
                                                        restore_data=restore_data) for h in hosts])

        return await operation(ctx, env, host, "rollback", None, version=to, hosts=hosts, run_all=run_all)
    return await operation(ctx, env, host, "rollback", one, version=to, follow_strategy=True)


async def converge(env: Environment, runs: list["HostRollback"]) -> list[HostResult]:
    """``rollback ENV --to V`` on several hosts: lock and read every host first; when V is
    missing or unusable on any of them nothing changes anywhere (one line names the host
    and why); otherwise every host not on V switches to it (hosts already on V: ok)."""
    gate = asyncio.Semaphore(max(1, env.max_parallel))

    async def bounded(fn, run):
        async with gate:
            return await fn(run)

    got = await asyncio.gather(*(bounded(lambda r: r.lock_stage(), r) for r in runs))
    bad = next(((r, g) for r, g in zip(runs, got) if g is not None), None)
    if bad is not None:
        run, res = bad
        why = f"nothing switched: {run.host.name}: {res.finished.message}"
        return list(await asyncio.gather(*(
            bounded(lambda r: r.give_up(why), r) if g is None else _same(g) for r, g in zip(runs, got))))
    return list(await asyncio.gather(*(bounded(lambda r: r.switch_stage(), r) for r in runs)))


async def _same(res: HostResult) -> HostResult:
    return res


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
    def __init__(self, ctx: Context, host: HostConfig, to: str | None, force: bool, *,
                 converging: bool = False, run_hooks: bool = False, restore_data: bool = False) -> None:
        super().__init__(ctx, host)
        self.to = to
        self.force = force
        self.converging = converging  # issue 17: a host already on ``to`` is fine
        self.run_hooks = run_hooks
        self.restore_data = restore_data
        self.lock = HostLock(self.paths, LockOwner.new(ctx.operator, "rollback", to, ctx.clock()))
        self.listing: ReleaseListing | None = None
        self.target: str | None = None

    async def execute(self) -> HostResult:
        return await self.lock_stage() or await self.switch_stage()

    async def lock_stage(self) -> HostResult | None:
        def choose(listing: ReleaseListing) -> tuple[str, str]:
            if self.converging and self.to is not None and listing.current == self.to:
                return self.to, f"already on {self.to}"
            target = choose_target(listing, self.to, self.force, self.host.name)
            return target, f"{listing.current or 'nothing'} -> {target}"

        got = await locked_listing(self, self.lock, choose, self.to)
        if isinstance(got, HostResult):
            return got
        self.listing, self.target = got
        return None

    async def switch_stage(self) -> HostResult:
        assert self.listing is not None
        if self.target == self.listing.current:  # converge: nothing to do here
            await unlock_quietly(self, self.lock)
            return HostResult(self.finish("ok", f"already on {self.target}", self.target), 0)
        return await switching.switch_and_conclude(self, self.switch_plan(), self.words, self.target,
                                                   not_begun=self.not_begun)

    async def give_up(self, why: str) -> HostResult:
        """converge: another host cannot go to ``to``: touch nothing here, unlock."""
        await unlock_quietly(self, self.lock)
        return HostResult(self.finish("failed", why, self.to), 1)

    def switch_plan(self) -> SwitchPlan:
        assert self.listing is not None and self.target is not None
        now, current, target = self.ctx.clock(), self.listing.current, self.target
        t, c = self.listing.meta(target), self.listing.meta(current)
        live = ({**t.raw, "state": "live", "deployed_at": t.raw.get("deployed_at") or now}
                if t is not None and t.raw is not None else None)
        superseded = ({**c.raw, "state": "superseded"}
                      if c is not None and c.raw is not None and c.raw.get("state") == "live" else None)
        record = history_record("rollback", self.host.name, self.ctx.operator, now, version=target,
                                phases=dict(self.phases), **{"from": current})
        # An unhealthy target goes back to current; it keeps its state (it was good once,
        # and prune would delete a "failed" one), the history says what happened.
        if self.restore_data:
            record["restore_data"] = True
        return SwitchPlan(op="rollback", settings=self.settings, token=self.lock.token, target=target,
                          previous=current, revert="previous" if current else "first", live_doc=live,
                          superseded_doc=superseded, record=record, check_image=True,
                          precheck=restore_precheck(self.paths, target) if self.restore_data else "",
                          **rollback_pieces(self.host, target, current, now, run_hooks=self.run_hooks,
                                            restore=self.restore_data))

    async def not_begun(self, r: switching.SwitchResult) -> HostResult:
        if r.outcome == "notstarted":  # the transaction never ran: the lock is still ours
            await unlock_quietly(self, self.lock)
        return switching.conclude(self, r, self.words, self.target)

    def words(self, r: switching.SwitchResult) -> tuple[str, str] | None:
        current, target = self.listing.current if self.listing else None, self.target
        if r.outcome == "ok":
            return "ok", (f"rolled back {current} -> {target}" if current
                          else f"{target} is live (nothing was live before)") + switching.downtime_words(r)
        if r.outcome == "refused" and "noimage" in r.values:
            b = self.settings.build
            return "failed", f"image {b.image if b else '?'}:{target} no longer exists; rebuild it or pick another release"
        if r.outcome == "notstarted":
            return "failed", "the connection was lost before the switch began; nothing was switched"
        if r.outcome == "refused":
            return "failed", f"the switch was refused: {r.reason}"
        if r.outcome == "failed" and "switched" not in r.values and self.restore_data:
            return "failed", (f"switch to {target} failed ({r.reason}); nothing was restored, "
                              + (f"{current} restarted" if current else "nothing was live"))
        if r.outcome == "rolled_back":
            return "failed", f"{target} was unhealthy; " + (f"{current} is live again" if current else
                                                            "nothing was live before it") + "".join(f" ({w})" for w in r.warnings)
        if r.outcome == "failed" and "switched" not in r.values:
            return "failed", f"switch to {target} failed; " + (f"{current} restarted" if current else "nothing was live")
        if r.outcome == "failed" and not current:
            return "failed", f"{target} was unhealthy; nothing was live before it"
        if r.outcome == "failed":
            return "failed", f"{target} was unhealthy and switching back failed ({'; '.join(r.warnings)}); check the host"
        return None
