"""issue 17: an environment's deploy in two stages, so a deploy never leaves it split.

Stage 1 (every selected host): lock -> setup -> upload -> link -> build. The locks come
first, on every host, before any upload starts: the first host's alone, then the rest
at once - so of two deploys of one environment started together, the one that gets the
first host's lock gets every lock, and the other fails cleanly naming the holder. A
failure anywhere in stage 1 aborts every host: nothing switched, the new release
removed, the locks released, one line naming the host and the reason.

Stage 2 (only when every host is ready): the switch transaction per host, in the order
``rollout`` says (deploy.yaml, per environment):

* ``canary: N``: the first N hosts switch, then ``canary_wait`` of health checks on them
  (one host-side watch script each), then the rest;
* batches of ``batch_size`` hosts (or ``batch_percent`` of them, rounded up); without
  one, ``strategy: rolling`` switches one host at a time and ``parallel`` all at once
  (always at most ``max_parallel`` together);
* ``on_failure: revert_all`` (default): once a host fails (its own transaction already
  put it back), every host that switched is switched back to its previous release
  (a rollback transaction under the lock we still hold) and the rest never switch:
  the environment ends on the old version. ``stop``: switched hosts stay, the rest
  never switch, and the split is reported loudly with the command that converges it.

With more than one host, each transaction keeps the lock (SwitchPlan.keep_lock) so
nothing can slip in between a switch and its revert; one last trip per host releases
it (the "+1 round trip" of the issue). A single host runs exactly as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Protocol, Sequence

from capview.config import Environment
from capview.engine.context import Context
from capview.engine.events import HostWarning
from capview.engine.hosts import HostResult
from capview.errors import UsageError

CANARY_POLL = 2.0  # seconds between the canary watch's health checks (on the host)


class Member(Protocol):
    """One host's deploy as the fleet drives it (deploy.HostDeploy)."""

    host: object
    version: str
    previous: str | None

    async def stage_lock(self) -> HostResult | None: ...  # None: locked, go on
    async def stage_prepare(self) -> HostResult | None: ...  # None: ready to switch
    async def stage_switch(self) -> HostResult: ...
    async def abandon(self, reason: str) -> HostResult: ...  # not switched: release removed, unlocked
    async def revert(self, reason: str) -> HostResult: ...  # switched: back to its previous release
    async def watch(self, seconds: float) -> str | None: ...  # canary: None healthy, else why not
    async def release_lock(self) -> None: ...
    def done(self, result: HostResult) -> HostResult: ...  # emit the host's final HostFinished


def with_rollout(env: Environment, *, strategy: str | None = None, batch: str | None = None,
                 canary: int | None = None, canary_wait: float | None = None, on_failure: str | None = None,
                 ) -> Environment:
    """``env`` with the CLI's stage-2 flags over deploy.yaml's (None: keep). ``batch``:
    ``N`` hosts or ``P%``. Bad values: UsageError, one line."""
    r = env.rollout
    if batch is not None:
        text = batch.strip()
        if text.endswith("%") and text[:-1].strip().isdigit() and 1 <= int(text[:-1]) <= 100:
            r = dataclasses.replace(r, batch_size=None, batch_percent=int(text[:-1]))
        elif text.isdigit() and int(text) >= 1:
            r = dataclasses.replace(r, batch_size=int(text), batch_percent=None)
        else:
            raise UsageError(f"--batch-size {batch!r}: write a number of hosts (e.g. 2) or a share (e.g. 25%)")
    if canary is not None:
        if canary < 0:
            raise UsageError(f"--canary {canary}: a number of hosts, 0 or more")
        r = dataclasses.replace(r, canary=canary)
    if canary_wait is not None:
        r = dataclasses.replace(r, canary_wait=canary_wait)
    if on_failure is not None:
        r = dataclasses.replace(r, on_failure=on_failure)
    return dataclasses.replace(env, rollout=r, strategy=strategy or env.strategy)


def batches(env: Environment, members: Sequence[Member]) -> list[list[Member]]:
    """Stage 2's order: canaries first, then batches (see the module doc)."""
    r, rest, out = env.rollout, list(members), []
    if r.canary and len(rest) > 1:
        out.append(rest[:r.canary])
        rest = rest[r.canary:]
    if r.batch_size:
        size = r.batch_size
    elif r.batch_percent:
        size = math.ceil(len(members) * r.batch_percent / 100)
    else:
        size = 1 if env.strategy == "rolling" else len(rest)
    size = max(1, size)
    out += [rest[i:i + size] for i in range(0, len(rest), size)]
    return out


async def _bounded(items: Sequence, fn, limit: int) -> list:
    gate = asyncio.Semaphore(max(1, limit))

    async def one(m):
        async with gate:
            return await fn(m)

    return list(await asyncio.gather(*(one(m) for m in items)))


def _ok(res: HostResult | None) -> bool:
    return res is not None and res.finished.outcome == "ok" and res.code == 0


def _name(m: Member) -> str:
    return getattr(m.host, "name", "?")


