"""The one switching path (client side): deploy, its revert, rollback, restart and
migrate's final switch all go through :func:`switch`.

It runs the host-side transaction (scripts/switch.py) and turns its progress frames
into the usual PhaseStarted/PhaseFinished/DowntimeMeasured events. From the moment
the script is sent, the outcome comes from the host only:

* the connection drops, or anything on this side raises: reconnect (bounded, with
  backoff), wait for the host's transaction and read its result file - never start a
  second switch beside a running one, never abort or mark anything from here;
* Ctrl-C / SIGTERM (the task is cancelled): the switch is finished first, then the
  cancellation goes on (:func:`finish_shielded`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from capview.engine.events import DowntimeMeasured, HostWarning
from capview.engine.hostrun import HostRun
from capview.engine.hosts import HostResult
from capview.engine.scripts.shell import Frames, last_line, one_line
from capview.engine.scripts.switch import SwitchPlan, launcher, recover, transaction
from capview.errors import EXIT_UNREACHABLE

RECOVER_WAIT = 25.0  # seconds one recovery script waits on the host before answering "running"


@dataclass
class SwitchResult:
    """What the host's transaction ended with (``outcome`` ok | rolled_back | failed),
    or ``refused`` / ``notstarted`` (nothing was touched) or ``unknown`` (no answer)."""

    outcome: str
    reason: str = ""
    downtime: float | None = None
    unavailable: float | None = None
    unlocked: bool = False
    warnings: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # last value of every progress frame
    frames: list[tuple[str, str]] = field(default_factory=list)  # everything the host said, in order
    error: str = ""  # why the result is unknown

    @property
    def began(self) -> bool:
        """The switch began on the host (something may have changed)."""
        return self.outcome not in ("refused", "notstarted")

    @property
    def healthy(self) -> bool:
        return self.outcome == "ok"


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class _Follow:
    """Progress frames -> events, and the result, for one transaction."""

    def __init__(self, run: HostRun, plan: SwitchPlan, extra: Callable[[str, str], None] | None = None) -> None:
        self.run = run
        self.plan = plan
        self.extra = extra
        self.res = SwitchResult("unknown")
        self.seen = 0  # frames of the transaction's own output handled so far
        self.measured = False
        self.last_err = ""

    def frame(self, kind: str, arg: str) -> None:
        try:
            self._frame(kind, arg)
            if self.extra is not None:
                self.extra(kind, arg)
        except Exception:  # a surprising frame must not break following the switch
            pass

    def line(self, line: str) -> None:
        if line.strip():
            self.last_err = line.strip()

    def _frame(self, kind: str, arg: str) -> None:
        r = self.res
        if kind in ("recovered", "notstarted", "nometa", "claimed"):
            r.values[kind] = arg
            return
        self.seen += 1
        r.frames.append((kind, arg))
        if kind == "result":
            key, _, value = arg.partition(" ")
            if key == "outcome":
                r.outcome = value
            elif key == "reason":
                r.reason = value
            elif key in ("downtime", "unavailable"):
                setattr(r, key, _num(value))
            elif key == "unlocked":
                r.unlocked = value == "yes"
        elif kind == "begin":
            self.run.phase_start(arg)
        elif kind == "end":
            phase, _, state = arg.partition(" ")
            if self.run.phase == phase:
                self.run.phase_end(phase, state == "ok", self.detail(phase, state == "ok"))
        elif kind == "warn":
            r.warnings.append(arg)
            self.run.ctx.event(HostWarning, self.run.host.name, message=arg)
        elif kind == "downtime" and self.run.phase in ("switch", "restart") and not self.measured:
            self.measured = True
            r.values[kind] = arg
            seconds = _num(arg)
            if seconds is not None:
                self.run.ctx.event(DowntimeMeasured, self.run.host.name, seconds=seconds)
        elif kind in ("stop_begun", "held_by"):
            r.values.setdefault(kind, arg)  # the forward switch's, not the revert's
        else:
            r.values[kind] = arg

    def detail(self, phase: str, ok: bool) -> str:
        v = self.res.values
        down = _num(v.get("downtime", ""))
        window = f", downtime {down:.2f}s" if down is not None else ""
        held = v.get("held_by", "").strip()
        held_note = f" (socket activation: {held} held connections)" if held else ""
        if phase == "switch":
            if "switched" not in v:
                return f"switch failed before current moved: {self.last_err}".rstrip(": ")
            text = f"current -> releases/{self.plan.target}{window}{held_note}"
            return text if ok else text + f"; service start failed: {self.last_err}"
        if phase == "restart":
            text = f"{self.plan.target} restarted{window}{held_note}"
            return text if ok else text + f"; service start failed: {self.last_err}"
        if phase == "health":
            health = v.get("health", "")
            if health == "failed not-started":
                return "service did not start"
            return ("healthy " if ok else "unhealthy: last status ") + health
        if phase == "revert":
            back = self.plan.previous or "nothing"
            return f"back on {back}" if ok else f"could not get back to a healthy {back}"
        if phase == "cleanup":
            deleted = [a for k, a in self.res.frames if k in ("deleted", "unlinked")]
            freed = next((a for k, a in reversed(self.res.frames) if k == "freed"), "0")
            return f"pruned {', '.join(deleted)}, freed {freed} bytes" if deleted else "nothing to prune"
        return ""


async def switch(run: HostRun, plan: SwitchPlan, *, stdin: bytes = b"",
                 on_frame: Callable[[str, str], None] | None = None) -> SwitchResult:
    """Run the transaction for ``plan`` on ``run``'s host and return its result.

    Never raises once the script is sent (the host decides); a cancellation arriving
    meanwhile is delivered after the switch finished (see :func:`finish_shielded`)."""
    frames = Frames.new()
    follow = _Follow(run, plan, on_frame)
    script = launcher(run.paths, plan.token, transaction(plan, frames), frames)
    task = asyncio.ensure_future(_drive(run, plan, frames, follow, script, stdin))
    result, cancelled = await finish_shielded(task)
    run.switch_result = result
    if cancelled:
        run.log("interrupted: the switch was finished first")
        raise asyncio.CancelledError()
    return result


async def finish_shielded(task: asyncio.Future):
    """Wait for ``task`` even while this caller is being cancelled; return (its result,
    whether a cancellation arrived meanwhile)."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except BaseException:
            break
    return task.result(), cancelled


