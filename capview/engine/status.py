"""What is on each host: one read-only script per host, all hosts at once.

The script prints, nonce-framed: the top-level names of deploy_path (NUL
separated), the ``current`` link, the lock's owner.json, the history tail, free
disk, and per release its release.json, pinned marker and a name-free inode
listing (see usage.py). Everything is parsed defensively: release names that
are not valid versions are counted as junk, never interpolated or trusted.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field, replace
from textwrap import indent
from typing import Awaitable, Callable, TypeVar

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.frames import Frames, one_line
from capview.engine.history import live_stack, parse_history, previous_live
from capview.engine.layout import HostPaths, is_version
from capview.engine.lock import owner_from_json
from capview.engine.model import HostStatus, LockInfo, ReleaseInfo
from capview.engine.script import q
from capview.engine.usage_cache import FINGERPRINT, cache_begin, cache_commit, cache_read, parse_cache
from capview.engine.releases_meta import referenced_releases
from capview.engine.usage import InodeListing, Summary, find_command, parse_inode_listing, parse_sums, sums_function, unique_bytes
from capview.errors import RemoteError

HISTORY_TAIL = 500
# What the listing reads from files a host (or someone on it) may have made huge.
META_BYTES = 1024 * 1024  # release.json (ours are ~1 KiB); one byte more is read to detect "too big"
OWNER_BYTES = 16 * 1024  # the lock's owner.json
HISTORY_LINE_BYTES = 16 * 1024  # a longer history line is cut, then skipped as unreadable
# Top-level names that belong to the releases layout; anything else is "stray".
LAYOUT_NAMES = frozenset({"releases", "shared", ".capview", "current", "traefik"})
IN_PROGRESS = ("uploading", "building", "ready")

T = TypeVar("T")


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


def status_script(dp: str, frames: Frames, *, detail: bool = True) -> str:
    """detail=False sums each release on the host (one line each): enough for listings;
    prune needs the per-inode detail to size deleting a set of releases."""
    if detail:
        sizes = 'sec find "$n"\n    ' + find_command('"$r"')
        cache_start = cache_end = ""
    else:  # one awk sums all releases, or the host's valid usage cache has them (usage_cache.py)
        sizes = 'set -- "$@" "$r"\n'
        cache_start = indent(sums_function() + f"fp0=$({FINGERPRINT})\n" + cache_read() + cache_begin() + "set --\n", "  ")
        cache_end = indent('if [ -z "$cached" ]; then sec sums; release_sums "$tmpc" "$@"; fi\n' + cache_commit(), "  ")
    return frames.prelude() + f"""export LC_ALL=C
