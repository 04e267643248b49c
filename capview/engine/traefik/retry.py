"""Retry sizing: the switch windows capview recorded -> Traefik's retry middleware.

See the package docstring for what Traefik and cenkalti/backoff do with ``attempts``
and ``initialInterval``; this module simulates that arithmetic to size them.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable

from capview.engine.history import parse_history



q = shlex.quote

DOCS = {
    "file": "https://doc.traefik.io/traefik/v3.8/reference/routing-configuration/other-providers/file/",
    "router": "https://doc.traefik.io/reference/routing-configuration/http/routing/router",
    "rules": "https://doc.traefik.io/traefik/v3.8/reference/routing-configuration/http/routing/rules-and-priority/",
    "service": "https://doc.traefik.io/traefik/reference/routing-configuration/http/load-balancing/service",
    "retry": "https://doc.traefik.io/traefik/middlewares/http/retry/",
    "errors": "https://doc.traefik.io/traefik/v3.4/reference/routing-configuration/http/middlewares/errorpages",
    "retry_source": "https://github.com/traefik/traefik/blob/master/pkg/middlewares/retry/retry.go",
    "backoff_source": "https://github.com/cenkalti/backoff/blob/v4/exponential.go",
}

# cenkalti/backoff v4 defaults that Traefik leaves untouched.
RANDOMIZATION_FACTOR = 0.5
BACKOFF_MAX_INTERVAL = 60.0  # seconds; caps the (pre-randomization) interval

MIN_SAMPLES = 3  # fewer recorded windows than this: assume default_window
HISTORY_WINDOW = 50  # only the most recent recorded windows count
MAX_ATTEMPTS = 10  # beyond this the interval grows instead of the attempts
MAX_HIDEABLE_WINDOW = 10.0  # seconds; longer windows: recommend maintenance mode

MAINTENANCE_FILE = "maintenance.html"
MAINTENANCE_QUERY = "/" + MAINTENANCE_FILE
MAINTENANCE_STATUS = ("502-504",)  # 502: dial refused; 503: no server; 504: timeout

APP_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


# --------------------------------------------------------------------------- retry math


def p95(values: Iterable[float]) -> float:
    """95th percentile by the nearest-rank method: an observed value, never interpolated.

    ``sorted[ceil(0.95 * n) - 1]``; for n <= 20 that is the largest or second largest.
    """
    xs = sorted(values)
    if not xs:
        raise ValueError("p95 of no values")
    return xs[max(0, math.ceil(0.95 * len(xs)) - 1)]


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def backoff_bounds(attempts: int, initial_interval: float) -> list[tuple[float, float, float]]:
    """The waits Traefik's retry makes between tries: ``[(shortest, nominal, longest)]``.

    ``attempts - 1`` waits, in seconds, mirroring cenkalti/backoff v4 as Traefik configures
    it (see the module docstring), in Go's integer nanoseconds with its truncations.
    ZeroBackOff (all zeros) when ``attempts < 2`` or ``initial_interval <= 0``.
    """
    if attempts < 2:
        return []
    if initial_interval <= 0:
        return [(0.0, 0.0, 0.0)] * (attempts - 1)
    m = math.pow(2, 1 / (attempts - 1))
    max_ns = _ns(BACKOFF_MAX_INTERVAL)
    cur = _ns(initial_interval)
    out = []
    for _ in range(attempts - 1):
        delta = RANDOMIZATION_FACTOR * cur
        lo = int(cur - delta)  # rand.Float64() == 0
        hi = int(cur + delta + 1)  # rand.Float64() -> 1 (exclusive); the +1 is Go's
        out.append((lo / 1e9, cur / 1e9, hi / 1e9))
        cur = max_ns if cur >= max_ns / m else int(cur * m)
    return out


def _interval_for(target: float, attempts: int) -> float:
    """Smallest whole-millisecond initialInterval whose worst-case cover reaches ``target``."""
    m = math.pow(2, 1 / (attempts - 1))
    ms = max(1, math.ceil(2 * target * (m - 1) * 1000))
    while sum(lo for lo, _, _ in backoff_bounds(attempts, ms / 1000)) < target:
        ms += 1
    return ms / 1000


@dataclass(frozen=True)
class RetryPlan:
    """Traefik retry settings sized so the worst-case backoff outlasts the p95 switch window."""

    p95: float  # seconds: the window to hide (recorded p95, or the assumed default)
    samples: int  # recorded windows used
    assumed: bool  # True: fewer than MIN_SAMPLES recorded, p95 is default_window
    margin: float  # seconds added on top of p95
    attempts: int  # Traefik retry.attempts (counts the first try)
    initial_interval: float  # seconds; emitted as whole milliseconds
    min_cover: float  # worst case: every wait drawn at -50%
    nominal_cover: float
    max_cover: float  # every wait at +50%: how long a request may hang before a 502
    max_wait: float  # longest single wait: the most a request waits after the app is back
    max_window: float = MAX_HIDEABLE_WINDOW
    warning: str | None = None
    waits: tuple[tuple[float, float, float], ...] = field(default=(), repr=False)

    @property
    def target(self) -> float:
        return self.p95 + self.margin

    @property
    def multiplier(self) -> float:
        return math.pow(2, 1 / (self.attempts - 1)) if self.attempts > 1 else 1.0

    @property
    def interval_str(self) -> str:
        """initialInterval as a Go duration (time.ParseDuration), e.g. ``"184ms"``."""
        return f"{round(self.initial_interval * 1000)}ms"

    @property
    def hideable(self) -> bool:
        """Whether retries are a sane way to hide this window (p95 <= max_window)."""
        return self.p95 <= self.max_window

    def summary(self) -> list[str]:
        """Human lines saying what was assumed and what the retry covers."""
        if self.assumed:
            src = (f"ASSUMED {self.p95:.2f} s: only {self.samples} recorded switch window(s), "
                   f"need {MIN_SAMPLES} for a p95")
        else:
            src = f"{self.p95:.3f} s = p95 of {self.samples} recorded switch windows (nearest rank)"
        return [
            f"switch downtime: {src}",
            f"retry: attempts {self.attempts} (1 try + {self.attempts - 1} retries), "
            f"initialInterval {self.interval_str}, multiplier 2^(1/{max(1, self.attempts - 1)}) = {self.multiplier:.4f}",
            f"backoff covers {self.min_cover:.3f} s at worst (every wait -50%) >= p95 + {self.margin:.2f} s margin; "
            f"nominal {self.nominal_cover:.3f} s; a request hangs at most {self.max_cover:.3f} s before a 502",
        ]


def retry_plan(
    downtimes: Iterable[float],
    *,
    default_window: float = 2.0,
    min_margin: float = 0.5,
    margin_ratio: float = 0.25,
    preferred_interval: float = 0.1,
    max_attempts: int = MAX_ATTEMPTS,
    max_window: float = MAX_HIDEABLE_WINDOW,
) -> RetryPlan:
    """Size Traefik's retry from recorded switch windows (seconds).

    * window = p95 (nearest rank) of the samples, or ``default_window`` (flagged
      ``assumed``) with fewer than ``MIN_SAMPLES``.
    * margin = max(``min_margin``, ``margin_ratio`` * window). The recorded window ends when
      the start command returns; a ``Type=simple`` unit may still be binding its port then,
      so the margin also absorbs the app's time-to-listen.
    * attempts: the fewest (2..``max_attempts``) whose required initialInterval is at most
      ``preferred_interval`` -- short first waits so a short window costs little latency;
      when even ``max_attempts`` needs more, attempts stay at ``max_attempts`` and the
      interval grows. initialInterval: the smallest whole millisecond whose worst-case
      (all waits at -50%) cumulative wait reaches window + margin.
    * warning when the window exceeds ``max_window``: retries would hold requests for up to
      3x that; use maintenance mode.
    """
    samples = [float(d) for d in downtimes if _is_duration(d)]
    if len(samples) >= MIN_SAMPLES:
        window, assumed = p95(samples), False
    else:
        window, assumed = float(default_window), True
    margin = max(min_margin, margin_ratio * window)
    target = window + margin
    if max_attempts < 2:
        raise ValueError("max_attempts must be at least 2")
    attempts = 2
    interval = _interval_for(target, attempts)
    while interval > preferred_interval and attempts < max_attempts:
        attempts += 1
        interval = _interval_for(target, attempts)
    waits = backoff_bounds(attempts, interval)
    warning = None
    if window > max_window:
        warning = (
            f"p95 switch downtime {window:.1f} s is longer than retries should hide (> {max_window:g} s): "
            f"requests would hang up to {sum(w[2] for w in waits):.0f} s; use traefik mode 'maintenance' "
            f"(a maintenance page while the switch lasts), or make the service start faster"
        )
    return RetryPlan(
        p95=window,
        samples=len(samples),
        assumed=assumed,
        margin=margin,
        attempts=attempts,
        initial_interval=interval,
        min_cover=sum(w[0] for w in waits),
        nominal_cover=sum(w[1] for w in waits),
        max_cover=sum(w[2] for w in waits),
        max_wait=max(w[2] for w in waits),
        max_window=max_window,
        warning=warning,
        waits=tuple(waits),
    )


def _is_duration(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def downtimes_from_history(lines: Iterable[str], *, limit: int = HISTORY_WINDOW) -> list[float]:
    """Switch windows from history.jsonl lines: ``op`` release/rollback with a numeric
    ``downtime`` (absent/null on failed ops: skipped); unparsable lines skipped; the
    most recent ``limit`` kept, oldest first."""
    out: list[float] = []
    for rec in parse_history("\n".join(lines)):
        if rec.get("op") not in ("release", "rollback"):
            continue
        # "unavailable" (stop -> first healthy answer) is the window a proxy must hide;
        # "downtime" (stop -> start returned) is what older records have.
        d = rec.get("unavailable") if _is_duration(rec.get("unavailable")) else rec.get("downtime")
        if _is_duration(d):
            out.append(float(d))
    return out[-limit:] if limit > 0 else out
