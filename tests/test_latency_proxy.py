"""The benchmarks' latency proxy (benchmarks/latency_proxy.py): delay, integrity, sever().

Timing assertions are deliberately loose (a noisy 2-core machine): they check that the
delay is there and is not serialized, not that it is precise. The bandwidth cap is checked
on its schedule (the departure times the token bucket handed out), not on a wall clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.latency_proxy import BURST, LatencyProxy, TokenBucket  # noqa: E402


async def _echo_server() -> tuple[asyncio.base_events.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, msg: bytes) -> float:
    t0 = time.perf_counter()
    writer.write(msg)
    await writer.drain()
    got = await asyncio.wait_for(reader.readexactly(len(msg)), 10)
    assert got == msg
    return time.perf_counter() - t0


async def test_rtt_is_twice_the_one_way_delay() -> None:
    server, port = await _echo_server()
    async with server:
        async with LatencyProxy(port, one_way=0.05) as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            # first exchange also pays the modelled TCP handshake (one more RTT)
            first = await _roundtrip(reader, writer, b"hello")
            rtts = [await _roundtrip(reader, writer, b"ping %d" % i) for i in range(5)]
            writer.close()
            rtts.sort()
            median = rtts[len(rtts) // 2]
            assert 0.090 <= median <= 0.200, rtts
            assert 0.180 <= first <= 0.400, first  # handshake RTT + the request's RTT
            assert p.connections == 1


async def test_delay_is_not_serialized() -> None:
    """20 chunks sent 10 ms apart arrive ~one RTT after the first, not 20 RTTs later."""
    server, port = await _echo_server()
    async with server:
        async with LatencyProxy(port, one_way=0.05, handshake=False) as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            t0 = time.perf_counter()
            for i in range(20):
                writer.write(b"x" * 100)
                await writer.drain()
                await asyncio.sleep(0.01)
            await asyncio.wait_for(reader.readexactly(2000), 10)
            elapsed = time.perf_counter() - t0
            writer.close()
            # sends take ~0.2 s; the last chunk arrives ~0.1 s after it was sent
            assert elapsed < 0.6, elapsed


async def test_bytes_pass_unchanged_both_ways() -> None:
    server, port = await _echo_server()
    payload = os.urandom(1024 * 1024)
    async with server:
        async with LatencyProxy(port, one_way=0.05) as p:
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)

            async def send() -> None:
                for i in range(0, len(payload), 7919):  # odd chunk size
                    writer.write(payload[i:i + 7919])
                    await writer.drain()
                writer.write_eof()

            sender = asyncio.create_task(send())
            got = await asyncio.wait_for(reader.read(), 30)  # until EOF (half-close relayed)
            await sender
            writer.close()
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()
            assert p.bytes_up == len(payload)
            assert p.bytes_down == len(payload)


async def test_sever_closes_client_sockets() -> None:
    server, port = await _echo_server()
    async with server:
        async with LatencyProxy(port, one_way=0.02) as p:
            conns = [await asyncio.open_connection("127.0.0.1", p.port) for _ in range(3)]
            for r, w in conns:
                await _roundtrip(r, w, b"up")
            assert p.open_connections == 3
            assert p.sever() == 3
            for r, w in conns:
                with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                    # a reset client socket: read gives EOF or a reset, never more data
                    data = await asyncio.wait_for(r.read(10), 5)
                    if data == b"":
                        raise asyncio.IncompleteReadError(b"", 1)
                w.close()
            assert p.open_connections == 0
            assert p.severed == 3
            # the listener is still up: a new connection works
            r, w = await asyncio.open_connection("127.0.0.1", p.port)
            await _roundtrip(r, w, b"again")
            w.close()


async def test_refused_target_closes_client() -> None:
    server, port = await _echo_server()
    server.close()
    await server.wait_closed()
    async with LatencyProxy(port, one_way=0.01) as p:
        r, w = await asyncio.open_connection("127.0.0.1", p.port)
        w.write(b"x")
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            data = await asyncio.wait_for(r.read(10), 5)
            if data == b"":
                raise asyncio.IncompleteReadError(b"", 1)
        w.close()


def test_cli_serves_and_stops(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.latency_proxy", "--target", f"127.0.0.1:{port}",
             "--delay-ms", "10"],
            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("LISTEN "), line
            lport = int(line.split()[1])
            assert proc.stdout.readline().strip() == "READY"
            with socket.create_connection(("127.0.0.1", lport), timeout=5) as c:
                conn, _ = s.accept()
                c.sendall(b"ping")
                conn.settimeout(5)
                assert conn.recv(4) == b"ping"
                conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


# ------------------------------------------------------------------ bandwidth cap
def test_token_bucket_paces_a_backlog_at_the_rate() -> None:
    """100 chunks of 64 KiB all arriving at t=0: the first BURST bytes go at once, then
    the link is busy len/rate per chunk, back to back."""
    rate = 1_000_000.0  # bytes/s
    b = TokenBucket(rate)
    n = 64 * 1024
    departs = [b.depart(0.0, n) for _ in range(100)]
    assert departs[0] == (n - BURST) / rate
    gaps = [b2 - b1 for b1, b2 in zip(departs, departs[1:])]
    assert all(abs(g - n / rate) < 1e-9 for g in gaps), gaps[:3]
    assert abs(departs[-1] - (100 * n - BURST) / rate) < 1e-9
    assert b.sent == 100 * n


def test_token_bucket_refills_while_idle_but_only_up_to_the_burst() -> None:
    rate = 1_000_000.0
    b = TokenBucket(rate, burst=10_000)
    assert b.depart(0.0, 10_000) == 0.0  # a full bucket sends a burst at once
    assert b.depart(0.0, 5_000) == 0.005  # then it waits for tokens
    # idle for 10 s: the bucket holds at most `burst`, not 10 s worth of bytes
    assert b.depart(10.005, 10_000) == 10.005
    assert abs(b.depart(10.005, 1_000_000) - 11.005) < 1e-9
    # small chunks arriving slower than the rate are never delayed
    t = 20.0
    for i in range(50):
        assert b.depart(t + i * 0.01, 1_000) == t + i * 0.01


def test_token_bucket_bounds_any_interval() -> None:
    """Whatever the arrivals, bytes departed in [0, t] <= burst + rate * t."""
    import random

    rng = random.Random(7)
    rate = 2_000_000.0
    b = TokenBucket(rate)
    now, sched = 0.0, []
    for _ in range(2000):
        now += rng.expovariate(400.0)  # bursty arrivals, on average 400 chunks/s
        n = rng.randint(1, 32 * 1024)
        sched.append((b.depart(now, n), n))
    done = 0
    for t, n in sched:
        done += n
        assert done <= BURST + rate * t + 1e-6


async def _sink_server() -> tuple[asyncio.base_events.Server, int, list[bytes], asyncio.Event]:
    got: list[bytes] = []
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            got.append(data)
        finished.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], got, finished


async def test_capped_transfer_runs_at_the_rate() -> None:
    """2 MB through a 20 Mbit/s listener: every byte arrives, and the schedule the proxy
    used (each chunk's arrival and departure, recorded from its token bucket) carries it
    at the rate: 2 MB in ~0.8 s of link time, never faster than the cap."""
    rate = 20e6 / 8
    payload = os.urandom(2 * 1024 * 1024)
    server, port, got, finished = await _sink_server()
    async with server:
        async with LatencyProxy(port, one_way=0.01, handshake=False, rate=rate) as p:
            up = p.buckets["up"]
            sched: list[tuple[float, float, int]] = []
            real = up.depart

            def recording(now: float, nbytes: int) -> float:
                t = real(now, nbytes)
                sched.append((now, t, nbytes))
                return t

            up.depart = recording  # type: ignore[method-assign]
            reader, writer = await asyncio.open_connection("127.0.0.1", p.port)
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            await asyncio.wait_for(finished.wait(), 30)
            writer.close()
    assert b"".join(got) == payload
    assert sum(n for _, _, n in sched) == len(payload) == up.sent
    first_arrival, last_departure = sched[0][0], sched[-1][1]
    span = last_departure - first_arrival
    assert span >= (len(payload) - BURST) / rate - 1e-9  # never faster than the cap
    throughput = len(payload) / span
    assert 0.8 * rate <= throughput <= rate * (1 + BURST / len(payload)), throughput / rate
    # departures never go backwards and never precede their chunk's arrival
    assert all(d >= a for a, d, _ in sched)
    assert all(d2 >= d1 for (_, d1, _), (_, d2, _) in zip(sched, sched[1:]))
    # the other direction of the same listener has its own bucket, untouched here
    assert p.buckets["down"].sent == 0


def test_cli_rejects_a_bad_rate() -> None:
    import subprocess

    cp = subprocess.run([sys.executable, "-m", "benchmarks.latency_proxy", "--target", "127.0.0.1:1",
                         "--rate-mbit", "-5"], cwd=Path(__file__).resolve().parents[1],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 2 and "--rate-mbit" in cp.stderr