dp={q(HostPaths(dp).root)}
if [ ! -d "$dp" ]; then sec nodp; sec end; exit 0; fi
cd "$dp"
sec top
find . -mindepth 1 -maxdepth 1 -printf '%y %P\\0' 2>/dev/null || true
sec current
if [ -L current ]; then readlink current || true; fi
if [ -d .capview/lock ]; then sec lock; head -c {OWNER_BYTES} .capview/lock/owner.json 2>/dev/null || true; fi
if [ -f .capview/history.jsonl ]; then sec history; tail -n {HISTORY_TAIL} .capview/history.jsonl 2>/dev/null | cut -b 1-{HISTORY_LINE_BYTES} || true; fi
sec df
df -Pk . 2>/dev/null | tail -n 1 || true
if [ -d releases ]; then
{cache_start}  t=0; j=0
  for r in releases/.trash-*; do if [ -e "$r" ] || [ -L "$r" ]; then t=$((t+1)); fi; done
  sec trash; printf '%s\\n' "$t"
  for r in releases/*; do
    [ -e "$r" ] || [ -L "$r" ] || continue
    n=${{r#releases/}}
    case $n in [A-Za-z0-9]*) ;; *) j=$((j+1)); continue ;; esac
    case $n in *[!A-Za-z0-9._+-]*) j=$((j+1)); continue ;; esac
    if [ -L "$r" ]; then sec link "$n"; readlink "$r" || true; continue; fi
    if [ ! -d "$r" ]; then j=$((j+1)); continue; fi
    sec rel "$n"
    if [ -e "$r/.capview/pinned" ]; then sec pinned "$n"; fi
    if [ -f "$r/.capview/release.json" ]; then sec json "$n"; head -c {META_BYTES + 1} "$r/.capview/release.json" 2>/dev/null || true; fi
    {sizes}  done
  sec junk; printf '%s\\n' "$j"
{cache_end}fi
sec end
"""


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def current_version(target: str, dp: str) -> str | None:
    """``releases/<v>`` (relative, or absolute under dp) -> ``<v>``; anything else -> None."""
    t = target.rstrip("/")
    for prefix in ("releases/", HostPaths(dp).releases + "/", "./releases/"):
        if t.startswith(prefix) and is_version(t[len(prefix):]):
            return t[len(prefix):]
    return None


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
        error=_str(m.get("error")) if meta is not None else "release.json missing or unreadable",
        references=referenced_releases(m),  # issue 13
    )


def _layout(has_releases: bool, stray: list[str]) -> str:
    if has_releases:
        return "mixed" if stray else "releases"
    return "legacy" if stray else "empty"


def release_order(r: ReleaseInfo) -> tuple:
    """Oldest first: by deploy time (fallback start time), then natural version order."""
    return (r.deployed_at or r.started_at or 0.0, natural_key(r.version))


def natural_key(v: str) -> tuple:
    """v10 after v9."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", v) if p)


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
    for kind, arg, body in parts:
        if kind == "top":
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
            summaries.update(parse_cache(body))
        elif kind == "sums":
            summaries.update(parse_sums(body, is_version))
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
                   if name not in LAYOUT_NAMES and not name.startswith("current.tmp."))
    if any(name == "current" and t != "l" for t, name in top):
        stray.append("current")  # a real directory called current: not our link
    releases = [
        _release_info(v, metas[v], v in pinned, summaries.get(v) or listings.get(v, InodeListing()), current, lock)
        for v in metas
    ]
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
    releases = sorted((replace(r, previous=r.version == previous) for r in releases), key=release_order)
    status = HostStatus(
        host=host.name, env=host.env or env, reachable=True,
        layout=_layout(any(name == "releases" and t == "d" for t, name in top), stray),
        current=current, previous=previous, lock=lock, releases=tuple(releases), free_bytes=free,
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
    res = await ctx.transport.run(host, status_script(host.settings.deploy_path, frames, detail=detail))
    if not res.ok:
        raise RemoteError(one_line(res.stderr or f"status script exited {res.exit_status}"),
                          exit_status=res.exit_status, stderr=res.stderr)
    try:
        return parse_status(host, res.stdout, frames, env)
    except ValueError as exc:
        raise RemoteError(f"{host.name}: unreadable status output ({exc})") from exc


def unreachable(host: HostConfig, exc: BaseException, env: str = "") -> HostStatus:
    return HostStatus(host=host.name, env=host.env or env, reachable=False,
                      error=one_line(str(exc) or type(exc).__name__))


async def host_status(ctx: Context, host: HostConfig, env: str = "") -> HostStatus:
    try:
        return (await snapshot(ctx, host, env, detail=False)).status
    except Exception as exc:  # one bad host never fails the others
        return unreachable(host, exc, env)


async def each_host(env: Environment, host: str | None, fn: Callable[[HostConfig], Awaitable[T]]) -> list[T]:
    """Run ``fn`` for the selected hosts concurrently, at most env.max_parallel at a time."""
    sem = asyncio.Semaphore(max(1, env.max_parallel))

    async def one(h: HostConfig) -> T:
        async with sem:
            return await fn(h)

    return list(await asyncio.gather(*(one(h) for h in env.select(host))))


async def status(ctx: Context, env: Environment, *, host: str | None = None) -> list[HostStatus]:
    """Per host, in config order: layout, current, previous, lock, releases with sizes."""
    return await each_host(env, host, lambda h: host_status(ctx, h, env.name))
