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


@dataclass(frozen=True)
class HostPaths:
    """Absolute paths on one host, derived from deploy_path."""

    root: str

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"

    @property
    def meta(self) -> str:
        return f"{self.root}/.capview"

    @property
    def lock(self) -> str:
        return f"{self.root}/.capview/lock"

    @property
    def history(self) -> str:
        return f"{self.root}/.capview/history.jsonl"

    def release(self, version: str) -> str:
        return f"{self.releases}/{validate_version(version)}"

    def release_meta(self, version: str) -> str:
        return f"{self.release(version)}/.capview"
