"""A TCP proxy that behaves like a WAN link: every chunk is delayed by a fixed one-way time.

These machines' kernel has no ``sch_netem``, so ``tc ... netem delay`` is not available.
This proxy sits in front of a TCP server (the testbed's sshd) and delivers every chunk
``one_way`` seconds after it arrived, in each direction, so a request/response costs
``RTT = 2 * one_way``.

Like a real link (and unlike ``await sleep(delay); write(chunk)`` in a loop) the delay is
*not* serialized: each direction keeps a FIFO of ``(deliver_at, chunk)`` and a timer that
fires at the head's ``deliver_at``, so many chunks are in flight at once and throughput is
preserved. Order is preserved. Back-pressure is kept: when the receiving side stops
reading, delivery pauses; when too many bytes are in flight, the sending side is paused.

The TCP handshake is modelled too (``handshake=True``, the default): on a real link the
client's first byte can only reach the server one RTT after ``connect()`` started (SYN,
SYN-ACK, then data), so a new connection costs one extra RTT. Here the upstream
connection is opened ``2 * one_way`` after the client connected and nothing is delivered
upstream before ``3 * one_way``. This matters when comparing one-connection-per-command
scripts with a tool that reuses one connection.

A bandwidth cap (``rate=`` bytes/s, CLI ``--rate-mbit``) puts a transmitter in front of
the delay, per direction and per listener (one host's link, shared by all its
connections): a ``TokenBucket`` gives each chunk its departure time (the link is busy
``len/rate`` per chunk, with a small burst after idle), and the chunk is delivered
``one_way`` after it departed. The delay itself is still not serialized: while one chunk
propagates, the next is already being sent. With a cap, the bytes in flight per direction
are bounded by about two bandwidth-delay products (the wire plus a router queue of one
BDP), so a bulk transfer does not queue seconds of data in front of everything else.

In-process::

    async with LatencyProxy(target_port, one_way=0.05, rate=50e6 / 8) as p:
        connect_to("127.0.0.1", p.port)
        ...
        p.sever()          # cut every open connection at once (fault injection)

CLI (one process, one listener per ``--target``; prints ``LISTEN <port> -> <target>``
lines on stdout, then ``READY``, and runs until SIGTERM/SIGINT)::

    python -m benchmarks.latency_proxy --target 127.0.0.1:2222 --delay-ms 50 [--rate-mbit 50]

``--delay-ms`` is the one-way delay (RTT = 2x); ``--rate-mbit`` caps each direction of
each listener (default: no cap). Only loopback targets are accepted by the
CLI unless ``--allow-non-loopback`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import signal
import sys
from typing import Deque

__all__ = ["LatencyProxy", "TokenBucket", "main"]

_EOF = object()  # queue marker: half-close (write_eof) the destination
_CLOSE = object()  # queue marker: the source socket is gone; close the destination
HIGH_WATER = 16 * 1024 * 1024  # bytes in flight per direction before the sender is paused
LOW_WATER = 4 * 1024 * 1024
CAPPED_MIN_WATER = 512 * 1024  # in-flight floor for a capped direction (see _Direction)
BURST = 16 * 1024  # token bucket depth: what an idle link sends at once


class TokenBucket:
    """A link's transmitter at ``rate`` bytes/s, as pure arithmetic on the times it is
    given (so it is testable without a clock).

    The bucket fills at ``rate`` up to ``burst`` bytes while the link is idle; a chunk
    departs when the bucket holds its bytes (a chunk larger than what is there waits for
    the rest). Chunks that arrive while the link is busy queue behind the one before:
    over any interval at most ``burst + rate * interval`` bytes depart.
    """

    def __init__(self, rate: float, burst: int = BURST) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 bytes/s, not {rate}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at: float | None = None  # when ``tokens`` was last computed (= link free from)
        self.sent = 0

    def depart(self, now: float, nbytes: int) -> float:
        """The departure time of ``nbytes`` arriving at ``now``; books the link until then."""
        t = now if self.at is None else max(now, self.at)
        tokens = self.tokens if self.at is None else min(self.burst, self.tokens + (t - self.at) * self.rate)
        self.sent += nbytes
        if tokens >= nbytes:
            self.tokens, self.at = tokens - nbytes, t
            return t
        t += (nbytes - tokens) / self.rate
        self.tokens, self.at = 0.0, t
        return t


class _Direction:
    """One direction of one connection: a timestamped FIFO delivered by a timer."""

    def __init__(self, conn: "_Conn", bucket: TokenBucket | None = None) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.bucket = bucket  # shared by every connection of the listener (one link)
        self.high, self.low = HIGH_WATER, LOW_WATER
        if bucket is not None:  # wire + one BDP of router queue (see the module doc)
            self.high = max(CAPPED_MIN_WATER, int(4 * bucket.rate * conn.proxy.one_way))
            self.low = self.high // 2
        self.queue: Deque[tuple[float, object]] = collections.deque()
        self.queued = 0
        self.src: asyncio.Transport | None = None  # where the bytes come from
        self.dst: asyncio.Transport | None = None  # where they go (None until connected)
        self.not_before = 0.0  # earliest delivery time (handshake model)
        self.timer: asyncio.TimerHandle | None = None
        self.dst_paused = False
        self.src_paused = False
        self.eof_sent = False
        self.closed = False
        self.bytes = 0

    def push(self, item: object) -> None:
        if self.closed:
            return
        now = self.loop.time()
        if self.bucket is not None and isinstance(item, bytes):
            now = self.bucket.depart(now, len(item))
        at = now + self.conn.proxy.one_way
        self.queue.append((at, item))
        if isinstance(item, bytes):
            self.queued += len(item)
            self.bytes += len(item)
            if self.queued > self.high and not self.src_paused and self.src is not None:
                self.src_paused = True
                try:
                    self.src.pause_reading()
                except (RuntimeError, AttributeError):
                    pass
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None or not self.queue or self.closed:
            return
        if self.dst is None or self.dst_paused:
            return  # re-armed by set_dst() / resume()
        when = max(self.queue[0][0], self.not_before)
        self.timer = self.loop.call_at(when, self._deliver)

    def _deliver(self) -> None:
        self.timer = None
        if self.closed or self.dst is None:
            return
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now and now >= self.not_before:
            if self.dst_paused or self.closed:
                break
            _, item = self.queue.popleft()
            if item is _EOF:
                self.eof_sent = True
                if self.dst.can_write_eof():
                    try:
                        self.dst.write_eof()
                    except (OSError, RuntimeError):
                        pass
                self.conn.check_half_closed()
            elif item is _CLOSE:
                self.dst.close()
            else:
                assert isinstance(item, bytes)
                self.queued -= len(item)
                self.dst.write(item)
        if self.src_paused and self.queued < self.low and self.src is not None:
            self.src_paused = False
            try:
                self.src.resume_reading()
            except (RuntimeError, AttributeError):
                pass
        self._arm()

    def set_dst(self, dst: asyncio.Transport) -> None:
        self.dst = dst
        self._arm()

    def pause(self) -> None:
        self.dst_paused = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def resume(self) -> None:
        self.dst_paused = False
        self._arm()

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0


class _Side(asyncio.Protocol):
    """Protocol for one socket of a proxied connection (client side or upstream side)."""

    def __init__(self, conn: "_Conn", inbound: _Direction, outbound: _Direction) -> None:
        self.conn = conn
        self.inbound = inbound  # bytes read from this socket go here
        self.outbound = outbound  # bytes written to this socket come from here
        self.transport: asyncio.Transport | None = None
        self.gone = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.conn.done:
            transport.abort()
            return
        self.inbound.src = transport
        self.outbound.set_dst(transport)

    def data_received(self, data: bytes) -> None:
        self.inbound.push(data)

    def eof_received(self) -> bool:
        self.inbound.push(_EOF)
        return True  # keep our sending half open until the other side is done too

    def pause_writing(self) -> None:
        self.outbound.pause()

    def resume_writing(self) -> None:
        self.outbound.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.conn.lost(self)


class _Conn:
    def __init__(self, proxy: "LatencyProxy", loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop
        self.up = _Direction(self, proxy.buckets.get("up"))  # client -> target
        self.down = _Direction(self, proxy.buckets.get("down"))  # target -> client
        self.client = _Side(self, inbound=self.up, outbound=self.down)
        self.target = _Side(self, inbound=self.down, outbound=self.up)
        self.connect_task: asyncio.Task | None = None
        self.done = False

    def lost(self, side: _Side) -> None:
        """One socket is gone. Like a real link, what it sent before is still delivered
        to the other end, then the other end is closed (the FIN/RST travels too)."""
        if self.done:
            return
        if side is self.client:
            self.up.src = None
            self.down.close()  # nothing can reach the client any more
            if self.target.gone:
                self.finish(abort=False)
            else:
                self.up.push(_CLOSE)
        else:
            self.down.src = None
            self.up.close()
            if self.client.gone:
                self.finish(abort=False)
            else:
                self.down.push(_CLOSE)

    def check_half_closed(self) -> None:
        if self.up.eof_sent and self.down.eof_sent:
            self.finish(abort=False)  # both halves closed cleanly

    def finish(self, abort: bool) -> None:
        if self.done:
            return
        self.done = True
        self.up.close()
        self.down.close()
        if self.connect_task is not None and not self.connect_task.done():
            self.connect_task.cancel()
        for side in (self.client, self.target):
            t = side.transport
            if t is not None and not side.gone:
                t.abort() if abort else t.close()
        self.proxy._retire(self)


class LatencyProxy:
    """Listen on ``listen_host:listen_port`` (0 = any free port), forward to ``target``.

    ``one_way`` (seconds) may be changed while running; it applies to chunks that arrive
    afterwards. ``rate`` (bytes/s, None = no cap) caps each direction of this listener
    (``buckets["up"]``, ``buckets["down"]``: one link, shared by all its connections).
    Counters: ``connections`` (accepted so far), ``severed``, ``bytes_up``
    (client -> target) and ``bytes_down``.
    """

    def __init__(
        self,
        target_port: int,
        one_way: float = 0.05,
        *,
        target_host: str = "127.0.0.1",
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        handshake: bool = True,
        rate: float | None = None,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.one_way = float(one_way)
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.handshake = handshake
        self.rate = rate
        self.buckets: dict[str, TokenBucket] = (
            {"up": TokenBucket(rate), "down": TokenBucket(rate)} if rate else {})
        self.port: int = 0
        self.connections = 0
        self.severed = 0
        self._bytes_up = 0
        self._bytes_down = 0
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> "LatencyProxy":
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            self._accept, self.listen_host, self.listen_port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and close every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for c in list(self._conns):
            c.finish(abort=True)
        if server is not None:
            try:
                await asyncio.wait_for(server.wait_closed(), 2)
            except Exception:
                pass

    async def __aenter__(self) -> "LatencyProxy":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ controls
    def sever(self) -> int:
        """Cut every open connection at once: both sockets are reset, nothing in flight
        is delivered. The listener stays up, so new connections work. Returns how many
        connections were cut."""
        conns = list(self._conns)
        for c in conns:
            c.finish(abort=True)
        self.severed += len(conns)
        return len(conns)

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def bytes_up(self) -> int:
        return self._bytes_up + sum(c.up.bytes for c in self._conns)

    @property
    def bytes_down(self) -> int:
        return self._bytes_down + sum(c.down.bytes for c in self._conns)

    # ------------------------------------------------------------------ internals
    def _accept(self) -> asyncio.Protocol:
        assert self._loop is not None
        conn = _Conn(self, self._loop)
        self._conns.add(conn)
        self.connections += 1
        if self.handshake:
            conn.up.not_before = self._loop.time() + 3 * self.one_way
        conn.connect_task = self._loop.create_task(self._connect(conn))
        return conn.client

    async def _connect(self, conn: _Conn) -> None:
        assert self._loop is not None
        try:
            if self.handshake and self.one_way > 0:
                await asyncio.sleep(2 * self.one_way)
            if conn.done:
                return
            await self._loop.create_connection(lambda: conn.target, self.target_host, self.target_port)
        except asyncio.CancelledError:
            return
        except OSError:
            conn.target.gone = True
            conn.finish(abort=True)  # target refused: reset the client, like a real RST

    def _retire(self, c: _Conn) -> None:
        if c in self._conns:
            self._conns.discard(c)
            self._bytes_up += c.up.bytes
            self._bytes_down += c.down.bytes


# ---------------------------------------------------------------------- CLI
def _parse_target(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(args: argparse.Namespace) -> int:
    proxies = []
    for i, (host, port) in enumerate(args.target):
        lport = args.listen_port + i if args.listen_port else 0
        rate = args.rate_mbit * 1e6 / 8 if args.rate_mbit else None
        p = LatencyProxy(port, args.delay_ms / 1000.0, target_host=host,
                         listen_host=args.listen, listen_port=lport,
                         handshake=not args.no_handshake, rate=rate)
        await p.start()
        proxies.append(p)
        cap = f" rate={args.rate_mbit:g}Mbit/s" if rate else ""
        print(f"LISTEN {p.port} -> {host}:{port} one_way={args.delay_ms}ms{cap}", flush=True)
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGUSR1: sever every connection of every listener (for fault tests driving the CLI)
    loop.add_signal_handler(signal.SIGUSR1, lambda: [p.sever() for p in proxies])
    await stop.wait()
    for p in proxies:
        await p.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.latency_proxy",
        description="TCP proxy adding a fixed one-way delay per chunk (RTT = 2 x delay).",
    )
    ap.add_argument("--target", action="append", type=_parse_target, required=True,
                    help="HOST:PORT to forward to (repeat for several listeners)")
    ap.add_argument("--delay-ms", type=float, default=50.0, help="one-way delay in ms (default 50)")
    ap.add_argument("--rate-mbit", type=float, default=0.0,
                    help="cap each direction of each listener at this many Mbit/s (default: no cap)")
    ap.add_argument("--listen", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    ap.add_argument("--listen-port", type=int, default=0,
                    help="first listen port (default 0: a free port per target)")
    ap.add_argument("--no-handshake", action="store_true",
                    help="do not model the TCP handshake's extra RTT on new connections")
    ap.add_argument("--allow-non-loopback", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rate_mbit < 0:
        ap.error(f"--rate-mbit must be 0 (no cap) or more, not {args.rate_mbit:g}")
    if not args.allow_non_loopback:
        for host, _ in args.target:
            if not _is_loopback(host):
                ap.error(f"target {host} is not a loopback address")
        if not _is_loopback(args.listen):
            ap.error(f"listen address {args.listen} is not a loopback address")
    try:
        return asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
