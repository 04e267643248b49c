"""The lock's scripts: ``mkdir <deploy_path>/.capview/lock`` is atomic; owner.json inside
names the holder. Only the holder (its random token in owner.json) removes it."""

from __future__ import annotations

from capview.engine.layout import HostPaths
from capview.engine.scripts.shell import Frames, q, write_json

LOCKED = 3  # exit status of acquire when someone else holds the lock


def acquire(paths: HostPaths, owner: dict, frames: Frames) -> str:
    """Take the lock (frame ``locked``), or print the holder's owner.json (section
    ``owner``) and exit 3. Needs the frames prelude."""
    return (
        f"mkdir -p {q(paths.meta)}\n"
        f"if mkdir {q(paths.lock)} 2>/dev/null; then\n"
        f"  {write_json(paths.owner_json, owner)}"
        "  mark locked\n"
        "else\n"
        "  sec owner\n"
        f"  cat {q(paths.owner_json)} 2>/dev/null || true\n"
        f"  exit {LOCKED}\n"
        "fi\n"
    )


def if_mine(paths: HostPaths, token: str, body: str) -> str:
    return f"if grep -q {q(token)} {q(paths.owner_json)} 2>/dev/null; then\n{body}fi\n"


def heartbeat(paths: HostPaths, token: str, owner: dict) -> str:
    return if_mine(paths, token, write_json(paths.owner_json, owner))


def release(paths: HostPaths, token: str) -> str:
    """Remove the lock if it is ours: safe to send when we do not know whether we hold it."""
    return if_mine(paths, token, f"rm -rf {q(paths.lock)}\n")


def read_owner(paths: HostPaths, frames: Frames) -> str:
    return frames.prelude() + (
        f"if [ -d {q(paths.lock)} ]; then sec owner; cat {q(paths.owner_json)} 2>/dev/null || true; fi\nsec end\n"
    )


def remove_if_unchanged(paths: HostPaths, seen: str, frames: Frames, record_line: str) -> str:
    """Remove the lock only if owner.json is still ``seen`` (``capview unlock``); then
    append ``record_line`` (sh appending the history record)."""
    return frames.prelude() + (
        f"if [ ! -d {q(paths.lock)} ]; then sec gone; exit 0; fi\n"
        # $(...) drops trailing newlines; ``seen`` is compared the same way
        f'if [ "$(cat {q(paths.owner_json)} 2>/dev/null || true)" != {q(seen)} ]; then sec changed; exit 0; fi\n'
        f"rm -rf {q(paths.lock)}\n"
        + record_line
        + "sec removed\n"
    )
