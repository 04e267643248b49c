"""The local scan cache: a file's sha256 is reused while its stat is unchanged
(issue 21; rsync's quick check, made stricter).

An entry is keyed by (st_dev, st_ino) and trusted only while size, mtime_ns AND
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

HEADER = "capview-scan-cache 1"
RACY = 2.0
KEEP = 32

_Key = tuple[int, int]
_Stat = tuple[int, int, int]  # size, mtime_ns, ctime_ns


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "capview" / "scan"


def enabled() -> bool:
    return os.environ.get("CAPVIEW_SCAN_CACHE", "").lower() not in ("off", "0", "no", "false")


class HashCache:
    def __init__(self, root: Path, directory: Path | None = None) -> None:
        self.root = str(root)
        self.directory = directory or cache_dir()
        self.path = self.directory / (hashlib.sha256(self.root.encode("utf-8", "surrogateescape"))
                                      .hexdigest()[:32] + ".tsv")
        self.started_ns = time.time_ns()
        self.old: dict[_Key, tuple[_Stat, str]] = {}
        self.new: dict[_Key, tuple[_Stat, str]] = {}
        self.hits = 0
        self.misses = 0
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                if f.readline().rstrip("\n") != f"{HEADER} {self.root}":
                    return  # another format, or (a hash collision) another root
                for line in f:
                    p = line.split()
                    if len(p) == 6 and len(p[5]) == 64:
                        self.old[(int(p[0]), int(p[1]))] = ((int(p[2]), int(p[3]), int(p[4])), p[5])
        except (OSError, ValueError):
            self.old = {}

    def lookup(self, st: os.stat_result) -> str | None:
        hit = self.old.get((st.st_dev, st.st_ino))
        if hit is not None and hit[0] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            self.hits += 1
            self.new[(st.st_dev, st.st_ino)] = hit
            return hit[1]
        self.misses += 1
        return None

    def remember(self, st: os.stat_result, digest: str) -> None:
        if st.st_ctime_ns < self.started_ns - int(RACY * 1e9):
            self.new[(st.st_dev, st.st_ino)] = ((st.st_size, st.st_mtime_ns, st.st_ctime_ns), digest)

    def save(self) -> None:
        if self.new == self.old:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(f"{HEADER} {self.root}\n")
                f.writelines(f"{d} {i} {s} {m} {c} {h}\n" for (d, i), ((s, m, c), h) in self.new.items())
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
