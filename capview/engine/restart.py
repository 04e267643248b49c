"""``capview restart``: stop -> start -> health of the release that is live, through
the same switch transaction as a deploy (switching.py), under the lock, recorded in
the history. Two round trips: lock + listing, the transaction.

There is nothing to go back to: an unhealthy restart keeps the release (it is still
current, never marked failed), captures the service's logs into its health.log and
records ``failed``.
"""

from __future__ import annotations

import asyncio

from capview.config import Environment, HostConfig
from capview.engine import switching
from capview.engine.context import Context, OperationResult
from capview.engine.history import history_record
from capview.engine.hostrun import HostRun, PhaseFailed
from capview.engine.hosts import HostResult, operation
from capview.engine.layout import HEALTH_LOG
from capview.engine.lock import HostLock, LockOwner, take_with_listing, unlock_quietly
from capview.engine.scripts.switch import SwitchPlan
from capview.errors import EXIT_UNREACHABLE, HostUnreachable

RESTART_PHASES = ("lock", "restart", "health")


async def restart(ctx: Context, env: Environment, *, host: str | None = None) -> OperationResult:
    async def one(h: HostConfig) -> HostResult:
        return await HostRestart(ctx, h).execute()

    return await operation(ctx, env, host, "restart", one, follow_strategy=True)


class HostRestart(HostRun):
    def __init__(self, ctx: Context, host: HostConfig) -> None:
        super().__init__(ctx, host)
        self.lock = HostLock(self.paths, LockOwner.new(ctx.operator, "restart", None, ctx.clock()))
        self.current: str | None = None

    async def execute(self) -> HostResult:
        try:
            try:
                async with self.timed("lock") as info:
                    listing = await take_with_listing(self, self.lock)
                    if listing.current is None:
                        raise PhaseFailed("nothing is live here (current names no release): deploy first")
                    self.current = listing.current
                    info["detail"] = f"restarting {self.current}"
            except asyncio.CancelledError:
                await asyncio.shield(unlock_quietly(self, self.lock))
                raise
            except Exception as exc:
                await unlock_quietly(self, self.lock)
                code = exc.code if isinstance(exc, PhaseFailed) else (EXIT_UNREACHABLE if isinstance(exc, HostUnreachable) else 1)
                return HostResult(self.finish("failed", str(exc), self.current), code)
            record = history_record("restart", self.host.name, self.ctx.operator, self.ctx.clock(),
                                    version=self.current, **{"from": self.current})
            plan = SwitchPlan(op="restart", settings=self.settings, token=self.lock.token, target=self.current,
                              revert="none", record=record)
            result = await switching.switch(self, plan)
            if result.outcome == "notstarted":
                await unlock_quietly(self, self.lock)
            return self.report(result)
        except asyncio.CancelledError:
            if self.switch_result is not None:
                self.report(self.switch_result, interrupted=True)
            raise

    def report(self, r: switching.SwitchResult, interrupted: bool = False) -> HostResult:
        if r.outcome == "ok":
            outcome, code = "ok", 0
            message = f"{self.current} restarted" + (f" (downtime {r.downtime:.2f}s)" if r.downtime is not None else "")
        elif r.outcome in ("refused", "notstarted"):
            outcome, code = "failed", 1
            message = f"nothing was restarted: {r.reason or 'the connection was lost before it began'}"
        elif r.outcome == "failed":
            outcome, code = "failed", 1
            message = (f"{r.reason} after the restart; {self.current} stays current - "
                       f"see releases/{self.current}/{HEALTH_LOG}")
        else:
            outcome, code = "failed", EXIT_UNREACHABLE
            message = switching.unknown(r, self.host)
        if interrupted:
            message += " (interrupted: the restart was finished first)"
        return HostResult(self.finish(outcome, message, self.current), code)
