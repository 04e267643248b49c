"""Deterministic generator of a realistic release tree for the benchmarks.

``make_tree(dst, seed)`` writes (same seed -> byte-identical files, names and mtimes):

* ``bin/app``            one 20 MB binary (random bytes: incompressible, like a real binary)
* ``static/...``         1,500 assets of 1-40 KB in nested directories; two thirds are
                         "images/fonts" (random bytes), one third CSS/JS (text)
* ``templates/...``      500 text templates (~10 KB each) in nested directories

That is 2,001 files, ~56 MB. Every file gets the same fixed mtime, so ``rsync -a
--link-dest`` (which only hard-links files whose size *and* mtime match) can link the
unchanged files of a redeploy.

``small_change(tree, n=20, seed)`` rewrites ``n`` of the small files (assets and templates,
never the binary) with new content and a later mtime and returns the bytes changed (the new
files' total size). ``make_big_tree(dst, total_mb=500, seed)`` writes a tree of roughly
``total_mb`` for the client-memory scenario (mostly 8-64 MB binaries plus the usual small
files).
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TreeStats", "make_tree", "small_change", "make_big_tree", "make_many_tree", "tree_stats",
           "BASE_MTIME"]

BASE_MTIME = 1_700_000_000  # 2023-11-14: every generated file's mtime
CHANGE_MTIME = BASE_MTIME + 86_400

BINARY_SIZE = 20 * 1024 * 1024
N_ASSETS = 1500
N_TEMPLATES = 500

_WORDS = (
    "the release deploy host current shared data config service health check upload "
    "render block endblock include extends for endfor if else endif user item title "
    "header footer nav main section article div span class id href src alt button form "
    "input label value name type submit table row cell list link style script import "
    "export function return const let var async await promise then catch error message"
).split()

_ASSET_DIRS = ("img", "img/icons", "img/photos/2023", "img/photos/2024", "fonts", "css",
               "css/vendor", "js", "js/vendor", "js/pages/admin", "js/pages/public", "media")
_TEMPLATE_DIRS = ("", "layouts", "partials", "pages", "pages/admin", "pages/blog",
                  "emails", "emails/html", "emails/text", "errors")


@dataclass(frozen=True)
class TreeStats:
    files: int
    bytes: int
    dirs: int


def _text(rng: random.Random, size: int) -> bytes:
    words: list[str] = []
    n = 0
    while n < size:
        chunk = rng.choices(_WORDS, k=256)
        words.extend(chunk)
        n += sum(len(w) + 1 for w in chunk)
    out = " ".join(words).encode()
    # break into lines of ~80 chars so it looks like text
    lines = [out[i:i + 79] for i in range(0, len(out), 79)]
    return b"\n".join(lines)[:size]


def _write(path: Path, data: bytes, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp~")
    with open(tmp, "wb") as f:
        f.write(data)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)  # never modify in place: the old file may be hard-linked elsewhere


def _small_files(rng: random.Random) -> list[tuple[str, str]]:
    """(relative path, kind) for the assets and templates; kind: bin | text."""
    out: list[tuple[str, str]] = []
    for i in range(N_ASSETS):
        d = rng.choice(_ASSET_DIRS)
        if d.startswith(("css", "js")):
            ext, kind = (".css" if d.startswith("css") else ".js"), "text"
        elif d == "fonts":
            ext, kind = ".woff2", "bin"
        else:
            ext, kind = rng.choice((".png", ".jpg", ".webp", ".svg")), "bin"
        if ext == ".svg":
            kind = "text"
        out.append((f"static/{d}/asset-{i:04d}{ext}", kind))
    for i in range(N_TEMPLATES):
        d = rng.choice(_TEMPLATE_DIRS)
        prefix = f"templates/{d}/" if d else "templates/"
        out.append((f"{prefix}tpl-{i:03d}.html", "text"))
    return out


def _content(rng: random.Random, rel: str, kind: str) -> bytes:
    if rel.startswith("templates/"):
        size = rng.randint(4 * 1024, 16 * 1024)
    else:
        size = rng.randint(1024, 40 * 1024)
    return rng.randbytes(size) if kind == "bin" else _text(rng, size)


def make_tree(dst: str | Path, seed: int = 1) -> TreeStats:
    """Write the ~2,000-file, ~56 MB release tree into ``dst`` (created; must be empty or new)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    _write(dst / "bin" / "app", rng.randbytes(BINARY_SIZE), BASE_MTIME)
    for rel, kind in _small_files(rng):
        _write(dst / rel, _content(rng, rel, kind), BASE_MTIME)
    _write(dst / "VERSION", f"seed={seed}\n".encode(), BASE_MTIME)
    _fix_dir_mtimes(dst)
    return tree_stats(dst)


