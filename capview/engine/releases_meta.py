"""A light read of a host's releases for the deploy and the rollback themselves.

The listing script (scripts/release.py) prints, framed with a per-call nonce (remote
content is untrusted): where ``current`` points, the current release's manifest,
every release's release.json and pin marker, and the tail of history.jsonl. The
dashboard's fuller listing (sizes, unique bytes) is snapshot.py's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from capview.engine.layout import current_version, is_version
from capview.engine.scripts.shell import Frames


@dataclass(frozen=True)
class ReleaseMeta:
    version: str
    raw: dict | None  # release.json, None when missing or unreadable
    pinned: bool = False

    @property
    def state(self) -> str:
        return str(self.raw.get("state", "incomplete")) if self.raw else "incomplete"


@dataclass(frozen=True)
class ReleaseListing:
    current: str | None
    current_manifest: str
    releases: tuple[ReleaseMeta, ...]
    history: str
    current_link: str = ""  # the link's text as found (absolute, trailing slash...)
    current_manifest_sha: str = ""  # instead of its text: the sha256 of a manifest the client holds

    def meta(self, version: str | None) -> ReleaseMeta | None:
        return next((m for m in self.releases if m.version == version), None)


def referenced_releases(raw: dict | None) -> tuple[str, ...]:
    """release.json "references" ([{"release": v, "path": p}], written after the build):
    the other releases this one names by absolute path. Untrusted: only valid names."""
    refs = raw.get("references") if isinstance(raw, dict) else None
    if not isinstance(refs, list):
        return ()
    names = (r.get("release") for r in refs if isinstance(r, dict))
    return tuple(sorted({n for n in names if isinstance(n, str) and is_version(n)}))


def parse_release_listing(stdout: str, frames: Frames, root: str) -> ReleaseListing:
    current, link, manifest, history, manifest_sha = None, "", "", "", ""
    metas: dict[str, dict | None] = {}
    pinned: set[str] = set()
    for kind, arg, body in frames.parse(stdout):
        if kind == "current":
            link = body.strip()
            current = current_version(link, root)
        elif kind == "manifest":
            manifest = body
        elif kind == "manifest_sha" and re.fullmatch(r"[0-9a-f]{64}", arg):
            manifest_sha = arg
        elif kind == "release" and is_version(arg):
            try:
                raw = json.loads(body)
                metas[arg] = raw if isinstance(raw, dict) else None
            except ValueError:
                metas[arg] = None
        elif kind == "pinned" and is_version(arg):
            pinned.add(arg)
        elif kind == "history":
            history = body
    if current is not None and current not in metas:
        current = None  # names no release directory (a symlinked or missing entry)
    releases = tuple(ReleaseMeta(v, raw, v in pinned) for v, raw in sorted(metas.items()))
    return ReleaseListing(current, manifest, releases, history, link, manifest_sha)
