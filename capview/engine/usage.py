"""Disk usage of releases that share files as hard links.

The host prints one compact line per entry of each release (scripts/usage.py; no
names, so odd file names cannot break parsing)::

    a|m DEV:INODE NLINK BLOCKS SIZE TYPE     (a = app file, m = the release's .capview)

An inode is freed by deleting a set of releases when every one of its links is
inside that set (occurrences >= nlink); directories are never hard-linked.
"size" and "unique" count the same files -- the release's regular files outside
its .capview, each inode once -- so unique never exceeds size; the disk figure
(what prune frees) also counts the .capview metadata and directories.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping


@dataclass(frozen=True)
class Node:
    nlink: int
    blocks: int  # 512-byte blocks on disk
    size: int  # apparent size
    type: str  # find %y: f d l ...


@dataclass(frozen=True)
class InodeListing:
    """One release's entries: occurrences per inode key, and its app-file totals."""

    counts: Mapping[str, int] = field(default_factory=dict)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    files: int = 0  # regular files outside .capview
    size_bytes: int = 0  # their apparent size, each inode once
    app: frozenset[str] = frozenset()  # inode keys of those files (what "unique" may count)


@dataclass(frozen=True)
class Summary:
    files: int = 0
    size_bytes: int = 0
    unique_disk: int = 0
    unique_apparent: int = 0


def parse_sums(text: str, is_name: Callable[[str], bool]) -> dict[str, Summary]:
    """``VERSION FILES SIZE DISK APPARENT`` lines -> {version: Summary}; names failing
    ``is_name`` and malformed lines are ignored (the text comes from the host)."""
    out: dict[str, Summary] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5 and is_name(parts[0]) and all(p.isdigit() for p in parts[1:]):
            out[parts[0]] = Summary(*(int(p) for p in parts[1:]))
    return out


def parse_cache(body: str, is_name: Callable[[str], bool]) -> dict[str, Summary]:
    """The usage cache's section: skip the fingerprint line; bad lines are ignored."""
    return parse_sums(body.partition("\n")[2], is_name)


def parse_inode_listing(text: str) -> InodeListing:
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
    return InodeListing(dict(counts), nodes, files, size, frozenset(seen_app))


def parse_inode_listings(text: str, is_name: Callable[[str], bool]) -> dict[str, InodeListing]:
    """The batched listing (``a|m releases/NAME`` + the fields above, one find for many
    releases) -> {name: InodeListing}; names failing ``is_name`` are ignored."""
    per: dict[str, list[str]] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        where, _, fields = rest.partition(" ")
        name = where[len("releases/"):] if where.startswith("releases/") else ""
        if name and "/" not in name and is_name(name):
            per.setdefault(name, []).append(f"{kind} {fields}")
    return {name: parse_inode_listing("\n".join(lines)) for name, lines in per.items()}


def _freed(listings: Iterable[InodeListing]) -> tuple[int, int]:
    """(disk bytes, apparent bytes of regular files) freed by deleting all of ``listings``."""
    counts: Counter[str] = Counter()
    nodes: dict[str, Node] = {}
    app: set[str] = set()
    for lst in listings:
        counts.update(lst.counts)
        nodes.update(lst.nodes)
        app |= lst.app
    disk = apparent = 0
    for key, n in counts.items():
        node = nodes[key]
        if node.type == "d":
            disk += node.blocks * 512 * n  # dirs: one inode per occurrence
        elif n >= node.nlink:
            disk += node.blocks * 512
            if key in app:  # the same files "size" counts (not .capview)
                apparent += node.size
    return disk, apparent


def freed_disk_bytes(listings: Iterable[InodeListing]) -> int:
    return _freed(listings)[0]


def unique_bytes(listing: InodeListing) -> tuple[int, int]:
    """(disk bytes, apparent file bytes) only this release holds."""
    return _freed([listing])
