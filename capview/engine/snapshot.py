"""Reading one host: the status script's output parsed into a HostStatus (plus what
prune and migrate need). Everything is parsed defensively: release names that are not
valid versions are counted as junk, never interpolated or trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from capview.config import HostConfig
from capview.engine.context import Context
from capview.engine.history import live_stack, parse_history, previous_live, shown_record
from capview.engine.layout import CURRENT_TMP, LAYOUT_NAMES, current_version, is_version
from capview.engine.lock import owner_from_json
from capview.engine.model import IN_PROGRESS, HostStatus, LockInfo, ReleaseInfo
from capview.engine.releases_meta import referenced_releases
from capview.engine.retention import release_order
from capview.engine.scripts.service import service_state
from capview.engine.scripts.shell import Frames, one_line
from capview.engine.scripts.status import META_BYTES, status_script
from capview.engine.service_state import parse_service
from capview.engine.usage import (InodeListing, Summary, parse_cache, parse_inode_listing, parse_inode_listings,
                                  parse_sums, unique_bytes)
from capview.errors import RemoteError

RECENT_RECORDS = 50  # history records a HostStatus carries (the status script reads the last 500)


@dataclass(frozen=True)
class Snapshot:
    """A host's status plus the raw data prune and migrate need."""

    status: HostStatus
    listings: dict[str, InodeListing] = field(default_factory=dict)
    history: tuple[dict, ...] = ()
    stray: tuple[str, ...] = ()  # top-level names outside the layout (legacy app files)
    trash: int = 0  # leftover releases/.trash-* entries
    junk: int = 0  # entries in releases/ that are not valid release names
    symlinks: dict[str, str] = field(default_factory=dict)  # release entries that are symlinks -> target


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def derive_state(meta: dict | None, version: str, current: str | None, lock: LockInfo | None) -> str:
    """State rules: live only for current; previously live -> superseded; an
    unfinished release with no lock held for it -> incomplete."""
    if version == current:
        return "live"
    state = _str(meta.get("state")) if meta else None
    if state is None:
        return "incomplete"
    if state == "live":
        return "superseded"
    if state in IN_PROGRESS:
        held = lock is not None and lock.version in (None, version)
        return state if held else "incomplete"
    if state in ("superseded", "failed"):
        return state
    return "incomplete"


def _release_info(version: str, meta: dict | None, pinned: bool, lst: InodeListing | Summary, current: str | None,
                  lock: LockInfo | None) -> ReleaseInfo:
    m = meta or {}
    if isinstance(lst, Summary):
        disk, apparent = lst.unique_disk, lst.unique_apparent
    else:
        disk, apparent = unique_bytes(lst)
    return ReleaseInfo(
        version=version,
        state=derive_state(meta, version, current, lock),
        current=version == current,
        pinned=pinned,
        started_at=_num(m.get("started_at")),
        deployed_at=_num(m.get("deployed_at")),
        size_bytes=lst.size_bytes,
        unique_bytes=apparent,
        unique_disk_bytes=disk,
        files=lst.files,
        operator=_str(m.get("operator")),
        commit=_str(m.get("commit")),
        image=_str(m.get("image")),
        health=_str(m.get("health")),
        downtime=_num(m.get("downtime")),
        unavailable=_num(m.get("unavailable")),
        error=_str(m.get("error")) if meta is not None else "release.json missing or unreadable",
        references=referenced_releases(m),  # issue 13
    )


def _layout(has_releases: bool, stray: list[str]) -> str:
    if has_releases:
        return "mixed" if stray else "releases"
    return "legacy" if stray else "empty"


