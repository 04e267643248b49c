"""Upload: one tar stream of the changed files into a hard-link copy of the previous release.

On the host, one script: extract the stream into ``<release>/.capview/incoming``,
hard-link every top-level entry of the previous release (``cp -al``, except its
own ``.capview``), remove what changed or disappeared, hard-link the new files
into place and write the merged manifest. Unchanged files therefore share their
inode with the previous release and never cross the wire; changed files are new
inodes, so nothing in an existing release is ever modified.
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
from pathlib import Path
from typing import AsyncIterator, Callable

from capview.engine.layout import HostPaths
from capview.engine.manifest import Delta, Entry, escape
from capview.engine.scripts.shell import LEGACY_MARK as MARK, q

CHUNK = 256 * 1024
ProgressFn = Callable[[int, int], None]  # (files_done, bytes_done)


def upload_script(paths: HostPaths, version: str, previous: str | None, parts: int = 1) -> str:
    rel = paths.release(version)
    inc = f"{rel}/.capview/incoming"
    lines = [
        f"rel={q(rel)}; inc={q(inc)}",
        # On failure say how much room is left (tar's own message on ENOSPC may be only
        # "Wrote only N of M bytes"), so a full disk is named as such.
        f"""trap 'rc=$?; [ "$rc" = 0 ] || printf "%s free_kb %s\\n" {MARK} "$(df -Pk "$rel" 2>/dev/null | awk "NR==2 {{print \\$4}}")"' EXIT""",
        'mkdir -p "$inc"',  # setup created it empty; the other parts' channels extract into it too
        'tar -xf - -C "$inc" --no-same-owner',
    ]
    if parts > 1:
        # Wait for the other parts (parallel channels) to finish extracting.
        oks = " ".join(f'"$inc/.part-{i}.ok"' for i in range(1, parts))
        lines += [
            "n=0",
            f"for ok in {oks}; do",
            '  while [ ! -e "$ok" ]; do',
            '    [ ! -e "${ok%.ok}.failed" ] || { echo "a parallel upload part failed" >&2; exit 1; }',
            '    n=$((n+1)); [ "$n" -lt 72000 ] || { echo "timed out waiting for the other upload parts" >&2; exit 1; }',
            "    sleep 0.05",
            "  done",
            "done",
        ]
    if previous:
        prev = paths.release(previous)
        lines += [
            f"prev={q(prev)}",
            # Hard-link copy of the previous release, minus its own metadata.
            'find "$prev" -mindepth 1 -maxdepth 1 ! -name .capview -exec cp -al -t "$rel" {} +',
            '(cd "$rel" && xargs -0 -r rm -rf -- < "$inc/meta/drop.nul")',
        ]
    # The other parts hold only regular files (their parent dirs were made by tar with
    # default modes): link them in without copying any directory's mode (cp -lR, no -a);
    # part 0 follows with the real directory entries.
    lines += [f'if [ -d "$inc/part-{i}/files" ]; then cp -lR "$inc/part-{i}/files/." "$rel/"; fi'
              for i in range(1, parts)]
    lines += [
        'if [ -d "$inc/files" ]; then cp -al "$inc/files/." "$rel/"; fi',
        "{",
    ]
    if previous:
        # The first drop.tsv line is a lone tab, so the file is never empty (awk's NR==FNR trick).
        lines.append("  awk -F '\\t' 'FNR==NR {d[$0]=1; next} !($5 in d)' \"$inc/meta/drop.tsv\" \"$prev/.capview/manifest.tsv\"")
    lines += [
        '  cat "$inc/meta/add.tsv"',
        '} > "$rel/.capview/manifest.tsv.tmp"',
        'mv -f "$rel/.capview/manifest.tsv.tmp" "$rel/.capview/manifest.tsv"',
        'rm -rf "$inc"',
    ]
    return "\n".join(lines) + "\n"


def part_script(paths: HostPaths, version: str, index: int) -> str:
    """Extract one extra part of a split upload into its own dir under incoming/.

    Its own dir: two tar processes creating the same parent directories at once lost
    files ("Cannot open: No such file or directory"); part 0's script merges them."""
    inc = f"{paths.release(version)}/.capview/incoming"
    mark = f"{inc}/.part-{index}"
    dest = f"{inc}/part-{index}"
    return (f"mkdir -p {q(dest)} && if tar -xf - -C {q(dest)} --no-same-owner; then : > {q(mark + '.ok')}; "
            f"else rc=$?; : > {q(mark + '.failed')} 2>/dev/null; exit $rc; fi\n")


