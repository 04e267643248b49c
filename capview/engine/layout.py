"""The host layout contract (DESIGN.md): names, paths, and validation.

Everything that becomes part of a remote path is validated here before any
script is built; scripts then still quote every value with ``shlex.quote``.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from capview.errors import UsageError

VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def validate_version(version: str) -> str:
    """Return the version or raise a one-line UsageError saying what is allowed."""
    if version in (".", "..") or not VERSION_RE.fullmatch(version):
        shown = version if len(version) <= 40 else version[:40] + "..."
        raise UsageError(
            f"invalid release name {shown!r}: use 1-64 of A-Z a-z 0-9 . _ + - starting with a letter or digit"
        )
    return version


def is_version(name: str) -> bool:
    return name not in (".", "..") and VERSION_RE.fullmatch(name) is not None


def default_version(source: Path, now: float | None = None) -> str:
    """UTC timestamp, plus the short git commit when the source is a git tree, plus
    ``-dirty`` when that tree has uncommitted changes (the commit alone would misdescribe it)."""
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now if now is not None else time.time()))
    commit = git_commit(source)
    if not commit:
        return stamp
    return f"{stamp}-{commit}" + ("-dirty" if git_dirty(source) else "")


def git_dirty(source: Path) -> bool | None:
    """True when the git work tree holding ``source`` has uncommitted changes (tracked or
    untracked, not ignored); None when it is not a git tree."""
    try:
        out = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=normal"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def git_commit(source: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{4,40}", commit) else None


# The host layout contract (README "The host layout"), by name. Scripts that ``cd`` into
# deploy_path use the relative forms (``HostPaths("")``); nothing else in the engine
# spells a ``.capview`` path (tests/test_structure.py checks it).
META = ".capview"
# Top-level names that belong to the releases layout; anything else is "stray".
LAYOUT_NAMES = frozenset({"releases", "shared", META, "current", "traefik"})
# Inside a release (relative to it).
RELEASE_META = META
RELEASE_JSON = f"{META}/release.json"
MANIFEST = f"{META}/manifest.tsv"
BUILD_LOG = f"{META}/build.log"
HEALTH_LOG = f"{META}/health.log"
HOOKS_LOG = f"{META}/hooks.log"
DATA_SNAPSHOT = f"{META}/data-snapshot.json"  # issue 18: meta.json of the snapshot of this release's data
PINNED = f"{META}/pinned"
# the release as built, recorded right after the build (engine/build_check.py); verify reads them
BUILT_LIST = f"{META}/built.list"
BUILT_SHA = f"{META}/built.sha"
INCOMING = f"{META}/incoming"
SHARED_NUL = f"{META}/shared.nul"  # issue 13: the paths hard-linked from the previous release
SHARED_STATS = f"{META}/shared.stat"  # ... and their stat lines, for the check after the build
TRASH_PREFIX = ".trash-"  # releases/.trash-<v>: a release being deleted
CURRENT_TMP = "current.tmp."  # current.tmp.<pid>: the link before its rename over current


def _top(rel: str) -> property:
    return property(lambda self: self._at(rel), doc=f"<deploy_path>/{rel}")


def _inside(rel: str):
    def path(self, version: str) -> str:
        return f"{self.release(version)}/{rel}"
    path.__doc__ = f"releases/<version>/{rel}"
    return path


@dataclass(frozen=True)
class HostPaths:
    """Every path of the layout on one host, from deploy_path ("" gives the relative forms)."""

    root: str

    def _at(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    releases = _top("releases")
    current = _top("current")
    shared = _top("shared")
    snapshots = _top("shared/.snapshots")  # consistent SQLite copies (issue 18)
    meta = _top(META)
    lock = _top(f"{META}/lock")
    owner_json = _top(f"{META}/lock/owner.json")
    history = _top(f"{META}/history.jsonl")
    usage_cache = _top(f"{META}/usage.cache")
    switch_pid = _top(f"{META}/switch.pid")  # the running switch transaction
    legacy_junk = _top(f"{META}/legacy-junk")  # *.bak a migration set aside
    migrate_health_log = _top(f"{META}/migrate-health.log")  # a failed migration's health.log (issue 16)
    ops = _top(f"{META}/ops")  # switch transactions' files, one dir per lock token

    def op_dir(self, token: str) -> str:
        """One switch transaction's files (txn.sh, in, out, pid, result), by lock token."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", token):
            raise ValueError(f"bad lock token {token!r}")
        return f"{self.ops}/{token}"

    def release(self, version: str) -> str:
        return f"{self.releases}/{validate_version(version)}"

    release_meta = _inside(RELEASE_META)
    release_json = _inside(RELEASE_JSON)
    manifest = _inside(MANIFEST)
    build_log = _inside(BUILD_LOG)
    health_log = _inside(HEALTH_LOG)
    hooks_log = _inside(HOOKS_LOG)  # issue 18
    data_snapshot = _inside(DATA_SNAPSHOT)  # issue 18
    pinned = _inside(PINNED)
    built_list = _inside(BUILT_LIST)
    built_sha = _inside(BUILT_SHA)
    incoming = _inside(INCOMING)

    def trash(self, version: str) -> str:
        return f"{self.releases}/{TRASH_PREFIX}{validate_version(version)}"


def current_version(target: str, root: str) -> str | None:
    """What a ``readlink current`` names: ``releases/<v>`` relative (also ``./releases/<v>``),
    or absolute under deploy_path (Capistrano style), with or without a trailing slash
    -> ``<v>``; anything else -> None."""
    t = target.rstrip("/")
    for prefix in ("releases/", "./releases/", root.rstrip("/") + "/releases/"):
        if t.startswith(prefix) and is_version(t[len(prefix):]):
            return t[len(prefix):]
    return None
