"""Release manifests: one line per entry, ``type\\tmode\\tsize\\tdigest\\tpath``.

type is f (file), d (dir) or l (symlink); digest is the sha256 of a file, the
target of a symlink, ``-`` for a dir. Paths and targets are percent-escaped
(``%``, tab, newline and other control characters) so one entry is one line
whatever the file is called. The manifest lets a deploy send only what changed.

Regular files are recorded (and uploaded) with their write bits dropped: a release
shares unchanged files with the previous one as hard links, so a read-only mode is
what keeps an in-place write by a build or the app from reaching another release.
Files matching ``upload.writable`` keep their mode and are never shared.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath

from capview.engine.scan_cache import HashCache
from capview.engine.scan_cache import enabled as scan_cache_enabled

_ESCAPE_RE = re.compile(r"[%\x00-\x1f\x7f]")


def escape(text: str) -> str:
    if _ESCAPE_RE.search(text) is None:  # nearly every path: no substitution (hot at 200,000 entries)
        return text
    return _ESCAPE_RE.sub(lambda m: f"%{ord(m.group()):02X}", text)


_UNESCAPE_RE = re.compile(r"%([0-9A-F]{2})")


def unescape(text: str) -> str:
    if "%" not in text:  # nearly every path and digest: no regex (200,000 lines took 2.5 s)
        return text
    return _UNESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)


@dataclass(frozen=True)
class Entry:
    path: str  # relative POSIX path inside the release
    type: str  # "f" | "d" | "l"
    mode: int  # permission bits
    size: int
    digest: str  # sha256 hex | link target | "-"

    def line(self) -> str:
        return f"{self.type}\t{self.mode:o}\t{self.size}\t{escape(self.digest)}\t{escape(self.path)}"


_BAD_PARTS = frozenset(("", ".", ".."))


def safe_relpath(path: str) -> bool:
    """A path that stays inside the release: relative, no '..', no empty parts."""
    if not path or path.startswith("/") or "\x00" in path:
        return False
    return _BAD_PARTS.isdisjoint(path.split("/"))  # a set test: hot for 200,000-line manifests


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

    @cached_property
    def files(self) -> int:
        return sum(1 for e in self.entries.values() if e.type == "f")

    @cached_property
    def bytes(self) -> int:
        return sum(e.size for e in self.entries.values() if e.type == "f")

    @cached_property
    def shareable_lines(self) -> dict[str, Entry]:
        """Each shareable entry by its manifest line (what diff_text matches the previous
        manifest's lines against; source.py computes it in the scan's thread)."""
        return {e.line(): e for e in self.entries.values() if shareable(e)}


WRITE_BITS = 0o222


def writable_path(rel: str, patterns: tuple[str, ...]) -> bool:
    """``upload.writable``: the path or one of its parent dirs matches a pattern
    (same matching as ``exclude``)."""
    return bool(patterns) and any(excluded(p, patterns) for p in (*parent_dirs(rel), rel))


def _name(d: os.DirEntry) -> str:
    return d.name


def scan_tree(root: Path, exclude: tuple[str, ...], reserved: tuple[str, ...] = (),
              writable: tuple[str, ...] = (), cache: "HashCache | None | bool" = None) -> Scan:
    """Walk the local source tree (never following symlinks) into manifest entries.

    ``reserved`` top-level paths (shared dirs/files, ``.capview``) are left out:
    the release gets links to shared/ there instead. Regular files lose their write
    bits unless ``writable`` matches them (see the module docstring). ``cache``: a
    HashCache, or True for the user's scan cache of ``root`` (scan_cache.py): an
    unchanged file (same inode, size, mtime and ctime) is not read again.
    """
    if cache is True:
        cache = HashCache(root) if scan_cache_enabled() else None
    hashes = cache or None
    entries: dict[str, Entry] = {}
    skipped: list[str] = []
    reserved_set = set(reserved) | {".capview"}

    lookup = hashes.lookup if hashes else None
    remember = hashes.remember if hashes else None
    is_reg, is_dir, is_lnk, imode = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK, stat.S_IMODE

    def walk(dir_path: str, prefix: str) -> None:
        # hot (200,000 entries): names and lookups kept local, the common case first
        with os.scandir(dir_path) as it:
            items = sorted(it, key=_name)
        for d in items:
            rel = prefix + d.name
            if rel in reserved_set:
                skipped.append(f"{rel}: not uploaded, the release links it to shared/")
                continue
            if exclude and excluded(rel, exclude):
                continue
            st = d.stat(follow_symlinks=False)
            m = st.st_mode
            if is_reg(m):
                mode = imode(m)
                if not (writable and writable_path(rel, writable)):
                    mode &= ~WRITE_BITS
                digest = lookup(st) if lookup else None
                if digest is None:
                    digest = sha256_file(Path(d.path))
                    if remember:
                        remember(st, digest)
                entries[rel] = Entry(rel, "f", mode, st.st_size, digest)
            elif is_dir(m):
                entries[rel] = Entry(rel, "d", imode(m), 0, "-")
                walk(d.path, rel + "/")
            elif is_lnk(m):
                entries[rel] = Entry(rel, "l", 0o777, 0, os.readlink(d.path))
            else:
                skipped.append(f"{rel}: special file (socket/fifo/device) skipped")

    walk(str(root), "")
    if hashes:
        hashes.save()
    return Scan(entries, tuple(skipped))


@dataclass(frozen=True)
class Delta:
    """What an upload must send, relative to the previous release's manifest."""

    send: tuple[Entry, ...]  # new or changed entries (dirs included), parents first
    drop: tuple[str, ...]  # previous manifest paths NOT taken over (changed or gone)
    keep: tuple[Entry, ...] = ()  # previous manifest entries taken over as they are (its order)
    text: str | None = field(default=None, compare=False, repr=False)  # the manifest, if diff_text made it
    kept_paths: frozenset[str] | None = field(default=None, compare=False, repr=False)  # keep's paths, if known

    @cached_property
    def manifest(self) -> str:
        """The new release's manifest.tsv exactly as the host assembles it."""
        if self.text is not None:
            return self.text
        return manifest_text(self.keep + self.send)

    @cached_property
    def sha256(self) -> str:
        """sha256 of ``manifest`` (what the host's merge must hash to)."""
        return hashlib.sha256(self.manifest.encode("utf-8", "surrogateescape")).hexdigest()

    @cached_property
    def kept(self) -> frozenset[str]:
        """The paths of ``keep``."""
        return self.kept_paths if self.kept_paths is not None else frozenset(e.path for e in self.keep)

    @property
    def send_files(self) -> int:
        return sum(1 for e in self.send if e.type == "f")

    @property
    def send_bytes(self) -> int:
        return sum(e.size for e in self.send if e.type == "f")


