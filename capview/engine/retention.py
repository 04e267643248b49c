"""Which releases stay: the one set of prune rules, for ``capview prune`` and for the
deploy's cleanup (which adds one rule: failed releases stay while there is room).

Keep the ``keep`` newest successful releases by deploy time (fallback: start time).
Failed and incomplete ones are deleted first, whatever their age. Current,
previous-live and pinned releases are always protected, as is a release a running
deploy holds the lock for. A ``releases/`` entry that is a symlink is unlinked,
never followed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

from capview.engine.model import IN_PROGRESS, ReleaseInfo
from capview.engine.releases_meta import ReleaseMeta, referenced_releases
from capview.errors import UsageError

Action = Literal["keep", "delete", "protected"]


@dataclass(frozen=True)
class PruneItem:
    version: str
    action: Action
    reason: str
    frees_bytes: int = 0  # disk bytes only this release holds


def natural_key(v: str) -> tuple:
    """v10 after v9."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", v) if p)


def release_order(r: ReleaseInfo) -> tuple:
    """Oldest first: by deploy time (fallback start time), then natural version order."""
    return (r.deployed_at or r.started_at or 0.0, natural_key(r.version))


def classify(releases: Sequence[ReleaseInfo], current: str | None, previous: str | None,
             keep: int) -> list[PruneItem]:
    """The prune rules (module doc), oldest release first."""
    if keep < 0:
        raise UsageError(f"keep must be 0 or more, not {keep}")
    ok = [r for r in releases if r.state in ("live", "superseded") and r.symlink is None]
    newest = {r.version for r in sorted(ok, key=release_order, reverse=True)[:keep]}
    items: list[PruneItem] = []
    for r in sorted(releases, key=release_order):
        if r.version == current:
            action, why = "protected", "current"
        elif r.version == previous:
            action, why = "protected", "previous live (rollback target)"
        elif r.pinned:
            action, why = "protected", "pinned"
        elif r.symlink is not None:
            action, why = "delete", f"symlink to {r.symlink!r}: unlinked, not followed"
        elif r.state in IN_PROGRESS:
            action, why = "protected", f"{r.state}: deploy in progress"
        elif r.state in ("failed", "incomplete"):
            action, why = "delete", r.state
        elif r.version in newest:
            action, why = "keep", f"within keep {keep}"
        else:
            action, why = "delete", f"older than the newest {keep}"
        items.append(PruneItem(r.version, action, why, r.unique_disk_bytes if action == "delete" else 0))
    return keep_referenced(items, releases)


def keep_referenced(items: list[PruneItem], releases: Sequence[ReleaseInfo]) -> list[PruneItem]:
    """issue 13: never delete a release that a retained one names by absolute path
    (a venv's shebangs, a config pointing into releases/<v>/): it would break that one.
    Repeated until stable, since a release kept this way may name another."""
    refs = {r.version: set(r.references) for r in releases}
    changed = True
    while changed:
        changed = False
        retained = {i.version for i in items if i.action != "delete"}
        for n, i in enumerate(items):
            if i.action != "delete" or i.reason.startswith("symlink"):
                continue
            by = sorted(v for v in retained if i.version in refs.get(v, ()))
            if by:
                items[n] = PruneItem(i.version, "protected", f"referenced by {', '.join(by)} "
                                     f"(absolute paths into releases/{i.version}/)")
                changed = True
    return items


def choose_deletions(releases: Sequence[ReleaseInfo], current: str | None, previous: str | None,
                     keep: int) -> list[str]:
    return [i.version for i in classify(releases, current, previous, keep) if i.action == "delete"]


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _info(meta: ReleaseMeta, state: str) -> ReleaseInfo:
    raw = meta.raw or {}
    return ReleaseInfo(version=meta.version, state=state, pinned=meta.pinned,
                       started_at=_num(raw.get("started_at")), deployed_at=_num(raw.get("deployed_at")),
                       references=referenced_releases(raw))  # issue 13: prune keeps what retained ones name


def after_deploy(listing: Sequence[ReleaseMeta], new: str, previous: str | None, keep: int,
                 now: float) -> list[str]:
    """What the deploy's cleanup deletes once ``new`` is live with ``previous`` before it.

    The deploy holds the lock, so no other deploy is filling a release: one still
    uploading/building/ready was abandoned (a killed or cut-off deploy) and is incomplete.
    Failed releases stay for inspection (health.log, the inspector) while the host has
    room under ``keep``; `capview prune` removes them. Incomplete ones (never whole)
    have nothing to inspect and go."""
    releases = []
    for m in listing:
        if m.version == previous:
            releases.append(_info(m, "superseded"))
        elif m.version != new:
            releases.append(_info(m, "incomplete" if m.state in IN_PROGRESS else m.state))
    releases.append(ReleaseInfo(version=new, state="live", deployed_at=now))
    deleting = choose_deletions(releases, new, previous, keep)
    by_version = {r.version: r for r in releases}
    spare = keep - (len(releases) - len(deleting))
    for v in sorted((v for v in deleting if by_version[v].state == "failed"),
                    key=lambda v: by_version[v].started_at or 0, reverse=True):
        if spare <= 0:
            break
        deleting.remove(v)
        spare -= 1
    return deleting
