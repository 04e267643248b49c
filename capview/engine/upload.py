"""Upload: one tar stream of the changed files; the rest is taken from the previous
release's *manifest*, never from whatever else lies in its directory.

On the host, one script (its text: engine/scripts/upload.py): extract the stream into ``<release>/.capview/incoming``;
with awk, merge the previous ``manifest.tsv`` (minus the paths the client dropped)
and the sent entries into the new manifest, checked against the client's sha256 of
it; create every listed directory fresh; hard-link the previous release's listed
files and links *by path* (the list is derived on the host, so it never crosses the
wire or reaches argv); put the sent files in place; set the directory modes. Build
outputs, files an app wrote at run time, stray links and the old ``.capview/`` are
never carried over. Uploaded files are read-only (manifest.py), so the shared
inodes cannot be written in place.

Before linking, the previous release's listed files are checked against its
manifest (type, mode, size): if one was changed in place, the script empties the
new release and exits ``DRIFT``; the deploy then sends every file instead.
The stat lines of the shared files are kept in ``.capview/shared.stat`` for the
check after the build (scripts/verify.py after_build_script).
"""

from __future__ import annotations

import asyncio
import io
import tarfile
import threading
from pathlib import Path
from typing import AsyncIterator, Callable

from capview.engine.compress import PIECE, Packer, gzip_compressor
from capview.engine.manifest import Delta, Entry, escape
from capview.engine.scripts.shell import Frames, parse_markers
from capview.engine.scripts.switch import READONLY_SIGNS

CHUNK = 256 * 1024
ProgressFn = Callable[[int, int], None]  # (files_done, bytes_done)
def drift_warning(stdout: str, frames: Frames, delta: Delta, previous: str | None, env: str = "ENV") -> str:
    """The upload script's ``drift KIND INDEX`` marker as one line for the operator."""
    kind, _, index = (parse_markers(stdout, frames).get("drift", ["changed 0"])[-1] + " ").partition(" ")
    linked = [e.path for e in delta.keep if e.type != "d"]
    i = int(index) if index.strip().isdigit() else 0
    what = {"manifest": "its manifest.tsv is not the one read at setup",
            "missing": "a file its manifest lists is missing",
            "changed": "a file differs from its manifest (type, mode or size)"}.get(kind, "it differs from its manifest")
    example = f" (e.g. {linked[i - 1]})" if kind == "changed" and 0 < i <= len(linked) else ""
    return (f"releases/{previous}: {what}{example}; nothing was hard-linked from it, every file was sent - "
            f"check it with capview verify {env} {previous}")


def readonly_hint(output: str) -> str | None:
    """A build that failed writing into a read-only (shared) file: say why and what to do."""
    if not any(s in output for s in READONLY_SIGNS.split("|")):
        return None
    return ("uploaded files are read-only on the host: unchanged ones are hard links shared with older "
            "releases; write new files instead (or replace one: write a copy, then mv it over), or list "
            "the file in upload.writable to get a private, writable copy that is never linked")


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


def manifest_sha256(delta: Delta) -> str:
    return delta.sha256  # computed once (the upload's meta, the manifest cache)


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

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, cancelled: threading.Event,
                 gzip: bool = False, packer: Packer | None = None) -> None:
        self.loop, self.queue, self.cancelled = loop, queue, cancelled
        self.buf = bytearray()
        self.z = gzip_compressor() if gzip else None
        self.packer = packer  # pieces packed one by one (compress.Packer), instead of one gzip stream
        self.size = PIECE if packer is not None else CHUNK

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buf += self.z.compress(b) if self.z is not None else b
        while len(self.buf) >= self.size:
            self._piece(bytes(self.buf[:self.size]))
            del self.buf[:self.size]
        return len(b)

    def flush_all(self) -> None:
        if self.z is not None:
            self.buf += self.z.flush()
        if self.buf:
            self._piece(bytes(self.buf))
            self.buf.clear()

    def _piece(self, data: bytes) -> None:
        self._put(self.packer.pack(data) if self.packer is not None else data)

    def _put(self, chunk: bytes | None) -> None:
        if self.cancelled.is_set():
            raise OSError("upload cancelled")
        asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()


async def tar_stream(root: Path, delta: Delta, progress: ProgressFn | None = None, *,
                     entries: tuple[Entry, ...] | None = None, meta: bool = True,
                     gzip: bool = False, packer: Packer | None = None) -> AsyncIterator[bytes]:
    """Yield the upload tar in chunks; memory stays bounded (a few chunks) whatever the tree size.

    ``entries`` (default: all of delta.send) and ``meta`` let a split upload send a part;
    ``gzip`` compresses the stream (compress.py); ``packer`` packs it piece by piece
    (transport.Packed pieces, as the link's pace says: the time each is taken is metered)."""
    loop = asyncio.get_running_loop()
    # few pieces ahead when packing: each is packed or not by the pace when it was made
    queue: asyncio.Queue = asyncio.Queue(maxsize=8 if packer is None else 2)
    cancelled = threading.Event()
    errors: list[BaseException] = []
    took = packer.meter() if packer is not None else None

    def produce() -> None:
        writer = _QueueWriter(loop, queue, cancelled, gzip, packer)
        try:
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if meta:
                    _meta_member(tar, "add.tsv", "".join(e.line() + "\n" for e in delta.send).encode("utf-8", "surrogateescape"))
                    # The first drop.tsv line is a lone tab, so the file is never empty (awk's part= needs a line).
                    _meta_member(tar, "drop.tsv", ("\t\n" + "".join(escape(p) + "\n" for p in delta.drop)).encode("utf-8", "surrogateescape"))
                    _meta_member(tar, "manifest.sha256", manifest_sha256(delta).encode() + b"\n")
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
            if took is not None:
                took(chunk)
            yield chunk
        if errors:
            raise errors[0]
    finally:
        cancelled.set()
        while not queue.empty():  # unblock a producer waiting on a full queue
            queue.get_nowait()