def small_change(tree_dir: str | Path, n: int = 20, seed: int = 2) -> int:
    """Rewrite ``n`` small files of a tree made by make_tree (new bytes, later mtime).

    Files are replaced by rename, never modified in place. Returns the changed bytes
    (the new contents' total size)."""
    tree_dir = Path(tree_dir)
    rng = random.Random(seed)
    candidates = sorted(
        str(p.relative_to(tree_dir)) for p in tree_dir.rglob("*")
        if p.is_file() and not p.is_symlink()
        and p.relative_to(tree_dir).parts[0] in ("static", "templates")
    )
    changed = 0
    mtime = CHANGE_MTIME + seed  # distinct per change set
    for rel in rng.sample(candidates, n):
        kind = "text" if rel.endswith((".css", ".js", ".svg", ".html")) else "bin"
        data = _content(rng, rel, kind)
        _write(tree_dir / rel, data, mtime)
        changed += len(data)
    return changed


def make_big_tree(dst: str | Path, total_mb: int = 500, seed: int = 3) -> TreeStats:
    """A tree of about ``total_mb`` MB: the usual small files plus 8-64 MB binaries."""
    dst = Path(dst)
    stats = make_tree(dst, seed)
    rng = random.Random(seed + 1000)
    remaining = total_mb * 1024 * 1024 - stats.bytes
    i = 0
    while remaining > 0:
        size = min(remaining, rng.randint(8, 64) * 1024 * 1024)
        # write in 4 MB pieces: the generator itself must not need much memory either
        path = dst / "bin" / "blobs" / f"blob-{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left:
                piece = min(left, 4 * 1024 * 1024)
                f.write(rng.randbytes(piece))
                left -= piece
        os.utime(path, (BASE_MTIME, BASE_MTIME))
        remaining -= size
        i += 1
    _fix_dir_mtimes(dst)
    return tree_stats(dst)


def make_many_tree(dst: str | Path, files: int = 200_000, seed: int = 5) -> TreeStats:
    """``files`` small files (100 B - 2 KB; a third text, the rest random bytes) in
    ``static/pkg-NNN/mod-MM/`` directories of ~500 files each, plus ``VERSION``."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    text_pool = _text(rng, 64 * 1024)
    per_dir = 500
    for i in range(files):
        d = dst / "static" / f"pkg-{i // (per_dir * 20):03d}" / f"mod-{(i // per_dir) % 20:02d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        size = rng.randint(100, 2048)
        if i % 3 == 0:
            off = rng.randrange(0, len(text_pool) - size)
            name, data = f"f{i:06d}.js", text_pool[off:off + size]
        else:
            name, data = f"f{i:06d}.bin", rng.randbytes(size)
        path = d / name
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (BASE_MTIME, BASE_MTIME))
    _write(dst / "VERSION", f"many={files} seed={seed}\n".encode(), BASE_MTIME)
    _fix_dir_mtimes(dst)
    return tree_stats(dst)


def tree_stats(root: str | Path) -> TreeStats:
    files = size = dirs = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += len(dirnames)
        for f in filenames:
            st = os.lstat(os.path.join(dirpath, f))
            files += 1
            size += st.st_size
    return TreeStats(files=files, bytes=size, dirs=dirs)


def _fix_dir_mtimes(root: Path) -> None:
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        os.utime(dirpath, (BASE_MTIME, BASE_MTIME))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.tree",
                                 description="Write the benchmark release tree.")
    ap.add_argument("dst", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--big-mb", type=int, default=0, help="write a tree of about this many MB instead")
    ap.add_argument("--many", type=int, default=0, help="write a tree of this many small files instead")
    ap.add_argument("--change", type=int, default=0, help="apply small_change(n) to an existing tree")
    args = ap.parse_args(argv)
    if args.change:
        print(f"changed {args.change} files, {small_change(args.dst, args.change, args.seed)} bytes")
        return 0
    if args.many:
        st = make_many_tree(args.dst, args.many, args.seed)
    elif args.big_mb:
        st = make_big_tree(args.dst, args.big_mb, args.seed)
    else:
        st = make_tree(args.dst, args.seed)
    print(f"{st.files} files, {st.dirs} dirs, {st.bytes / 1e6:.1f} MB in {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