SPLIT_BYTES = 16 * 1024 * 1024  # one SSH channel moves ~20 MB/s at 100 ms RTT (2 MiB window)
MAX_PARTS = 4


def split_delta(delta: Delta) -> list[tuple[Entry, ...]]:
    """Spread a large upload over a few channels: dirs and links in part 0, files by size."""
    parts_n = max(1, min(MAX_PARTS, -(-delta.send_bytes // SPLIT_BYTES)))
    if parts_n == 1:
        return [delta.send]
    parts: list[list[Entry]] = [[] for _ in range(parts_n)]
    load = [0] * parts_n
    for e in delta.send:
        if e.type != "f":
            parts[0].append(e)
    for e in sorted((e for e in delta.send if e.type == "f"), key=lambda e: -e.size):
        i = load.index(min(load))
        parts[i].append(e)
        load[i] += e.size
    return [tuple(p) for p in parts]


def _meta_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"meta/{name}")
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _entry_member(tar: tarfile.TarFile, root: Path, e: Entry) -> None:
    info = tarfile.TarInfo(f"files/{e.path}")
    info.mode = e.mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    src = root / e.path
    if e.type == "d":
        info.type = tarfile.DIRTYPE
        info.mtime = int(src.lstat().st_mtime)
        tar.addfile(info)
    elif e.type == "l":
        info.mtime = int(src.lstat().st_mtime)
        info.type = tarfile.SYMTYPE
        info.linkname = e.digest
        tar.addfile(info)
    else:
        st = src.stat()
        info.size = e.size
        info.mtime = int(st.st_mtime)
        with open(src, "rb") as f:
            tar.addfile(info, f)


class _QueueWriter(io.RawIOBase):
    """A file object for tarfile (in a thread) that feeds an asyncio queue, with backpressure."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, cancelled: threading.Event) -> None:
        self.loop, self.queue, self.cancelled = loop, queue, cancelled
        self.buf = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buf += b
        while len(self.buf) >= CHUNK:
            self._put(bytes(self.buf[:CHUNK]))
            del self.buf[:CHUNK]
        return len(b)

    def flush_all(self) -> None:
        if self.buf:
            self._put(bytes(self.buf))
            self.buf.clear()

    def _put(self, chunk: bytes | None) -> None:
        if self.cancelled.is_set():
            raise OSError("upload cancelled")
        asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()


async def tar_stream(root: Path, delta: Delta, progress: ProgressFn | None = None, *,
                     entries: tuple[Entry, ...] | None = None, meta: bool = True) -> AsyncIterator[bytes]:
    """Yield the upload tar in chunks; memory stays bounded (a few chunks) whatever the tree size.

    ``entries`` (default: all of delta.send) and ``meta`` let a split upload send a part."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=8)
    cancelled = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        writer = _QueueWriter(loop, queue, cancelled)
        try:
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if meta:
                    _meta_member(tar, "add.tsv", "".join(e.line() + "\n" for e in delta.send).encode("utf-8", "surrogateescape"))
                    _meta_member(tar, "drop.tsv", ("\t\n" + "".join(escape(p) + "\n" for p in delta.drop)).encode("utf-8", "surrogateescape"))
                    _meta_member(tar, "drop.nul", b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in delta.drop))
                files = size = 0
                for e in (delta.send if entries is None else entries):
                    _entry_member(tar, root, e)
                    if e.type == "f":
                        files += 1
                        size += e.size
                        if progress:
                            loop.call_soon_threadsafe(progress, files, size)
            writer.flush_all()
        except BaseException as exc:  # reported to the consumer below
            errors.append(exc)
        finally:
            if not cancelled.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    thread = threading.Thread(target=produce, name="capview-tar", daemon=True)
    thread.start()
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            yield chunk
        if errors:
            raise errors[0]
    finally:
        cancelled.set()
        while not queue.empty():  # unblock a producer waiting on a full queue
            queue.get_nowait()
