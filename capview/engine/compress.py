"""``upload.compress``: gzip the upload's tar stream when it pays (issue 21).

* ``never``: plain tar. ``always``: gzip, and a host without ``gzip`` is an error.
* ``auto`` (default), through a session loop whose host has gzip (transport.unpacks):
  the stream goes in pieces of ``PIECE`` bytes, each one packed (one gzip member, that
  the loop inflates) or plain, chosen as it is made (:class:`Packer`): packed while the
  link carries under ``FAST_LINK`` bytes a second and the piece shrinks below
  ``MAX_RATIO``, plain otherwise. A fast link (a LAN, a loopback whose CPU the gzip
  would take from ssh) so gets a plain stream after its first few MB, a 50 Mbit/s
  uplink a packed one, and a piece of JPEGs never costs a host ``gzip -d``. The pace is
  the link's own (bytes on the wire, packed or not), so data that packs tenfold does
  not make a thin link look fast.
* ``auto`` otherwise (a channel per script, BusyBox): the whole stream is gzipped when
  it is at least ``MIN_BYTES`` and a sample of the files being sent shrinks below
  ``MAX_RATIO``; a host without ``gzip`` silently gets the plain stream (the upload
  script says so before reading anything).

zlib level 1 runs at well over 100 MB/s per core — faster than any uplink a deploy
usually has (50 Mbit/s is 6 MB/s), so when the data shrinks, the wire time saved is
larger than the CPU spent, and the compression runs in the tar thread while the
previous chunks are on the wire. Why not zstd: Python 3.11 has no zstd module and
capview adds no dependency for it; gzip is on every host that has tar.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Callable

from capview.engine.manifest import Delta
from capview.remote.transport import Packed

LEVEL = 1
MIN_BYTES = 1 << 20
MAX_RATIO = 0.9
SAMPLE_FILES = 64
SAMPLE_BYTES = 32 * 1024  # from the start of each sampled file

PIECE = 1 << 20  # a packed piece: one gzip member, one host fork of gzip -d
# Above this pace (bytes on the wire a second, 168 Mbit/s) the link is about as fast as
# level 1 gzip on one core (~70 MB/s of data here), and on a shared-CPU host the gzip -d
# competes with sshd: plain pays. Below it (100 Mbit/s and less), packing does.
FAST_LINK = 20 * 1024 * 1024
# What a stream takes at once before its pace shows: sshd's 2 MiB channel window, the
# session loop's 1 MiB gather and the queue of pieces the tar thread made ahead.
BURST = 4 * 1024 * 1024
TRAILING = 0.2  # seconds of pace a verdict looks back at (it needs half of it)


def gzip_compressor():
    return zlib.compressobj(LEVEL, zlib.DEFLATED, 31)  # wbits 31: a gzip stream, as gzip -d reads


def estimated_ratio(root: Path, delta: Delta) -> float:
    """Compressed / plain size of the files to send, from samples of the largest ones
    (byte-weighted); 1.0 when nothing could be read."""
    files = sorted((e for e in delta.send if e.type == "f" and e.size), key=lambda e: e.size, reverse=True)
    plain = packed = 0.0
    for e in files[:SAMPLE_FILES]:
        try:
            with open(root / e.path, "rb") as f:
                data = f.read(SAMPLE_BYTES)
        except OSError:
            continue
        if data:
            ratio = len(zlib.compress(data, LEVEL)) / len(data)
            plain += e.size
            packed += e.size * ratio
    return packed / plain if plain else 1.0


def wanted(mode: str, root: Path, delta: Delta) -> bool:
    """Whether this upload's stream is gzipped (see the module docstring)."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    return delta.send_bytes >= MIN_BYTES and estimated_ratio(root, delta) < MAX_RATIO


class Packer:
    """Packs a split upload's streams piece by piece, as fast as their link takes them
    (see the module docstring). ``pack`` runs in the tar threads, ``meter`` in the
    event loop: the time a stream's consumer takes the next piece is the link's pace."""

    def __init__(self, mode: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.always = mode == "always"
        self.packing = True  # until the pace says the link is fast
        self._clock = clock
        self._paced: deque[tuple[float, int]] = deque()  # (when, wire bytes) past each stream's burst
        self._lock = threading.Lock()
        self.plain_bytes = 0  # of the stream, inflated
        self.packed_bytes = 0  # of it that went packed, inflated

    def pack(self, data: bytes) -> bytes:
        """``data`` as the piece to send: Packed when that pays, else itself."""
        piece: bytes = data
        if data and (self.always or self.packing):
            z = gzip_compressor()
            member = z.compress(data) + z.flush()
            if self.always or len(member) < len(data) * MAX_RATIO:
                piece = Packed.of(member, len(data))
        with self._lock:
            self.plain_bytes += len(data)
            self.packed_bytes += len(data) if isinstance(piece, Packed) else 0
        return piece

    def meter(self) -> Callable[[bytes], None]:
        """One stream's meter: call it with each piece as the stream's consumer takes it."""
        taken = 0

        def took(piece: bytes) -> None:
            nonlocal taken
            n = len(piece)  # what the link carries, not what it stands for
            taken += n
            if taken > BURST:  # the burst went into buffers, not over the link
                self._pace(n)
        return took

    def _pace(self, n: int) -> None:
        now = self._clock()
        q = self._paced
        q.append((now, n))
        while len(q) > 3 and now - q[1][0] >= TRAILING:  # a thin link's few big pieces stay in view
            q.popleft()
        span = now - q[0][0]
        if len(q) >= 3 and span >= TRAILING / 2:
            rate = (sum(b for _, b in q) - q[0][1]) / span  # the first piece only starts the clock
            self.packing = rate < FAST_LINK

    @property
    def share(self) -> float:
        """How much of the stream went packed (0..1)."""
        return self.packed_bytes / self.plain_bytes if self.plain_bytes else 0.0


def packer(mode: str, delta: Delta, unpacks: bool) -> Packer | None:
    """The piece-by-piece packer for this upload, or None: a plain stream, or (not
    ``unpacks``) the whole-stream choice of :func:`wanted`."""
    if mode == "never" or not unpacks:
        return None
    if mode == "auto" and delta.send_bytes < MIN_BYTES:
        return None
    return Packer(mode)
