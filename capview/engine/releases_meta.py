"""A light read of a host's releases for the deploy itself (setup phase).

The setup script prints, framed with a per-call nonce (remote content is
untrusted): where ``current`` points, the current release's manifest, every
release's release.json and pin marker, and the tail of history.jsonl. The
dashboard's fuller listing (sizes, unique bytes) lives in status.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from capview.engine.frames import Frames
from capview.engine.layout import HostPaths, is_version
from capview.engine.script import q

META_BYTES = 1024 * 1024  # as status.py: what is read of a release.json (cut: unreadable)
HISTORY_LINE_BYTES = 16 * 1024


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


def release_listing_script(paths: HostPaths, *, manifest_of_current: bool, frames: Frames | None = None) -> str:
    f = frames or _FRAMES_DEFAULT
    lines = [
        f.prelude(),
        f"cd {q(paths.root)}",
        "cur=$(readlink current 2>/dev/null || true)",
        'sec current; printf "%s" "$cur"',
    ]
    if manifest_of_current:
        lines.append('sec manifest; case "$cur" in releases/*) cat "$cur/.capview/manifest.tsv" 2>/dev/null || true;; esac')
    lines += [
        "for d in releases/*; do",
        '  [ -d "$d" ] && [ ! -L "$d" ] || continue',
        '  n=${d#releases/}',
        # Only names that are valid versions are framed (no newline can reach the marker line).
        '  case "$n" in *[!A-Za-z0-9._+-]*) continue;; esac',
        f'  sec release "$n"; head -c {META_BYTES} "$d/.capview/release.json" 2>/dev/null || true',
        '  if [ -e "$d/.capview/pinned" ]; then sec pinned "$n"; fi',
        "done",
        f"sec history; tail -n 500 .capview/history.jsonl 2>/dev/null | cut -b 1-{HISTORY_LINE_BYTES} || true",
        "sec end",
    ]
    return "\n".join(lines) + "\n"


def referenced_releases(raw: dict | None) -> tuple[str, ...]:
    """release.json "references" ([{"release": v, "path": p}], written after the build):
    the other releases this one names by absolute path. Untrusted: only valid names."""
    refs = raw.get("references") if isinstance(raw, dict) else None
    if not isinstance(refs, list):
        return ()
    names = (r.get("release") for r in refs if isinstance(r, dict))
    return tuple(sorted({n for n in names if isinstance(n, str) and is_version(n)}))


# One fixed nonce per process is enough here: the listing's sections carry only
# validated names, and file bodies cannot contain a line starting with a random
# 16-hex nonce they never saw.
_FRAMES_DEFAULT = Frames.new()


def parse_release_listing(stdout: str, frames: Frames | None = None) -> ReleaseListing:
    f = frames or _FRAMES_DEFAULT
    current, manifest, history = None, "", ""
    metas: dict[str, dict | None] = {}
    pinned: set[str] = set()
    for kind, arg, body in f.parse(stdout):
        if kind == "current":
            target = body.strip()
            if target.startswith("releases/") and is_version(target[len("releases/"):]):
                current = target[len("releases/"):]
        elif kind == "manifest":
            manifest = body
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
    releases = tuple(ReleaseMeta(v, raw, v in pinned) for v, raw in sorted(metas.items()))
    return ReleaseListing(current, manifest, releases, history)
