"""issue 17: what a host's deploy does for the fleet (fleet.rollout) beyond its own
lifecycle: give up before switching, revert after switching, the canary watch, the
last trip that releases the lock kept through the switch, and one HostFinished at the
very end. HostDeploy (deploy.py) inherits it; it needs HostDeploy's ``lock``,
``state``, ``version``, ``heartbeat``, ``before_switch_failed`` and ``phases``.
"""

from __future__ import annotations

import asyncio
import secrets

from capview.engine import switching
from capview.engine.events import HostFinished
from capview.engine.history import history_record
from capview.engine.hostrun import HostRun, PhaseFailed
from capview.engine.hosts import HostResult
from capview.engine.lock import unlock_hint
from capview.engine.scripts.fleet import canary_watch
from capview.engine.scripts.shell import Frames
from capview.engine.scripts.switch import SwitchPlan
from capview.engine.scripts.usage import refresh_script


class FleetMember(HostRun):
    fleet = False  # set per instance: more than one host (keep the lock, report at the end)
    reported = False
    heartbeat: asyncio.Task | None = None

    async def abandon(self, reason: str) -> HostResult:
        """Another host failed before this one switched: remove the release (it never went
        live), unlock. A host never started is reported skipped."""
        if self.lock.state == "free" and not self.state.created:
            self.stop_heartbeat()
            return HostResult(self.finish("skipped", reason, self.version), 0)
        if self.switch_result is not None and self.switch_result.began:  # cut short mid-switch (Ctrl-C):
            await self.release_lock()  # the host's result stands; never remove what may be live
            return HostResult(self.finish("failed", f"{reason} (its switch had begun: check with capview releases "
                                          f"{self.host.env or 'ENV'})", self.version), 1)
        self.state.uploaded = False  # removed, as a release cut short
        res = await self.before_switch_failed(PhaseFailed(reason))
        self.stop_heartbeat()
        return res

    async def revert(self, reason: str) -> HostResult:
        """on_failure revert_all: this host went live, another failed: back to the previous
        release under the lock we still hold (one rollback transaction)."""
        prev = self.state.previous
        if prev is None:
            return HostResult(self.finish("failed", f"{self.version} stays live: {reason}, and this host had no "
                                          "previous release to go back to", self.version), 1)
        r = await switching.switch(self, self.revert_plan(reason))
        if r.unlocked:
            self.lock.released()
        if r.outcome == "ok":
            return HostResult(self.finish("rolled_back", f"{self.version} went live, then was reverted to {prev}: "
                                          f"{reason} (on_failure revert_all)", self.version), 1)
        said = r.reason or r.error or r.outcome
        return HostResult(self.finish("failed", f"{self.version} is live but reverting to {prev} failed ({said}) "
                                      f"after {reason}; check the host", self.version), 1)

    async def watch(self, seconds: float) -> str | None:
        """The canary watch: one host-side loop of health checks for ``seconds``."""
        frames = Frames.new()
        try:
            res = await self.run(frames.prelude() + canary_watch(self.settings, seconds), quiet=True,
                                 timeout=seconds + 60 + 3 * (self.settings.health.timeout if self.settings.health else 0))
        except Exception as exc:
            return f"the health watch failed: {exc}"
        got = {k: a for k, a, _ in frames.parse(res.stdout)}
        if res.exit_status == 0 and "canary_ok" in got:
            return None
        return f"health {got.get('health', 'unknown')}".strip()

    async def release_lock(self) -> None:
        """The fleet's last trip on this host: release the lock kept through the switch."""
        self.stop_heartbeat()
        if not self.lock.maybe_held:
            return
        try:
            await self.run(self.lock.release_script() + refresh_script(self.paths.root), quiet=True, timeout=30)
            self.lock.released()
        except Exception as exc:
            self.log(f"could not release the lock ({exc}); {unlock_hint(self.host.env, self.host.name)}")

    def stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None

    def finish(self, outcome: str, message: str, version: str | None):
        """In a fleet a host's end is told once, when every host is settled (done())."""
        if not self.fleet or self.reported:
            return super().finish(outcome, message, version)
        return HostFinished(host=self.host.name, at=self.ctx.clock(), outcome=outcome, message=message,
                            version=version)

    def done(self, result: HostResult) -> HostResult:
        if not self.fleet:
            return result
        self.reported = True
        f = result.finished
        return HostResult(self.finish(f.outcome, f.message, f.version), result.code)

    def revert_plan(self, reason: str) -> SwitchPlan:
        """issue 17 (revert_all): a rollback transaction from this release, which went live,
        back to the previous one; this release is recorded failed (it never served the
        environment as a whole). Under the lock kept since stage 1 (its own op dir)."""
        st, now, v, prev = self.state, self.ctx.clock(), self.version, self.state.previous
        assert prev is not None
        prev_meta = st.listing.meta(prev)
        mine = {**st.meta, "phases": dict(self.phases), "deployed_at": now}
        record = history_record("rollback", self.host.name, self.ctx.operator, now, version=prev,
                                phases=dict(self.phases), reason=f"revert_all: {reason}", **{"from": v})
        return SwitchPlan(
            op="rollback", settings=self.settings, token=self.lock.token, op_id=secrets.token_hex(8),
            target=prev, previous=v, revert="previous",
            live_doc=({**prev_meta.raw, "state": "live"} if prev_meta is not None and prev_meta.raw is not None else None),
            superseded_doc={**mine, "state": "failed", "health": "ok", "finished_at": now,
                            "error": f"reverted (on_failure revert_all): {reason}"},
            record=record, check_image=True,
        )