async def _drive(run: HostRun, plan: SwitchPlan, frames: Frames, follow: _Follow, script: str,
                 stdin: bytes) -> SwitchResult:
    try:
        try:
            res = await run.run(script, stdin=stdin, frames=frames, on_frame=follow.frame, on_line=follow.line)
            if follow.res.outcome != "unknown" and "done" in {k for k, _ in follow.res.frames}:
                return follow.res
            why = f"the switch script ended (exit {res.exit_status}) without its result: {last_line(res.stderr)}"
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # lost connection, a timeout, a bug on this side: the host decides
            why = one_line(str(exc) or type(exc).__name__)
        run.log(f"{why}; reconnecting to wait for the host's result")
        return await _recover(run, plan, frames, follow, why)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never let a bug here look like a failed switch to the caller
        follow.res.outcome, follow.res.error = "unknown", one_line(str(exc) or type(exc).__name__)
        return follow.res


def recovery_budget(plan: SwitchPlan) -> float:
    """How long to keep trying to learn the result: the host's own worst case, and more."""
    h = plan.settings.health
    return 120.0 + 3 * (h.timeout if h is not None else 0.0)


async def _recover(run: HostRun, plan: SwitchPlan, frames: Frames, follow: _Follow, why: str) -> SwitchResult:
    deadline = time.monotonic() + recovery_budget(plan)
    delay, last = 0.5, why
    script = recover(run.paths, plan.token, frames, RECOVER_WAIT)
    while time.monotonic() < deadline:
        mark = _Replay(follow)
        try:
            await run.run(script, frames=frames, on_frame=mark.frame, on_line=follow.line, quiet=True,
                          timeout=RECOVER_WAIT + 30)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            last = one_line(str(exc) or type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            continue
        v = follow.res.values
        if "notstarted" in v or "nometa" in v or "claimed" in v:
            follow.res.outcome = "notstarted"
            return follow.res
        state = v.pop("recovered", "")
        if state == "done" and follow.res.outcome != "unknown":
            run.log(f"reconnected: the host finished the switch ({follow.res.outcome})")
            return follow.res
        if state == "vanished":
            follow.res.error = "the switch on the host ended without a result (killed?)"
            return follow.res
        delay = 0.5  # still running on the host: ask again
    follow.res.error = f"no answer from the host about the switch ({last})"
    return follow.res


class _Replay:
    """A recovery's output repeats the transaction's whole output: skip what was seen."""

    def __init__(self, follow: _Follow) -> None:
        self.follow = follow
        self.index = 0
        self.skip = follow.seen

    def frame(self, kind: str, arg: str) -> None:
        if kind in ("recovered", "notstarted", "nometa", "claimed"):
            self.follow.frame(kind, arg)
            return
        self.index += 1
        if self.index > self.skip:
            self.follow.frame(kind, arg)


def unknown(result: SwitchResult, host) -> str:
    """The message for a switch whose result never reached us."""
    return (f"the result of the switch is unknown: {result.error or result.reason}; the host finishes it on its "
            f"own - check with: capview releases {host.env or 'ENV'} --host {host.name}")


Words = Callable[[SwitchResult], "tuple[str, str] | None"]  # result -> (outcome, message); None: unknown


def conclude(run: HostRun, result: SwitchResult, words: Words, version: str | None, *,
             interrupted: bool = False) -> HostResult:
    """The host's result -> this host's HostFinished and exit code (nothing on the host is
    touched). ``words`` is the operation's wording of a known result."""
    said = words(result) if result.outcome != "unknown" else None
    if said is None:
        outcome, code, message = "failed", EXIT_UNREACHABLE, unknown(result, run.host)
    else:
        (outcome, message), code = said, 0 if said[0] == "ok" else 1
    if interrupted:
        message += " (interrupted: it was finished first)"
    return HostResult(run.finish(outcome, message, version), code)


async def switch_and_conclude(run: HostRun, plan: SwitchPlan, words: Words, version: str | None, *,
                              stdin: bytes = b"", not_begun=None) -> HostResult:
    """:func:`switch`, then :func:`conclude`. A cancellation that arrived meanwhile is
    reported and passed on; ``not_begun(result)`` (a coroutine) handles a transaction
    that never began (refused, or never started: nothing changed on the host)."""
    try:
        result = await switch(run, plan, stdin=stdin)
    except asyncio.CancelledError:
        if run.switch_result is not None:
            conclude(run, run.switch_result, words, version, interrupted=True)
        raise
    if not result.began and not_begun is not None:
        return await not_begun(result)
    return conclude(run, result, words, version)
