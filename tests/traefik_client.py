"""A load client that retries exactly like Traefik v3's retry middleware (importable test helper).

Where no Traefik binary is installed this client stands in for the hop "Traefik -> app"
with the retry settings capview generates, re-implemented here from the sources (NOT from
capview.engine.traefik, so it checks the planner independently); with ``attempts=1`` it
is a plain load client for tests that go through a real Traefik:

* traefik/traefik v3 ``pkg/middlewares/retry/retry.go``: ``attempts`` counts the first
  try; between tries it waits ``backoff.NextBackOff()`` of a cenkalti/backoff v4
  ``ExponentialBackOff`` with ``InitialInterval = initialInterval`` and
  ``Multiplier = 2 ** (1 / (attempts - 1))`` (ZeroBackOff when attempts < 2 or
  initialInterval <= 0). It retries only when nothing was sent to the backend (a refused
  or failed dial); once request bytes are written, a failure is final (502).
* cenkalti/backoff v4 ``exponential.go``: ``RandomizationFactor = 0.5``: each wait is
  uniform in ``[current * 0.5, current * 1.5]``; then ``current *= Multiplier``, capped
  at ``MaxInterval = 60 s``.

``jitter="shortest"`` draws every wait at its minimum (the worst case the planner claims
to cover); ``"random"`` draws like Go's ``rand.Float64()``.

Usage (also from a real-deploy test)::

    stop = asyncio.Event()
    task = asyncio.create_task(hammer("http://127.0.0.1:8080/", plan, stop))
    ...  # switch releases
    stop.set()
    stats = await task
    assert stats.failed == 0, stats.describe()
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

RANDOMIZATION_FACTOR = 0.5
MAX_INTERVAL = 60.0


class DialError(OSError):
    """The TCP connection could not be made: nothing was sent (Traefik retries these)."""


class TraefikBackOff:
    """cenkalti/backoff v4 ExponentialBackOff as Traefik's ``retry.newBackOff()`` sets it up."""

    def __init__(self, attempts: int, initial_interval: float, *, jitter: str = "random",
                 rng: random.Random | None = None) -> None:
        if jitter not in ("random", "shortest", "longest"):
            raise ValueError(f"jitter {jitter!r}")
        self.zero = attempts < 2 or initial_interval <= 0
        self.multiplier = 2 ** (1 / (attempts - 1)) if attempts >= 2 else 1.0
        self.current = float(initial_interval)
        self.jitter = jitter
        self.rng = rng or random.Random()

    def next_backoff(self) -> float:
        if self.zero:
            return 0.0
        delta = RANDOMIZATION_FACTOR * self.current
        lo, hi = self.current - delta, self.current + delta
        r = {"shortest": 0.0, "longest": 1.0}.get(self.jitter)
        if r is None:
            r = self.rng.random()
        wait = lo + r * (hi - lo)
        if self.current >= MAX_INTERVAL / self.multiplier:
            self.current = MAX_INTERVAL
        else:
            self.current *= self.multiplier
        return wait


def _attempts_interval(plan: Any) -> tuple[int, float]:
    return int(plan.attempts), float(plan.initial_interval)


async def http_get(url: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTP/1.1 GET on a fresh connection (``Connection: close``).

    Raises DialError when the connection cannot be made (retryable, like Traefik), any
    other OSError/TimeoutError/ValueError once the request may have reached the app.
    """
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        raise DialError(f"dial {host}:{port}: {e!r}") from e
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"incomplete response ({len(data)} bytes)")
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"bad status line {head[:60]!r}")
    return int(parts[1]), body


async def get_with_retry(url: str, plan: Any, *, jitter: str = "random", rng: random.Random | None = None,
                         timeout: float = 10.0) -> tuple[int, bytes, int]:
    """GET through a Traefik-style retry: ``(status, body, tries)``; 502 when all tries
    were refused, the error re-raised when it happened after the request was sent."""
    attempts, interval = _attempts_interval(plan)
    backoff = TraefikBackOff(attempts, interval, jitter=jitter, rng=rng)
    tries = 0
    while True:
        tries += 1
        try:
            status, body = await http_get(url, timeout=timeout)
            return status, body, tries
        except DialError:
            if tries >= max(1, attempts):
                return 502, b"Bad Gateway", tries
        await asyncio.sleep(backoff.next_backoff())


@dataclass
class Stats:
    sent: int = 0  # client requests (each may take several tries)
    ok: int = 0  # answered 2xx
    failed: int = 0  # 502 after the last try, a non-2xx, or an error after sending
    retried: int = 0  # requests that needed more than one try (and the window was hit)
    tries: int = 0  # connection attempts in total
    max_tries: int = 0
    max_latency: float = 0.0  # seconds, slowest client request
    latencies: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)

    def add(self, status: int | None, tries: int, latency: float, error: str | None = None) -> None:
        self.sent += 1
        self.tries += tries
        self.max_tries = max(self.max_tries, tries)
        self.max_latency = max(self.max_latency, latency)
        self.latencies.append(latency)
        if tries > 1:
            self.retried += 1
        if status is not None and 200 <= status < 300:
            self.ok += 1
        else:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(error or f"HTTP {status} after {tries} tries")

    def describe(self) -> str:
        return (f"sent={self.sent} ok={self.ok} failed={self.failed} retried={self.retried} "
                f"tries={self.tries} max_tries={self.max_tries} max_latency={self.max_latency:.3f}s"
                + (f" errors={self.errors[:5]}" if self.errors else ""))


async def hammer(url: str, plan: Any, stop_event: asyncio.Event, *, concurrency: int = 4,
                 pace: float = 0.005, jitter: str = "random", seed: int | None = None,
                 timeout: float = 10.0) -> Stats:
    """Send GETs to ``url`` from ``concurrency`` workers until ``stop_event`` is set, each
    through the Traefik-style retry of ``plan`` (anything with ``attempts`` and
    ``initial_interval`` seconds, e.g. capview's RetryPlan). ``pace`` seconds between a
    worker's requests. Requests in flight when the event is set are completed."""
    stats = Stats()
    rng = random.Random(seed)

    async def worker() -> None:
        while not stop_event.is_set():
            t0 = time.monotonic()
            try:
                status, _, tries = await get_with_retry(url, plan, jitter=jitter, rng=rng, timeout=timeout)
                stats.add(status, tries, time.monotonic() - t0)
            except (OSError, ValueError, asyncio.TimeoutError) as e:
                stats.add(None, 1, time.monotonic() - t0, f"{type(e).__name__}: {e}")
            if pace:
                await asyncio.sleep(pace)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stats


def _in_ranges(status: int, ranges: Iterable[str]) -> bool:
    for r in ranges:
        lo, _, hi = r.partition("-")
        if int(lo) <= status <= int(hi or lo):
            return True
    return False


async def get_through_errors(app_url: str, maintenance_base: str, *, query: str = "/maintenance.html",
                             status: Iterable[str] = ("502-504",), timeout: float = 10.0) -> tuple[int, bytes]:
    """A stand-in for Traefik's errors middleware in front of the app (no retry):

    the app's answer passes through unless its status is in ``status``; a refused dial is
    the 502 Traefik's proxy produces. Caught codes are answered with the body of
    ``maintenance_base + query`` and the ORIGINAL status (Traefik's codeModifier keeps it).
    """
    try:
        code, body = await http_get(app_url, timeout=timeout)
    except DialError:
        code, body = 502, b"Bad Gateway"
    if _in_ranges(code, status):
        _, page = await http_get(maintenance_base.rstrip("/") + query, timeout=timeout)
        return code, page
    return code, body