async def rollout(ctx: Context, env: Environment, members: Sequence[Member]) -> list[HostResult]:
    """Both stages over ``members`` (config order); one HostResult per member, same order."""
    results: dict[int, HostResult] = {}
    index = {id(m): i for i, m in enumerate(members)}
    limit = env.max_parallel

    def settle(m: Member, res: HostResult) -> None:
        results[index[id(m)]] = res

    async def abandon_all(pending: Sequence[Member], reason: str) -> None:
        for m, res in zip(pending, await _bounded(pending, lambda m: m.abandon(reason), limit)):
            settle(m, res)

    # ---- stage 1: the locks (first host alone), then setup/upload/link/build
    ready: list[Member] = []
    first_failure: tuple[Member, HostResult] | None = None
    try:
        head = await members[0].stage_lock()
        locked = [members[0]] if head is None else []
        if head is not None:
            settle(members[0], head)
            first_failure = (members[0], head)
        else:
            for m, res in zip(members[1:], await _bounded(members[1:], lambda m: m.stage_lock(), limit)):
                if res is None:
                    locked.append(m)
                else:
                    settle(m, res)
                    first_failure = first_failure or (m, res)
        if first_failure is None:
            for m, res in zip(locked, await _bounded(locked, lambda m: m.stage_prepare(), limit)):
                if res is None:
                    ready.append(m)
                else:  # failed (or a dry run's end)
                    settle(m, res)
                    if not _ok(res):
                        first_failure = first_failure or (m, res)
    except BaseException:  # Ctrl-C / SIGTERM (or a bug): give up what has not switched, unlock
        await asyncio.shield(_cleanup_cancelled(members, results, index))
        raise
    if first_failure is not None:
        m, res = first_failure
        pending = [p for p in members if index[id(p)] not in results]  # ready, or never tried
        await abandon_all(pending, f"not switched: {_name(m)} failed before any host switched "
                                   f"({res.finished.message})")
        return [members[i].done(results[i]) for i in range(len(members))]

    # ---- stage 2: the switches, as the rollout says
    switched: list[Member] = []
    plan = batches(env, ready)
    failure: str | None = None
    try:
        for n, batch in enumerate(plan):
            for m, res in zip(batch, await _bounded(batch, lambda m: m.stage_switch(), limit)):
                settle(m, res)
                if _ok(res):
                    switched.append(m)
                elif failure is None:
                    failure = f"{_name(m)} failed ({res.finished.message})"
            if failure is None and n == 0 and env.rollout.canary and len(plan) > 1:
                failure = await _watch_canaries(ctx, env, batch)
            if failure is not None:
                rest = [m for b in plan[n + 1:] for m in b]
                await abandon_all(rest, f"not switched: {failure}")
                break
        if failure is not None and switched and env.rollout.on_failure == "revert_all":
            for m, res in zip(switched, await _bounded(switched, lambda m: m.revert(failure), limit)):
                settle(m, res)
            switched = []
    except BaseException:  # Ctrl-C / SIGTERM (or a bug): give up what has not switched, unlock
        await asyncio.shield(_cleanup_cancelled(members, results, index))
        raise
    await _bounded(list(ready), lambda m: m.release_lock(), limit)
    if failure is not None and switched:
        _report_split(ctx, env, members, switched, failure)
    return [members[i].done(results[i]) for i in range(len(members))]


async def _watch_canaries(ctx: Context, env: Environment, canaries: Sequence[Member]) -> str | None:
    wait = env.rollout.canary_wait
    ctx.event(HostWarning, None, message=(
        f"canary: {', '.join(_name(m) for m in canaries)} switched; watching their health for {wait:g}s "
        "before the other hosts"))
    verdicts = await asyncio.gather(*(m.watch(wait) for m in canaries))
    for m, why in zip(canaries, verdicts):
        if why is not None:
            return f"canary {_name(m)} became unhealthy during canary_wait ({why})"
    return None


async def _cleanup_cancelled(members: Sequence[Member], results: dict, index: dict) -> None:
    """Ctrl-C / SIGTERM: the hosts that have not switched give up their release and lock
    (a host whose switch began keeps what its host decided); every lock is released."""
    pending = [m for m in members if index[id(m)] not in results]
    for m in pending:
        try:
            await m.abandon("cancelled by the user")
        except BaseException:
            pass
    for m in members:
        try:
            await m.release_lock()
        except BaseException:
            pass


def _report_split(ctx: Context, env: Environment, members: Sequence[Member], switched: Sequence[Member],
                  failure: str) -> None:
    new = {_name(m) for m in switched}
    version = switched[0].version
    parts = [f"{_name(m)} {version if _name(m) in new else (m.previous or 'nothing')}" for m in members]
    olds = sorted({m.previous for m in members if _name(m) not in new and m.previous})
    fix = f"capview rollback {env.name} --to {olds[0]}" if len(olds) == 1 else f"capview rollback {env.name} --to VERSION"
    ctx.event(HostWarning, None, message=(
        f"{env.name} is split: {', '.join(parts)} - {failure}; on_failure is stop, so the switched hosts "
        f"stay. Converge with: {fix} (or release {version} again)"))