def parse_status(host: HostConfig, stdout: str, frames: Frames, env: str = "") -> Snapshot:
    dp = host.settings.deploy_path
    parts = frames.parse(stdout)
    if not any(kind == "end" for kind, _, _ in parts):
        raise ValueError("status output was cut short")
    metas: dict[str, dict | None] = {}
    pinned: set[str] = set()
    oversized: set[str] = set()  # release.json over META_BYTES: not parsed
    listings: dict[str, InodeListing] = {}
    summaries: dict[str, Summary] = {}
    symlinks: dict[str, str] = {}
    top: list[tuple[str, str]] = []
    current_raw: str | None = None
    lock: LockInfo | None = None
    records: list[dict] = []
    free = None
    trash = junk = 0
    releases_dir = False
    partial = False  # some releases' sums are still being taken on the host
    service_body: str | None = None
    for kind, arg, body in parts:
        if kind == "service":  # issue 16: what the service manager says
            service_body = body
        elif kind == "releasesdir":
            releases_dir = True
        elif kind == "top":
            for item in body.split("\0"):
                if len(item) > 2 and item[1] == " ":
                    top.append((item[0], item[2:]))
        elif kind == "current":
            current_raw = _chomp(body) or None
        elif kind == "lock":
            lock = owner_from_json(body) or LockInfo("?", 0, "?", None, 0.0, 0.0)
        elif kind == "history":
            records = parse_history(body)
        elif kind == "df":
            cols = body.split()
            free = int(cols[3]) * 1024 if len(cols) >= 4 and cols[3].isdigit() else None
        elif kind in ("trash", "junk"):
            n = int(body.strip()) if body.strip().isdigit() else 0
            trash, junk = (n, junk) if kind == "trash" else (trash, n)
        elif kind == "usage":  # the host's valid cache: sums for every release at once
            summaries.update(parse_cache(body, is_version))
        elif kind == "sums":
            summaries.update(parse_sums(body, is_version))
        elif kind == "sumspart":  # a cold listing's bounded wait (scripts/usage.py cold_sums): whole lines only
            partial = True
            summaries.update(parse_sums(body if body.endswith("\n") else body.rpartition("\n")[0], is_version))
        elif kind == "finds":  # the batched per-inode detail of every release (issue 21)
            listings.update(parse_inode_listings(body, is_version))
        elif not is_version(arg):
            continue  # never trust a name we did not validate ourselves
        elif kind == "rel":
            metas.setdefault(arg, None)
        elif kind == "pinned":
            pinned.add(arg)
        elif kind == "json":
            try:
                meta = json.loads(body) if len(body) <= META_BYTES else None
            except ValueError:
                meta = None
            metas[arg] = meta if isinstance(meta, dict) else None
            if len(body) > META_BYTES:
                oversized.add(arg)
        elif kind == "find":
            listings[arg] = parse_inode_listing(body)
        elif kind == "link":
            symlinks[arg] = _chomp(body)
    current = current_version(current_raw, dp) if current_raw else None
    stray = sorted(name for t, name in top
                   if name not in LAYOUT_NAMES and not name.startswith(CURRENT_TMP))
    if any(name == "current" and t != "l" for t, name in top):
        stray.append("current")  # a real directory called current: not our link
    releases = [
        _release_info(v, metas[v], v in pinned, summaries.get(v) or listings.get(v, InodeListing()), current, lock)
        for v in metas
    ]
    if partial:  # the rest are summed on the host after this listing: said, never shown as 0 bytes
        releases = [r if r.version in summaries else replace(r, usage_pending=True) for r in releases]
    if oversized:  # replace() costs: only for the few that need it (10,000 releases)
        releases = [replace(r, error=f"release.json is over {META_BYTES // 1024} KiB: not read")
                    if r.version in oversized else r for r in releases]
    releases += [
        ReleaseInfo(version=v, state="incomplete", current=v == current,
                    error=f"release entry is a symlink to {target!r} (not followed)", symlink=target)
        for v, target in symlinks.items()
    ]
    existing = {r.version for r in releases if r.state in ("live", "superseded") and r.symlink is None}
    if live_stack(records):
        previous = previous_live(records, current, existing)
    else:  # no usable history (e.g. it was lost): the last superseded one
        previous = _latest_other(releases, current)
    releases = sorted((replace(r, previous=True) if r.version == previous else r for r in releases), key=release_order)
    status = HostStatus(
        host=host.name, env=host.env or env, reachable=True,
        layout=_layout(releases_dir, stray),  # releases/ may be a symlink to another volume
        current=current, previous=previous, lock=lock, releases=tuple(releases), free_bytes=free,
        service=parse_service(host.settings, service_body),
        recent=tuple([r for r in records if shown_record(r)][-RECENT_RECORDS:]),
    )
    return Snapshot(status, listings, tuple(records), tuple(stray), trash, junk, symlinks)


def _latest_other(releases: list[ReleaseInfo], current: str | None) -> str | None:
    """No usable history: the most recently deployed superseded release."""
    cands = [r for r in releases if r.state == "superseded" and r.version != current]
    return max(cands, key=release_order).version if cands else None


async def snapshot(ctx: Context, host: HostConfig, env: str = "", *, detail: bool = True) -> Snapshot:
    """Read one host (one round trip). Raises on unreachable host or bad output.

    detail=False: sizes are summed on the host (Snapshot.listings stays empty)."""
    frames = Frames.new()
    res = await ctx.transport.run(host, status_script(host.settings.deploy_path, frames, detail=detail,
                                                      service=service_state(host.settings)))
    if not res.ok:
        raise RemoteError(one_line(res.stderr or f"status script exited {res.exit_status}"),
                          exit_status=res.exit_status, stderr=res.stderr)
    try:
        return parse_status(host, res.stdout, frames, env)
    except ValueError as exc:
        raise RemoteError(f"{host.name}: unreadable status output ({exc})") from exc
