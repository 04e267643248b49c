"""The local scan cache: a file's sha256 is reused while its stat is unchanged
(issue 21; rsync's quick check, made stricter).

An entry is keyed by the inode (on the root's device) and trusted only while size, mtime_ns AND
ctime_ns are all unchanged. ctime cannot be set from user space and moves on every
write, chmod, link or rename of the inode, so a file rewritten with the same size
and a pinned mtime (SOURCE_DATE_EPOCH builds), or a new file that got a freed inode
number back, never matches an old entry. A file whose ctime is less than ``RACY``
seconds old when the scan starts is hashed but not remembered (git's "racy" rule: a
write in the same clock tick as our read would leave its stat unchanged).

One cache file per source root (realpath), in ``$XDG_CACHE_HOME/capview/scan``
(default ``~/.cache``), mode 0600, written by temp file + rename; it holds only the
last scan's files, and only the ``KEEP`` most recent roots are kept. A cache that
cannot be read or written is ignored: the scan just hashes. ``CAPVIEW_SCAN_CACHE=off``
turns it off.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

HEADER = "capview-scan-cache 2"
RACY = 2.0
KEEP = 32



def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "capview" / "scan"


def enabled() -> bool:
    return os.environ.get("CAPVIEW_SCAN_CACHE", "").lower() not in ("off", "0", "no", "false")


class HashCache:
    """Kept small (200,000 files): st_ino -> one string "SIZE MTIME_NS CTIME_NS SHA256";
    the device is the root's (a file on another device is hashed, never remembered)."""

    def __init__(self, root: Path, directory: Path | None = None) -> None:
        self.root = str(root)
        self.directory = directory or cache_dir()
        self.path = self.directory / (hashlib.sha256(self.root.encode("utf-8", "surrogateescape"))
                                      .hexdigest()[:32] + ".tsv")
        self.started_ns = time.time_ns()
        try:
            self.dev = os.stat(root).st_dev
        except OSError:
            self.dev = -1
        self.old: dict[int, str] = {}
        self.new: dict[int, str] = {}
        self.hits = 0
        self.misses = 0
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                if f.readline().rstrip("\n") != f"{HEADER} {self.dev} {self.root}":
                    return  # another format, device or (a hash collision) another root
                for line in f:
                    ino, _, rest = line.rstrip("\n").partition(" ")
                    if ino.isdigit() and rest.count(" ") == 3 and len(rest) > 70:
                        self.old[int(ino)] = rest
        except (OSError, ValueError):
            self.old = {}

    @staticmethod
    def _stat_key(st: os.stat_result) -> str:
        return f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} "

    def lookup(self, st: os.stat_result) -> str | None:
        hit = self.old.get(st.st_ino) if st.st_dev == self.dev else None
        # one f-string and a compare: called once per file of a 200,000-file tree
        if hit is not None and hit[:-64] == f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} ":
            self.hits += 1
            self.new[st.st_ino] = hit
            return hit[-64:]
        self.misses += 1
        return None

    def remember(self, st: os.stat_result, digest: str) -> None:
        if st.st_dev == self.dev and st.st_ctime_ns < self.started_ns - int(RACY * 1e9) and len(digest) == 64:
            self.new[st.st_ino] = self._stat_key(st) + digest

    def save(self) -> None:
        if self.new == self.old:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(f"{HEADER} {self.dev} {self.root}\n")
                f.writelines(f"{i} {v}\n" for i, v in self.new.items())
            os.replace(tmp, self.path)
            self._trim()
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _trim(self) -> None:
        files = sorted(self.directory.glob("*.tsv"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[KEEP:]:
            try:
                old.unlink()
            except OSError:
                pass
