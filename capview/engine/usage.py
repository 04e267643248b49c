"""Disk usage of releases that share files as hard links.

The host prints one compact line per entry of each release (no names, so odd
file names cannot break parsing)::

    a|m DEV:INODE NLINK BLOCKS SIZE TYPE     (a = app file, m = the release's .capview)

An inode is freed by deleting a set of releases when every one of its links is
inside that set (occurrences >= nlink); directories are never hard-linked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

# GNU find: %b is in 512-byte blocks, the same accounting du uses.
FIND_FORMAT = "%D:%i %n %b %s %y\\n"


@dataclass(frozen=True)
class Node:
    nlink: int
    blocks: int  # 512-byte blocks on disk
    size: int  # apparent size
    type: str  # find %y: f d l ...


@dataclass(frozen=True)
class Listing:
    """One release's entries: occurrences per inode key, and its app-file totals."""

    counts: Mapping[str, int] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    files: int = 0  # regular files outside .capview
    size_bytes: int = 0  # their apparent size, each inode once


def find_command(rel_dir: str) -> str:
    """sh: list ``rel_dir`` (a quoted path of a validated release) in the format above."""
    meta = f"{rel_dir}/.capview"
    return (
        f"find {rel_dir} \\( -path {meta} -o -path {meta}'/*' \\) -printf 'm {FIND_FORMAT}'"
        f" -o -printf 'a {FIND_FORMAT}' 2>/dev/null || true\n"
    )


# The same per-release aggregation as parse_listing + unique_bytes, done on the host:
# one line "files size unique_disk unique_apparent" instead of one line per entry,
# for listings that need no cross-release sums (capview releases, the dashboard).
_SUMMARY_AWK = (
    "awk '{k=$2; c[k]++; nl[k]=$3; bl[k]=$4; sz[k]=$5; ty[k]=$6;"
    " if ($1==\"a\" && $6==\"f\") {files++; if (!(k in seen)) {seen[k]=1; size+=$5}}}"
    " END {for (k in c) {if (ty[k]==\"d\") disk+=bl[k]*512*c[k];"
    " else if (c[k]>=nl[k]) {disk+=bl[k]*512; if (ty[k]==\"f\") app+=sz[k]}}"
    " printf \"%d %d %d %d\\n\", files, size, disk, app}'"
)


def summary_command(rel_dir: str) -> str:
    return find_command(rel_dir).rstrip("\n").replace(" 2>/dev/null || true", " 2>/dev/null") + f" | {_SUMMARY_AWK} || true\n"


@dataclass(frozen=True)
class Summary:
    files: int = 0
    size_bytes: int = 0
    unique_disk: int = 0
    unique_apparent: int = 0


def parse_summary(text: str) -> Summary:
    parts = text.split()
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return Summary()
    return Summary(*(int(p) for p in parts))


def parse_listing(text: str) -> Listing:
    counts: Counter[str] = Counter()
    nodes: dict[str, Node] = {}
    files = 0
    seen_app: set[str] = set()
    size = 0
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) != 6 or parts[0] not in ("a", "m"):
            continue
        try:
            node = Node(int(parts[2]), int(parts[3]), int(parts[4]), parts[5])
        except ValueError:
            continue
        key = parts[1]
        counts[key] += 1
        nodes[key] = node
        if parts[0] == "a" and node.type == "f":
            files += 1
            if key not in seen_app:
                seen_app.add(key)
                size += node.size
    return Listing(dict(counts), nodes, files, size)


def _freed(listings: Iterable[Listing]) -> tuple[int, int]:
    """(disk bytes, apparent bytes of regular files) freed by deleting all of ``listings``."""
    counts: Counter[str] = Counter()
    nodes: dict[str, Node] = {}
    for lst in listings:
        counts.update(lst.counts)
        nodes.update(lst.nodes)
    disk = apparent = 0
    for key, n in counts.items():
        node = nodes[key]
        if node.type == "d":
            disk += node.blocks * 512 * n  # dirs: one inode per occurrence
        elif n >= node.nlink:
            disk += node.blocks * 512
            if node.type == "f":
                apparent += node.size
    return disk, apparent


def freed_disk_bytes(listings: Iterable[Listing]) -> int:
    return _freed(listings)[0]


def unique_bytes(listing: Listing) -> tuple[int, int]:
    """(disk bytes, apparent file bytes) only this release holds."""
    return _freed([listing])
