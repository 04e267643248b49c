"""Release manifests: one line per entry, ``type\\tmode\\tsize\\tdigest\\tpath``.

type is f (file), d (dir) or l (symlink); digest is the sha256 of a file, the
target of a symlink, ``-`` for a dir. Paths and targets are percent-escaped
(``%``, tab, newline and other control characters) so one entry is one line
whatever the file is called. The manifest lets a deploy send only what changed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_ESCAPE_RE = re.compile(r"[%\x00-\x1f\x7f]")


def escape(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: f"%{ord(m.group()):02X}", text)


def unescape(text: str) -> str:
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True)
class Entry:
    path: str  # relative POSIX path inside the release
    type: str  # "f" | "d" | "l"
    mode: int  # permission bits
    size: int
    digest: str  # sha256 hex | link target | "-"

    def line(self) -> str:
        return f"{self.type}\t{self.mode:o}\t{self.size}\t{escape(self.digest)}\t{escape(self.path)}"


def safe_relpath(path: str) -> bool:
    """A path that stays inside the release: relative, no '..', no empty parts."""
    if not path or path.startswith("/") or "\x00" in path:
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def parse_manifest(text: str) -> dict[str, Entry]:
    """Parse a remote manifest; lines that are malformed or escape the release are dropped."""
    entries: dict[str, Entry] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or parts[0] not in ("f", "d", "l"):
            continue
        try:
            mode, size = int(parts[1], 8), int(parts[2])
        except ValueError:
            continue
        path = unescape(parts[4])
        if safe_relpath(path):
            entries[path] = Entry(path, parts[0], mode, size, unescape(parts[3]))
    return entries


def excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """rsync-like: a pattern without '/' matches any path component's name;
    one with '/' matches the path from the source root."""
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        if "/" in pat.strip("/"):
            if fnmatch.fnmatchcase(rel, pat.strip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pat.strip("/")):
            return True
    return False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Scan:
    entries: dict[str, Entry]
    skipped: tuple[str, ...]  # why some paths were not taken (special files, reserved names)

    @property
    def files(self) -> int:
        return sum(1 for e in self.entries.values() if e.type == "f")

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries.values() if e.type == "f")


def scan_tree(root: Path, exclude: tuple[str, ...], reserved: tuple[str, ...] = ()) -> Scan:
    """Walk the local source tree (never following symlinks) into manifest entries.

    ``reserved`` top-level paths (shared dirs/files, ``.capview``) are left out:
    the release gets links to shared/ there instead.
    """
    entries: dict[str, Entry] = {}
    skipped: list[str] = []
    reserved_set = set(reserved) | {".capview"}

    def walk(dir_path: Path, rel_dir: str) -> None:
        with os.scandir(dir_path) as it:
            items = sorted(it, key=lambda d: d.name)
        for d in items:
            rel = f"{rel_dir}/{d.name}" if rel_dir else d.name
            if rel in reserved_set:
                skipped.append(f"{rel}: not uploaded, the release links it to shared/")
                continue
            if excluded(rel, exclude):
                continue
            st = d.stat(follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = Entry(rel, "l", 0o777, 0, os.readlink(d.path))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = Entry(rel, "d", mode, 0, "-")
                walk(Path(d.path), rel)
            elif stat.S_ISREG(st.st_mode):
                entries[rel] = Entry(rel, "f", mode, st.st_size, sha256_file(Path(d.path)))
            else:
                skipped.append(f"{rel}: special file (socket/fifo/device) skipped")

    walk(root, "")
    return Scan(entries, tuple(skipped))


@dataclass(frozen=True)
class Delta:
    """What an upload must send and remove, relative to the previous release."""

    send: tuple[Entry, ...]  # new or changed entries (dirs included), parents first
    drop: tuple[str, ...]  # paths to remove from the hard-link copy before adding

    @property
    def send_files(self) -> int:
        return sum(1 for e in self.send if e.type == "f")

    @property
    def send_bytes(self) -> int:
        return sum(e.size for e in self.send if e.type == "f")


def diff(new: dict[str, Entry], prev: dict[str, Entry]) -> Delta:
    send: list[Entry] = []
    drop: list[str] = []
    for path in sorted(new):
        e, old = new[path], prev.get(path)
        if old == e:
            continue
        send.append(e)
        # A changed file or link is removed and re-added (a new inode, never an
        # in-place write into a hard-linked file). A dir stays unless its type changed.
        if old is not None and not (old.type == "d" and e.type == "d"):
            drop.append(path)
    for path in sorted(prev):
        if path not in new:
            drop.append(path)
    return Delta(tuple(send), tuple(drop))


def manifest_text(entries: dict[str, Entry] | tuple[Entry, ...]) -> str:
    items = entries.values() if isinstance(entries, dict) else entries
    return "".join(e.line() + "\n" for e in items)


def parent_dirs(path: str) -> list[str]:
    return [str(p) for p in reversed(PurePosixPath(path).parents) if str(p) != "."]
