"""``capview restart``: stop -> start -> health of the release that is live, through
the same switch transaction as a deploy (switching.py), under the lock, recorded in
the history. Two round trips: lock + listing, the transaction.

There is nothing to go back to: an unhealthy restart keeps the release (it is still
current, never marked failed), captures the service's logs into its health.log and
records ``failed``.
"""

from __future__ import annotations

from capview.config import Environment, HostConfig
from capview.engine import switching
from capview.engine.context import Context, OperationResult
from capview.engine.history import history_record
from capview.engine.hostrun import HostRun, PhaseFailed
from capview.engine.hosts import HostResult, operation
from capview.engine.layout import HEALTH_LOG
from capview.engine.lock import HostLock, LockOwner, locked_listing, unlock_quietly
from capview.engine.releases_meta import ReleaseListing
from capview.engine.scripts.switch import SwitchPlan

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
        def choose(listing: ReleaseListing) -> tuple[str, str]:
            if listing.current is None:
                raise PhaseFailed("nothing is live here (current names no release): deploy first")
            return listing.current, f"restarting {listing.current}"

        got = await locked_listing(self, self.lock, choose, None)
        if isinstance(got, HostResult):
            return got
        _, self.current = got
        record = history_record("restart", self.host.name, self.ctx.operator, self.ctx.clock(),
                                version=self.current, **{"from": self.current})
        plan = SwitchPlan(op="restart", settings=self.settings, token=self.lock.token, target=self.current,
                          revert="none", record=record)
        return await switching.switch_and_conclude(self, plan, self.words, self.current, not_begun=self.not_begun)

    async def not_begun(self, r: switching.SwitchResult) -> HostResult:
        if r.outcome == "notstarted":
            await unlock_quietly(self, self.lock)
        return switching.conclude(self, r, self.words, self.current)

    def words(self, r: switching.SwitchResult) -> tuple[str, str] | None:
        if r.outcome == "ok":
            return "ok", f"{self.current} restarted" + (f" (downtime {r.downtime:.2f}s)" if r.downtime is not None else "")
        if r.outcome in ("refused", "notstarted"):
            return "failed", f"nothing was restarted: {r.reason or 'the connection was lost before it began'}"
        if r.outcome == "failed":
            return "failed", (f"{r.reason} after the restart; {self.current} stays current - "
                              f"see releases/{self.current}/{HEALTH_LOG}")
        return None
