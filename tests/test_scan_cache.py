"""The local scan cache (capview/engine/scan_cache.py): an unchanged file is not read
again, and no change of content — same size, a pinned mtime, a recycled inode — ever
reuses a stale hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from capview.engine import scan_cache
from capview.engine.manifest import scan_tree
from capview.engine.scan_cache import HashCache


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPVIEW_SCAN_CACHE", raising=False)
    monkeypatch.setattr(scan_cache, "RACY", 0.0)  # files written by the test count as old


def tree(root: Path, n: int = 50) -> Path:
    for i in range(n):
        p = root / f"d{i % 5}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"file {i}\n".encode() * 10)
    return root


def scan(root: Path) -> tuple[dict, HashCache]:
    cache = HashCache(root.resolve())
    s = scan_tree(root.resolve(), (), cache=cache)
    return {k: e.digest for k, e in s.entries.items() if e.type == "f"}, cache


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_second_scan_reads_nothing_and_agrees(tmp_path: Path):
    root = tree(tmp_path / "src")
    first, c1 = scan(root)
    assert (c1.hits, c1.misses) == (0, 50)
    again, c2 = scan(root)
    assert again == first and (c2.hits, c2.misses) == (50, 0)
    assert first == {str(p.relative_to(root)): sha(p) for p in root.rglob("*.txt")}
    f = c2.path
    assert f.parent == tmp_path / "cache" / "capview" / "scan" and (f.stat().st_mode & 0o777) == 0o600


def test_same_size_same_mtime_rewrite_is_seen(tmp_path: Path):
    # a SOURCE_DATE_EPOCH-style build: content changes, size and mtime do not
    root = tree(tmp_path / "src")
    scan(root)
    p = root / "d1" / "f1.txt"
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[0:4] = b"FILE"
    with open(p, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    digests, c = scan(root)
    assert digests["d1/f1.txt"] == sha(p) and c.misses == 1


def test_replaced_file_with_recycled_look_is_seen(tmp_path: Path):
    # deleted and written again (maybe on the same inode number) with the old size and mtime
    root = tree(tmp_path / "src")
    scan(root)
    p = root / "d2" / "f2.txt"
    st = p.stat()
    p.unlink()
    p.write_bytes(b"X" * st.st_size)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    digests, _ = scan(root)
    assert digests["d2/f2.txt"] == sha(p)


def test_hard_link_copy_and_chmod_are_rehashed_never_wrong(tmp_path: Path):
    root = tree(tmp_path / "src")
    scan(root)
    (root / "d3" / "f3.txt").chmod(0o600)  # ctime moves: hashed again, same digest
    digests, c = scan(root)
    assert c.misses == 1 and digests["d3/f3.txt"] == sha(root / "d3" / "f3.txt")


def test_racy_files_are_hashed_but_not_remembered(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(scan_cache, "RACY", 3600.0)  # every file is "just written"
    root = tree(tmp_path / "src", 5)
    scan(root)
    _, c = scan(root)
    assert (c.hits, c.misses) == (0, 5)


def test_garbage_cache_is_ignored(tmp_path: Path):
    root = tree(tmp_path / "src", 5)
    _, c = scan(root)
    c.path.write_bytes(b"\x00\xff garbage\nnot a line\n1 2 3\n")
    digests, c2 = scan(root)
    assert c2.hits == 0 and digests == {str(p.relative_to(root)): sha(p) for p in root.rglob("*.txt")}
    # a cache of another root (same file name) is never used for this one
    other = tree(tmp_path / "other", 5)
    _, co = scan(other)
    co.path.rename(c.path)
    _, c3 = scan(root)
    assert c3.hits == 0


def test_off_switch_and_unwritable_cache(tmp_path: Path, monkeypatch):
    root = tree(tmp_path / "src", 5)
    monkeypatch.setenv("CAPVIEW_SCAN_CACHE", "off")
    scan_tree(root, (), cache=True)
    assert not (tmp_path / "cache").exists()
    monkeypatch.delenv("CAPVIEW_SCAN_CACHE")
    (tmp_path / "cache").write_text("a file where the dir should be")
    s = scan_tree(root, (), cache=True)  # cannot write its cache: scans all the same
    assert s.files == 5


def test_only_the_newest_roots_are_kept(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(scan_cache, "KEEP", 3)
    for i in range(5):
        scan(tree(tmp_path / f"src{i}", 2))
    assert len(list((tmp_path / "cache" / "capview" / "scan").glob("*.tsv"))) == 3
