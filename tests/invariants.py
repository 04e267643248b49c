"""Invariants over a host's release states, read straight from the files (independently of
capview's own code), for every test that strikes at a bad moment (issue 15):

* a release is never recorded ``failed`` while ``current`` points at it;
* a release is never recorded ``live`` while ``current`` does not point at it;
* ``current`` is a symlink into ``releases/`` naming a release directory.

    from invariants import assert_states_consistent
    assert_states_consistent(app.deploy_path)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def current_release(dp: str | Path) -> str | None:
    """The release ``current`` names: ``releases/<v>`` relative, or absolute under dp, with
    or without a trailing slash; None when there is no current or it names something else."""
    dp = Path(dp)
    try:
        target = os.readlink(dp / "current").rstrip("/")
    except OSError:
        return None
    for prefix in ("releases/", "./releases/", str(dp).rstrip("/") + "/releases/"):
        if target.startswith(prefix) and NAME.match(target[len(prefix):]):
            return target[len(prefix):]
    return None


def release_states(dp: str | Path) -> dict[str, str | None]:
    """version -> the ``state`` in its release.json (None when missing or unreadable)."""
    out: dict[str, str | None] = {}
    rels = Path(dp) / "releases"
    if not rels.is_dir():
        return out
    for r in rels.iterdir():
        if r.is_symlink() or not r.is_dir() or not NAME.match(r.name):
            continue
        try:
            state = json.loads((r / ".capview" / "release.json").read_text()).get("state")
        except (OSError, ValueError, AttributeError):
            state = None
        out[r.name] = state if isinstance(state, str) else None
    return out


def state_violations(dp: str | Path, *, require_current: bool = True) -> list[str]:
    dp = Path(dp)
    cur = current_release(dp)
    states = release_states(dp)
    bad = []
    if cur is None:
        if require_current:
            bad.append(f"current does not name a release ({_link(dp)})")
    elif cur not in states:
        bad.append(f"current names releases/{cur}, which is not a release directory")
    elif states[cur] == "failed":
        bad.append(f"{cur} is recorded failed while current points at it")
    for v, state in sorted(states.items()):
        if state == "live" and v != cur:
            bad.append(f"{v} is recorded live while current is {cur}")
    return bad


def assert_states_consistent(dp: str | Path, *, require_current: bool = True) -> None:
    bad = state_violations(dp, require_current=require_current)
    assert not bad, f"{dp}: " + "; ".join(bad)


def _link(dp: Path) -> str:
    try:
        return f"-> {os.readlink(dp / 'current')!r}"
    except OSError:
        return "missing"
