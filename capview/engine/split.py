"""issue 17: is an environment split (its hosts on different versions)? Read from the
status of every host (``capview releases``, the dashboard) or from check's ``current``."""

from __future__ import annotations

from dataclasses import dataclass

from capview.engine.model import HostStatus

USABLE = ("live", "superseded", "ready")  # states a rollback --to can switch to


@dataclass(frozen=True)
class Split:
    """Which version each host of an environment runs (None: nothing live; hosts that
    did not answer are left out), and the version every host could converge to."""

    env: str
    versions: dict[str, str | None]
    unreachable: tuple[str, ...] = ()
    converge_to: str | None = None  # a live version retained and usable on every host
    listed: bool = True  # the releases of every host were read (False: check, currents only)

    @property
    def split(self) -> bool:
        return len(set(self.versions.values())) > 1

    def line(self) -> str:
        """``prod is split: prod-1 v14, prod-2 v10 - converge with: capview rollback prod --to v14``"""
        parts = ", ".join(f"{h} {v or 'nothing live'}" for h, v in self.versions.items())
        if not self.listed:
            fix = f"capview rollback {self.env} --to VERSION (capview releases {self.env} names one)"
        elif self.converge_to:
            fix = f"capview rollback {self.env} --to {self.converge_to}"
        else:
            fix = f"capview release {self.env} VERSION (no live version is retained on every host)"
        return f"{self.env} is split: {parts} - converge with: {fix}"


def env_split(env: str, hosts: list[HostStatus]) -> Split:
    versions = {h.host: h.current for h in hosts if h.reachable}
    usable = [{r.version for r in h.releases if r.state in USABLE and not r.symlink} for h in hosts if h.reachable]
    live = [v for v in dict.fromkeys(versions.values()) if v]
    # prefer the newest live version (by when it went live on any host) that every host keeps
    when = {r.version: r.deployed_at or r.started_at or 0.0 for h in hosts for r in h.releases}
    candidates = sorted((v for v in live if all(v in u for u in usable)), key=lambda v: when.get(v, 0.0), reverse=True)
    return Split(env, versions, tuple(h.host for h in hosts if not h.reachable), candidates[0] if candidates else None)
