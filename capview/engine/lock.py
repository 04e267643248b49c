"""The per-host deploy lock: ``mkdir <deploy_path>/.capview/lock`` is atomic.

owner.json inside names the holder; its heartbeat is refreshed during long
phases so ``capview unlock`` can tell a stale lock from a busy one. Only the
holder (matched by a random token) removes the lock.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import dataclass

import humanize

from capview.engine.layout import HostPaths
from capview.engine.model import LockInfo
from capview.engine.script import MARK, q, sections, write_json


@dataclass(frozen=True)
class LockOwner:
    operator: str
    operation: str
    version: str | None
    started: float
    token: str
    pid: int
    machine: str

    @classmethod
    def new(cls, operator: str, operation: str, version: str | None, now: float) -> "LockOwner":
        return cls(operator, operation, version, now, secrets.token_hex(8), os.getpid(), socket.gethostname())

    def as_json(self, heartbeat: float) -> dict:
        return {
            "operator": self.operator, "operation": self.operation, "version": self.version,
            "started": self.started, "heartbeat": heartbeat, "token": self.token,
            "pid": self.pid, "machine": self.machine,
        }


def acquire_script(paths: HostPaths, owner: LockOwner, now: float) -> str:
    """Take the lock or print the holder's owner.json and exit 3."""
    return (
        f"mkdir -p {q(paths.meta)}\n"
        f"if mkdir {q(paths.lock)} 2>/dev/null; then\n"
        f"  {write_json(paths.lock + '/owner.json', owner.as_json(now))}"
        f"  printf '%s lock acquired\\n' {MARK}\n"
        "else\n"
        f"  printf '%s section owner -\\n' {MARK}\n"
        f"  cat {q(paths.lock + '/owner.json')} 2>/dev/null || true\n"
        "  exit 3\n"
        "fi\n"
    )


def _if_mine(paths: HostPaths, owner: LockOwner, body: str) -> str:
    return f"if grep -q {q(owner.token)} {q(paths.lock + '/owner.json')} 2>/dev/null; then\n{body}fi\n"


def heartbeat_script(paths: HostPaths, owner: LockOwner, now: float) -> str:
    return _if_mine(paths, owner, write_json(paths.lock + "/owner.json", owner.as_json(now)))


def release_script(paths: HostPaths, owner: LockOwner) -> str:
    return _if_mine(paths, owner, f"rm -rf {q(paths.lock)}\n")


def parse_owner(stdout: str) -> LockInfo | None:
    for kind, _, lines in sections(stdout):
        if kind == "owner":
            return owner_from_json("\n".join(lines))
    return None


def owner_from_json(text: str) -> LockInfo | None:
    try:
        d = json.loads(text)
        return LockInfo(
            operator=str(d.get("operator", "?")), pid=int(d.get("pid", 0)),
            operation=str(d.get("operation", "?")), version=d.get("version"),
            started=float(d.get("started", 0)), heartbeat=float(d.get("heartbeat", 0)),
            machine=str(d.get("machine", "")),
        )
    except (ValueError, TypeError, AttributeError):
        return None


def describe_holder(info: LockInfo | None, now: float) -> str:
    if info is None:
        return "locked (owner.json unreadable - a crashed run? see: capview unlock ENV --force)"
    what = info.operation + (f" {info.version}" if info.version else "")
    return (
        f"locked by {info.operator} (pid {info.pid}, {what}, started "
        f"{humanize.naturaldelta(max(0.0, now - info.started))} ago, heartbeat "
        f"{humanize.naturaldelta(max(0.0, now - info.heartbeat))} ago)"
    )


def stale_hint(info: LockInfo | None, env: str, host: str, prefix: str = "") -> str:
    """How to get past a held lock. When the holder ran on this machine and its process
    is gone (a killed capview), plain ``unlock`` would still wait for the heartbeat to
    age: name the exact command that works."""
    from capview.engine.unlock import pid_gone  # unlock.py imports this module

    env = env or "ENV"
    if info is not None and info.machine == socket.gethostname() and pid_gone(info.pid):
        return f"process {info.pid} is gone, the lock is stale: capview unlock {env} --host {host} --force"
    return f"{prefix}if it is stale: capview unlock {env} --host {host}"
