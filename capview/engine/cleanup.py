"""The deploy's cleanup phase: prune beyond keep_releases with prune.py's rules.

One difference: failed releases are kept while there is room under keep_releases.

It reuses what the setup phase already read (release.json of every release),
so cleanup is one round trip: the prune script plus the unlock.
"""

from __future__ import annotations

from capview.config import HostConfig
from capview.engine.frames import Frames
from capview.engine.model import ReleaseInfo
from capview.engine.prune import choose_deletions, prune_script
from capview.engine.releases_meta import ReleaseMeta, referenced_releases
from capview.engine.script import q
from capview.engine.status import IN_PROGRESS


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def as_release_info(meta: ReleaseMeta, *, state: str | None = None) -> ReleaseInfo:
    raw = meta.raw or {}
    # We hold the lock, so no other deploy is in progress: a release still marked
    # uploading/building/ready was left by a crashed run and is incomplete.
    derived = "incomplete" if meta.state in ("uploading", "building", "ready") else meta.state
    return ReleaseInfo(
        version=meta.version,
        state=state or derived,
        pinned=meta.pinned,
        started_at=_num(raw.get("started_at")),
        deployed_at=_num(raw.get("deployed_at")),
        references=referenced_releases(raw),  # issue 13: prune keeps what retained releases name
    )


def cleanup_script(host: HostConfig, listing: list[ReleaseMeta], new: str, previous: str | None,
                   *, record: dict, frames: Frames) -> tuple[str, list[str]]:
    """(script, versions it deletes) for after ``new`` went live with ``previous`` before it."""
    releases = []
    for m in listing:
        if m.version == previous:
            releases.append(as_release_info(m, state="superseded"))
        elif m.version != new:
            # We hold the lock, so no deploy is filling any other release: one still
            # "uploading"/"building"/"ready" was abandoned (a killed or cut-off deploy).
            releases.append(as_release_info(m, state="incomplete" if m.state in IN_PROGRESS else None))
    releases.append(ReleaseInfo(version=new, state="live", deployed_at=record.get("at")))
    keep = host.settings.keep_releases
    deleting = choose_deletions(releases, new, previous, keep)
    # After a deploy, failed releases stay for inspection (health.log, the inspector)
    # while the host has room under keep_releases; `capview prune` removes them.
    # Incomplete ones (never whole: cut off mid-upload) have nothing to inspect and go.
    by_version = {r.version: r for r in releases}
    spare = keep - (len(releases) - len(deleting))
    for v in sorted((v for v in deleting if by_version[v].state == "failed"),
                    key=lambda v: by_version[v].started_at or 0, reverse=True):
        if spare <= 0:
            break
        deleting.remove(v)
        spare -= 1
    b = host.settings.build
    images = [b.image] if b and b.image else None
    return prune_script(host.settings.deploy_path, deleting, images, record=record, frames=frames), deleting


def finish_trash_script(dp: str) -> str:
    """Finish the deletes of an interrupted prune (``releases/.trash-*``), when the
    cleanup has nothing else to delete (prune_script does this itself)."""
    return (f"for t in {q(dp)}/releases/.trash-*; do\n"
            '  if [ -e "$t" ] || [ -L "$t" ]; then rm -rf -- "$t" || true; fi\n'
            "done\n")
