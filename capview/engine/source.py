"""The local side of a deploy's start: the source tree scanned once (shared by every
host), and, at the same time, the hosts' connections opened (issue 21: the scan is CPU,
the connect is round trips; neither waits for the other).

A scan that fails wins over everything: its one line is the deploy's error, the
connects still under way are dropped, and no script reaches any host."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from capview.config import Settings
from capview.engine.hostrun import PhaseFailed
from capview.engine.layout import META, default_version, git_commit, git_dirty
from capview.engine.manifest import Scan, safe_relpath, scan_tree
from capview.errors import UsageError


@dataclass(frozen=True)
class Source:
    """The local tree, scanned once per deploy and shared by every host."""

    root: Path
    scan: Scan
    commit: str | None
    dirty: bool | None = None  # uncommitted changes in the git tree (recorded as "dirty")


def check_shared_paths(settings: Settings) -> tuple[str, ...]:
    """The shared paths, each relative and inside the release; deploy.yaml checks these too,
    but Settings may come from code."""
    reserved = tuple(settings.shared.dirs) + tuple(settings.shared.files)
    for path in reserved:
        if not safe_relpath(path) or path.split("/")[0] == META:
            raise UsageError(f"shared path {path!r} must be relative and stay inside shared/ (not .capview)")
    return reserved


def scan_source(settings: Settings, root: Path | None = None) -> Source:
    root = (root or settings.source).resolve()
    if not root.is_dir():
        raise PhaseFailed(f"source {root} is not a directory - set 'source' in deploy.yaml or build it first", code=2)
    reserved = check_shared_paths(settings)
    try:
        scan = scan_tree(root, tuple(settings.exclude), reserved, tuple(settings.upload.writable),  # issue 13: read-only files
                         cache=True)  # issue 21: unchanged files are not hashed again
    except OSError as exc:  # an unreadable file or directory: one line naming it, nothing sent
        raise UsageError(f"cannot read {exc.filename or root}: {exc.strerror or exc} - "
                         "fix its permissions or leave it out with 'exclude' in deploy.yaml") from None
    if not scan.entries:
        raise PhaseFailed(f"source {root} has nothing to upload after 'exclude' - check the exclude patterns", code=2)
    scan.shareable_lines, scan.files, scan.bytes  # noqa: B018 -- computed here, in the scan's thread (issue 21)
    commit = git_commit(root)
    return Source(root, scan, commit, git_dirty(root) if commit else None)


def connect_early(transport, hosts) -> dict[str, asyncio.Task]:
    """Start each host's connect (a transport with ``prepare``: SSH) without waiting for it;
    its error, if any, is the lock phase's (HostDeploy.lock_phase awaits the task)."""
    prepare = getattr(transport, "prepare", None)
    if prepare is None:
        return {}
    tasks = {h.name: asyncio.ensure_future(prepare(h)) for h in hosts}
    for task in tasks.values():  # retrieved even when nobody awaits it (a scan failed)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return tasks


async def scan_and_connect(transport, settings: Settings, hosts, version: str | None, source: Path | None,
                now: float) -> tuple[str, Source, dict[str, asyncio.Task]]:
    """(version, the scanned source, each host's connect task) for a deploy."""
    check_shared_paths(settings)  # a refusal the settings alone decide opens no connection
    warm = connect_early(transport, hosts)
    try:
        version = version or await asyncio.to_thread(default_version, source or settings.source, now)
        return version, await asyncio.to_thread(scan_source, settings, source), warm
    except BaseException:
        for task in warm.values():
            task.cancel()
        raise