def shareable(e: Entry) -> bool:
    """A file with a write bit is private to its release (upload.writable, or a release
    made before files were uploaded read-only): it is sent again, never hard-linked."""
    return not (e.type == "f" and e.mode & WRITE_BITS)


def diff(new: dict[str, Entry], prev: dict[str, Entry]) -> Delta:
    """Unchanged entries are taken over from the previous manifest (files and links
    hard-linked, dirs made fresh); the rest is sent. A changed file is always a new
    inode, never an in-place write into a hard-linked one."""
    send = [new[p] for p in sorted(new) if prev.get(p) != new[p] or not shareable(new[p])]
    sent = {e.path for e in send}
    keep = tuple(e for p, e in prev.items() if p in new and p not in sent)
    drop = tuple(sorted(p for p in prev if p not in new or p in sent))
    return Delta(tuple(send), drop, keep)


def diff_text(scan: Scan, prev_text: str) -> Delta:
    """diff(scan.entries, parse_manifest(prev_text)) without parsing the previous manifest
    (issue 21: 200,000 lines): a previous line is taken over when it is, byte for byte, the
    line of a shareable entry of the scan; every other line's path is dropped. Same result
    as diff() for a manifest capview wrote; for any other text it only sends more (a line
    that is not canonical is sent again, not kept). The host checks the merge against the
    client's sha256 either way (upload.py), so this decides only what is sent."""
    by_line = scan.shareable_lines
    lines = prev_text.split("\n")
    # C-speed passes (200,000 lines): a line twice is kept once (the host then refuses the merge)
    kept_lines = list(dict.fromkeys(line for line in lines if line in by_line))
    keep = [by_line[line] for line in kept_lines]
    kept = {e.path for e in keep}
    new = scan.entries
    send = tuple(new[p] for p in sorted(p for p in new if p not in kept))
    # the host drops by the escaped path field ($5); a line without five fields drops nothing
    # (a kept path is never dropped: its other line, if any, is then the host's to refuse)
    rest = (line.split("\t") for line in lines if line and line not in by_line)
    drop = {unescape(parts[4]) for parts in rest if len(parts) == 5}
    drop = {p for p in drop if p not in kept and safe_relpath(p)}
    del lines, rest  # the previous text's lines: ~35 MB for 200,000 (client peak RSS)
    text = "\n".join(kept_lines)
    del kept_lines
    text = (text + "\n" if text else "") + manifest_text(send)  # one copy: the manifest the host will merge
    return Delta(send, tuple(sorted(drop)), tuple(keep), text, kept_paths=frozenset(kept))


def manifest_text(entries: dict[str, Entry] | tuple[Entry, ...]) -> str:
    items = entries.values() if isinstance(entries, dict) else entries
    return "".join(e.line() + "\n" for e in items)


def parent_dirs(path: str) -> list[str]:
    return [str(p) for p in reversed(PurePosixPath(path).parents) if str(p) != "."]
