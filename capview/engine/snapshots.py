"""What the SQLite snapshot scripts print, read back (issue 18): ``meta.json`` ->
:class:`SnapshotMeta`, the ``@snap``/``@restored``/``@pruned`` marks, and what differs in
schema between two descriptions. The scripts themselves (take, describe, restore, prune)
are engine/scripts/snapshots.py's, re-exported here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from capview.engine.layout import is_version
from capview.engine.scripts.snapshots import (
    SNAPSHOTS, describe_live_script, describe_script, list_metas, prune_script, prune_with_releases_script,
    restore_script, snapshot_dir, take_script, validate_tag,
)

__all__ = [
    "SNAPSHOTS", "DbSnapshot", "SnapshotMeta", "describe_live_script", "describe_script", "list_metas", "parse_marks",
    "parse_meta", "prune_script", "prune_with_releases_script", "restore_script", "schema_changed", "snapshot_dir",
    "take_script", "validate_tag",
]


@dataclass(frozen=True)
class DbSnapshot:
    path: str
    bytes: int
    user_version: int | None
    schema_sha256: str
    integrity: str
    tables: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotMeta:
    tag: str
    taken_at: float | None
    serving: str | None  # the release that had written this data ("from")
    reason: str
    dbs: tuple[DbSnapshot, ...] = ()

    @property
    def ok(self) -> bool:
        return all(d.integrity == "ok" for d in self.dbs)


def parse_meta(text: str) -> SnapshotMeta | None:
    """meta.json (host text: untrusted) -> SnapshotMeta, or None if unreadable."""
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("dbs"), dict):
        return None
    dbs = []
    for path, d in doc["dbs"].items():
        if not isinstance(d, dict):
            continue
        tables = {}
        for row in d.get("tables") or []:
            if isinstance(row, dict) and isinstance(row.get("name"), str) and isinstance(row.get("rows"), int):
                tables[row["name"]] = row["rows"]
        uv = _first(d.get("user_version"), "user_version")
        integrity = _first(d.get("integrity"), "integrity_check")
        dbs.append(DbSnapshot(str(path), int(d.get("bytes") or 0), uv if isinstance(uv, int) else None,
                              str(d.get("schema_sha256") or ""), str(integrity) if integrity is not None else "?",
                              tables))
    serving = doc.get("from")
    taken = doc.get("taken_at")
    return SnapshotMeta(str(doc.get("tag") or ""), float(taken) if isinstance(taken, (int, float)) else None,
                        serving if isinstance(serving, str) and is_version(serving) else None,
                        str(doc.get("reason") or ""), tuple(dbs))


def _first(rows: object, key: str) -> object:
    """The first row's ``key`` of a sqlite3 -json result (a list of objects)."""
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        return rows[0].get(key)
    return None


def parse_marks(stdout: str, mark: str) -> list[tuple[str, ...]]:
    """``@snap DB BYTES`` / ``@restored DB`` / ``@pruned TAG`` lines -> their fields."""
    out = []
    for line in stdout.splitlines():
        if line.startswith(f"@{mark} "):
            out.append(tuple(line[len(mark) + 2:].split(" ")))
    return out


def schema_changed(a: SnapshotMeta, b: SnapshotMeta) -> list[str]:
    """What differs in schema between two descriptions of the same databases (for the warning)."""
    other = {d.path: d for d in b.dbs}
    notes = []
    for d in a.dbs:
        o = other.get(d.path)
        if o is None:
            continue
        if d.user_version != o.user_version:
            notes.append(f"{d.path}: user_version {d.user_version} -> {o.user_version}")
        elif d.schema_sha256 != o.schema_sha256:
            notes.append(f"{d.path}: schema differs")
    return notes
