"""Traefik v3 file-provider configuration, with the retry sized from recorded switch downtimes.

Every switch stops the service, swaps ``current`` and starts it again: a window of a
second or so in which the app's port refuses connections. capview records each window
(``"downtime"`` in ``.capview/history.jsonl``). This module turns those numbers into a
Traefik v3 *dynamic configuration* document for the **file provider** that hides the
window from clients (``mode: retry``) or shows a maintenance page while it lasts
(``mode: maintenance``). UI-free: no textual/rich imports.

What the Traefik documentation says about every key we emit (Traefik v3)
-----------------------------------------------------------------------
File provider, https://doc.traefik.io/traefik/v3.8/reference/routing-configuration/other-providers/file/ ::

    http:
      routers:
        app:
          rule: Host(`example.com`)
          entryPoints:
            - websecure
          service: app
      services:
        app:
          loadBalancer:
            servers:
              - url: http://127.0.0.1:8080

Router, https://doc.traefik.io/reference/routing-configuration/http/routing/router :
``entryPoints`` (list), ``rule``, ``middlewares`` (list of middleware names), ``service``.
Rules, https://doc.traefik.io/traefik/v3.8/reference/routing-configuration/http/routing/rules-and-priority/ :
"To set the value of a rule, use backticks ` or escaped double-quotes"; "Single quotes ' are
not accepted"; matchers ``Header HeaderRegexp Host HostRegexp Method Path PathPrefix
PathRegexp Query QueryRegexp ClientIP``; "The character @ is not authorized in the router name."

Service, https://doc.traefik.io/traefik/reference/routing-configuration/http/load-balancing/service :
``loadBalancer.servers[].url``.

Retry, https://doc.traefik.io/traefik/middlewares/http/retry/ (and the v3 reference page
https://doc.traefik.io/reference/routing-configuration/http/middlewares/retry) ::

    http:
      middlewares:
        test-retry:
          retry:
            attempts: 4
            initialInterval: 100ms

"``attempts``: number of times the request should be retried." "``initialInterval``: First
wait time in the exponential backoff series. The maximum interval is calculated as twice
the initialInterval. If unspecified, requests will be retried immediately. Defined in
seconds or as a valid duration format, see time.ParseDuration." "The Retry middleware
reissues requests a given number of times when it cannot contact the backend service.
This applies at the transport level (TCP) ... once the service responds, regardless of the
HTTP status code, the middleware considers it operational and stops retrying."

Errors, https://doc.traefik.io/traefik/v3.4/reference/routing-configuration/http/middlewares/errorpages ::

    http:
      middlewares:
        test-errors:
          errors:
            status:
              - "500"
              - "501"
              - "503"
              - "505-599"
            service: error-handler-service
            query: "/{status}.html"

"The errors middleware returns a custom page in lieu of the default, according to configured
ranges of HTTP Status codes." (The error page itself is not hosted by Traefik: it is the
``service``'s job.)

How Traefik's retry really waits (source read: traefik/traefik v3 pkg/middlewares/retry/retry.go)
---------------------------------------------------------------------------------------------------
``newBackOff()``::

    if r.attempts < 2 || r.initialInterval <= 0 { return &backoff.ZeroBackOff{} }
    b := backoff.NewExponentialBackOff()            // github.com/cenkalti/backoff/v4
    b.InitialInterval = r.initialInterval
    b.Multiplier = math.Pow(2, 1/float64(r.attempts-1))

and ``ServeHTTP`` runs ``backoff.RetryNotify(operation, ...)`` where ``operation`` is one try;
the try numbered ``attempts`` is the last (``attempts < r.attempts`` / ``attempts ==
r.attempts``), so **``attempts`` counts the first try**: ``attempts: N`` = 1 try + N-1
retries, with N-1 waits between them. cenkalti/backoff v4 ``exponential.go``:
``DefaultRandomizationFactor = 0.5``, ``DefaultMaxInterval = 60s``,
``DefaultMaxElapsedTime = 15min``; ``NextBackOff()`` returns
``getRandomValueFromInterval(RandomizationFactor, rand.Float64(), currentInterval)`` -- a
uniform value in ``[currentInterval*(1-0.5), currentInterval*(1+0.5)]`` -- then multiplies
``currentInterval`` by ``Multiplier`` (capped at ``MaxInterval``). ``RetryNotify`` calls
``Reset()`` first, so wait k (k = 0 .. N-2) is ``I * m**k * U(0.5, 1.5)`` with
``m = 2**(1/(N-1))``. Summing the geometric series (``m**(N-1) == 2``)::

    nominal cover = I * (m**(N-1) - 1) / (m - 1) = I / (m - 1)
    worst case    = 0.5 * I / (m - 1)      (every wait drawn at its shortest)
    longest       = 1.5 * I / (m - 1)      (how long a request may hang before its 502)

A request that reaches Traefik at the very start of a switch window is served iff its last
try lands after the window: capview sizes ``I`` so the *worst case* cover is at least
``p95(window) + margin`` and simulates the Go arithmetic (integer nanoseconds, truncation)
in :func:`backoff_bounds` to check it.
"""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

import yaml

from capview.config import HostConfig, TraefikConfig
from capview.engine.layout import HostPaths
from capview.errors import ConfigError, RemoteError, UsageError

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
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("op") not in ("release", "rollback"):
            continue
        # "unavailable" (stop -> first healthy answer) is the window a proxy must hide;
        # "downtime" (stop -> start returned) is what older records have.
        d = rec.get("unavailable") if _is_duration(rec.get("unavailable")) else rec.get("downtime")
        if _is_duration(d):
            out.append(float(d))
    return out[-limit:] if limit > 0 else out


# --------------------------------------------------------------------------- the document


def check_app_name(app: str) -> str:
    """The app name becomes router/service/middleware names and a unit name."""
    if not APP_NAME_RE.fullmatch(app):
        raise ConfigError(
            f"app name {app!r} cannot name Traefik routers/services: use 1-63 of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit (no '@')"
        )
    return app


def render_dynamic_config(
    app: str,
    traefik: TraefikConfig,
    plan: RetryPlan,
    *,
    maintenance_url: str | None = None,
) -> dict:
    """The file-provider document (a plain dict, keys in a stable order).

    * ``http.routers.<app>``: rule, entryPoints, service ``<app>``, middlewares.
    * ``http.services.<app>.loadBalancer.servers[0].url = http://127.0.0.1:<port>``.
    * mode ``retry``: middleware ``<app>-retry`` (``retry: {attempts, initialInterval}``).
    * mode ``maintenance``: middleware ``<app>-maintenance`` (``errors: {status: ["502-504"],
      service: <app>-maintenance, query: /maintenance.html}``) and service
      ``<app>-maintenance`` -> ``maintenance_url`` (default
      ``http://127.0.0.1:<maintenance_port>``); plus ``<app>-retry`` when the window is
      short enough to hide (``plan.hideable``), so a quick switch shows no page at all.

    Ordering (both middlewares): the router lists ``[<app>-maintenance, <app>-retry]``.
    Traefik builds a router's chain with alice, where ``New(m1, m2).Then(h)`` is
    ``m1(m2(h))``: the FIRST listed is the outermost. Retries must happen first and the
    page only when they are exhausted, so retry sits next to the service (inner) and
    errors wraps it: errors sees the final 502 of the last try, never an intermediate one.
    The other order would let the errors middleware answer the first refused try with
    the page (its request to the maintenance service writes headers, which stops retry).
    """
    check_app_name(app)
    retry_name, maint_name = f"{app}-retry", f"{app}-maintenance"
    use_errors = traefik.mode == "maintenance"
    use_retry = traefik.mode == "retry" or plan.hideable

    middlewares: dict[str, Any] = {}
    chain: list[str] = []
    if use_errors:
        chain.append(maint_name)
        middlewares[maint_name] = {
            "errors": {
                "status": list(MAINTENANCE_STATUS),
                "service": maint_name,
                "query": MAINTENANCE_QUERY,
            }
        }
    if use_retry:
        chain.append(retry_name)
        middlewares[retry_name] = {
            "retry": {"attempts": plan.attempts, "initialInterval": plan.interval_str}
        }

    router: dict[str, Any] = {
        "rule": traefik.rule,
        "entryPoints": list(traefik.entry_points),
        "service": app,
    }
    if chain:
        router["middlewares"] = chain
    services: dict[str, Any] = {
        app: {"loadBalancer": {"servers": [{"url": f"http://127.0.0.1:{traefik.port}"}]}}
    }
    if use_errors:
        url = maintenance_url or f"http://127.0.0.1:{traefik.maintenance_port}"
        services[maint_name] = {"loadBalancer": {"servers": [{"url": url}]}}
    http: dict[str, Any] = {"routers": {app: router}, "services": services}
    if middlewares:
        http["middlewares"] = middlewares
    return {"http": http}


def header_lines(app: str, mode: str, plan: RetryPlan | None, notes: Iterable[str] = ()) -> list[str]:
    lines = [f"Traefik v3 dynamic configuration (file provider) for {app!r}, generated by capview.",
             f"mode: {mode}"]
    if plan is not None:
        lines += plan.summary()
        if plan.warning:
            lines.append(f"WARNING: {plan.warning}")
    lines += list(notes)
    lines += [
        "The keys: " + DOCS["file"],
        "  retry: " + DOCS["retry"],
        "  errors: " + DOCS["errors"],
        "Edit deploy.yaml's traefik: section and regenerate rather than editing this file.",
    ]
    return lines


def to_yaml(doc: dict, plan: RetryPlan | None = None, *, app: str | None = None,
            mode: str | None = None, notes: Iterable[str] = ()) -> str:
    """YAML text (pyyaml, keys in the document's own order) with a ``#`` header saying
    what capview assumed (p95, samples, attempts, interval). ``yaml.safe_load`` of the
    result gives ``doc`` back."""
    if app is None:
        routers = (doc.get("http") or {}).get("routers") or {}
        app = next(iter(routers), "?")
    if mode is None:
        mws = (doc.get("http") or {}).get("middlewares") or {}
        mode = "maintenance" if any("errors" in m for m in mws.values()) else "retry"
    header = "".join(f"# {ln}".rstrip() + "\n" for ln in header_lines(app, mode, plan, notes))
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    return header + body


# --------------------------------------------------------------------------- the validator

# The v3 schema subset capview emits: allowed keys -> required?
_ROUTER_KEYS = {"rule": True, "entryPoints": False, "service": True, "middlewares": False}
_RETRY_KEYS = {"attempts": True, "initialInterval": False}
_ERRORS_KEYS = {"status": True, "service": True, "query": False}
_MIDDLEWARE_TYPES = ("retry", "errors")
V3_MATCHERS = frozenset({
    "Header", "HeaderRegexp", "Host", "HostRegexp", "Method", "Path", "PathPrefix",
    "PathRegexp", "Query", "QueryRegexp", "ClientIP",
})
_GO_DURATION_RE = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$")
_STATUS_RE = re.compile(r"^([0-9]{3})(?:-([0-9]{3}))?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _keys(obj: Any, path: str, allowed: dict[str, bool], errs: list[str]) -> bool:
    if not isinstance(obj, dict):
        errs.append(f"{path}: must be a mapping, got {type(obj).__name__}")
        return False
    for k in obj:
        if k not in allowed:
            errs.append(f"{path}.{k}: unknown key (allowed: {', '.join(allowed)})")
    for k, required in allowed.items():
        if required and k not in obj:
            errs.append(f"{path}.{k}: required")
    return True


def _check_name(kind: str, name: Any, path: str, errs: list[str]) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        errs.append(f"{path}: invalid {kind} name {name!r} (letters, digits, . _ -; no '@')")


def _check_url(url: Any, path: str, errs: list[str]) -> None:
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        errs.append(f"{path}: must be a URL string without spaces, got {url!r}")
        return
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        errs.append(f"{path}: invalid URL {url!r}: {e}")
        return
    if u.scheme not in ("http", "https"):
        errs.append(f"{path}: scheme must be http or https, got {url!r}")
    if not u.hostname:
        errs.append(f"{path}: URL has no host: {url!r}")
    if port is not None and not 1 <= port <= 65535:
        errs.append(f"{path}: port out of range in {url!r}")
    if u.username or u.password or u.query or u.fragment:
        errs.append(f"{path}: URL must not carry credentials, a query or a fragment: {url!r}")


def check_rule(rule: Any) -> list[str]:
    """Problems with a v3 router rule (empty list when it looks valid)."""
    if not isinstance(rule, str) or not rule.strip():
        return ["must be a non-empty string"]
    errs = []
    # Split out the values (backtick or double-quoted Go string literals) first.
    rest, i, n = [], 0, len(rule)
    while i < n:
        c = rule[i]
        if c == "`":
            j = rule.find("`", i + 1)
            if j < 0:
                return ["unterminated backtick value"]
            rest.append(" V ")
            i = j + 1
        elif c == '"':
            j = i + 1
            while j < n and rule[j] != '"':
                j += 2 if rule[j] == "\\" else 1
            if j >= n:
                return ["unterminated double-quoted value"]
            rest.append(" V ")
            i = j + 1
        elif c == "'":
            return ["single quotes are not accepted (values are Go string literals: use backticks)"]
        else:
            rest.append(c)
            i += 1
    skeleton = "".join(rest)
    depth = 0
    for c in skeleton:
        depth += c == "("
        depth -= c == ")"
        if depth < 0:
            return ["unbalanced parentheses"]
    if depth:
        return ["unbalanced parentheses"]
    calls = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", skeleton)
    if not calls:
        errs.append("no matcher, e.g. PathPrefix(`/`)")
    for name in calls:
        if name not in V3_MATCHERS:
            errs.append(f"unknown v3 matcher {name}() (v3: {', '.join(sorted(V3_MATCHERS))})")
    leftovers = re.sub(r"[A-Za-z_][A-Za-z0-9_]*\s*\(|[()]|V|,|&&|\|\||!|\s", "", skeleton)
    if leftovers:
        errs.append(f"unexpected text {leftovers!r}")
    return errs


def validate_dynamic_config(doc: Any) -> list[str]:
    """Strictly check a document against the Traefik v3 file-provider subset capview emits.

    Returns one ``path: problem`` string per problem (empty: valid). Checked: allowed and
    required keys per object, types, names, every router's service and middlewares exist,
    rules use only v3 matchers with backtick/double-quoted values, server URLs are
    http(s)://host[:port], errors.status ranges, retry.attempts >= 1, initialInterval a Go
    duration, errors.service exists, and nothing defined goes unused.
    """
    errs: list[str] = []
    if not _keys(doc, "(document)", {"http": True}, errs) or "http" not in doc:
        return errs
    http = doc["http"]
    if not _keys(http, "http", {"routers": True, "services": True, "middlewares": False}, errs):
        return errs
    routers = http.get("routers", {})
    services = http.get("services", {})
    middlewares = http.get("middlewares", {})
    for section, value in (("routers", routers), ("services", services), ("middlewares", middlewares)):
        if not isinstance(value, dict) or (section != "middlewares" and not value):
            errs.append(f"http.{section}: must be a non-empty mapping")
    if not isinstance(routers, dict) or not isinstance(services, dict) or not isinstance(middlewares, dict):
        return errs

    used_services: set[str] = set()
    used_middlewares: set[str] = set()

    for name, svc in services.items():
        p = f"http.services.{name}"
        _check_name("service", name, p, errs)
        if not _keys(svc, p, {"loadBalancer": True}, errs) or "loadBalancer" not in svc:
            continue
        lb = svc["loadBalancer"]
        if not _keys(lb, f"{p}.loadBalancer", {"servers": True}, errs) or "servers" not in lb:
            continue
        servers = lb["servers"]
        if not isinstance(servers, list) or not servers:
            errs.append(f"{p}.loadBalancer.servers: must be a non-empty list")
            continue
        for i, srv in enumerate(servers):
            sp = f"{p}.loadBalancer.servers[{i}]"
            if _keys(srv, sp, {"url": True}, errs) and "url" in srv:
                _check_url(srv["url"], f"{sp}.url", errs)

    for name, mw in middlewares.items():
        p = f"http.middlewares.{name}"
        _check_name("middleware", name, p, errs)
        if not isinstance(mw, dict):
            errs.append(f"{p}: must be a mapping, got {type(mw).__name__}")
            continue
        kinds = [k for k in mw if k in _MIDDLEWARE_TYPES]
        for k in mw:
            if k not in _MIDDLEWARE_TYPES:
                errs.append(f"{p}.{k}: unknown middleware type (allowed: {', '.join(_MIDDLEWARE_TYPES)})")
        if len(kinds) != 1:
            if not kinds and not [k for k in mw if k not in _MIDDLEWARE_TYPES]:
                errs.append(f"{p}: declares no middleware type")
            elif len(kinds) > 1:
                errs.append(f"{p}: declares {len(kinds)} types; a middleware has exactly one")
            continue
        kind = kinds[0]
        body = mw[kind]
        bp = f"{p}.{kind}"
        if kind == "retry":
            if not _keys(body, bp, _RETRY_KEYS, errs):
                continue
            if "attempts" in body and not (_is_int(body["attempts"]) and body["attempts"] >= 1):
                errs.append(f"{bp}.attempts: must be an integer >= 1, got {body['attempts']!r}")
            if "initialInterval" in body:
                iv = body["initialInterval"]
                ok = (isinstance(iv, str) and _GO_DURATION_RE.fullmatch(iv)) or (
                    (_is_int(iv) or isinstance(iv, float)) and iv >= 0)
                if not ok:
                    errs.append(f"{bp}.initialInterval: must be a Go duration like '100ms' or seconds, got {iv!r}")
        else:
            if not _keys(body, bp, _ERRORS_KEYS, errs):
                continue
            if "status" in body:
                st = body["status"]
                if not isinstance(st, list) or not st:
                    errs.append(f"{bp}.status: must be a non-empty list of codes or ranges like '502-504'")
                else:
                    for i, s in enumerate(st):
                        m = _STATUS_RE.fullmatch(s) if isinstance(s, str) else None
                        lo = int(m.group(1)) if m else 0
                        hi = int(m.group(2) or lo) if m else 0
                        if not m or not 100 <= lo <= hi <= 599:
                            errs.append(f"{bp}.status[{i}]: must be a string code or range like '502-504', got {s!r}")
            if "service" in body:
                svc = body["service"]
                if not isinstance(svc, str) or svc not in services:
                    errs.append(f"{bp}.service: {svc!r} is not a service defined in http.services")
                else:
                    used_services.add(svc)
            if "query" in body:
                qy = body["query"]
                if not isinstance(qy, str) or not qy.startswith("/") or any(c.isspace() for c in qy):
                    errs.append(f"{bp}.query: must be a path starting with '/', got {qy!r}")

    for name, rt in routers.items():
        p = f"http.routers.{name}"
        _check_name("router", name, p, errs)
        if not _keys(rt, p, _ROUTER_KEYS, errs):
            continue
        if "rule" in rt:
            for problem in check_rule(rt["rule"]):
                errs.append(f"{p}.rule: {problem}")
        if "entryPoints" in rt:
            eps = rt["entryPoints"]
            if (not isinstance(eps, list) or not eps
                    or not all(isinstance(e, str) and _NAME_RE.fullmatch(e) for e in eps)):
                errs.append(f"{p}.entryPoints: must be a non-empty list of entry point names, got {eps!r}")
            elif len(set(eps)) != len(eps):
                errs.append(f"{p}.entryPoints: duplicates in {eps!r}")
        if "service" in rt:
            svc = rt["service"]
            if not isinstance(svc, str) or svc not in services:
                errs.append(f"{p}.service: {svc!r} is not a service defined in http.services")
            else:
                used_services.add(svc)
        if "middlewares" in rt:
            mws = rt["middlewares"]
            if not isinstance(mws, list) or not all(isinstance(m, str) for m in mws):
                errs.append(f"{p}.middlewares: must be a list of middleware names, got {mws!r}")
            else:
                if len(set(mws)) != len(mws):
                    errs.append(f"{p}.middlewares: duplicates in {mws!r}")
                for m in mws:
                    if m not in middlewares:
                        errs.append(f"{p}.middlewares: {m!r} is not defined in http.middlewares")
                    else:
                        used_middlewares.add(m)

    for name in services:
        if name not in used_services:
            errs.append(f"http.services.{name}: defined but used by no router or errors middleware")
    for name in middlewares:
        if name not in used_middlewares:
            errs.append(f"http.middlewares.{name}: defined but used by no router")
    return errs


# --------------------------------------------------------------------------- maintenance server


def maintenance_dir(deploy_path: str) -> str:
    return f"{HostPaths(deploy_path).shared}/maintenance"


def maintenance_server_script(deploy_path: str, port: int) -> str:
    """One POSIX sh line that serves ``<deploy_path>/shared/maintenance`` on 127.0.0.1:<port>.

    No runtime is assumed: it execs the first of ``python3 -m http.server`` (present on
    most VPS images, and on any host running a Python app) or ``busybox httpd -f``; with
    neither it exits 127 saying so. It binds loopback only: Traefik reaches it through
    the ``<app>-maintenance`` service, no router exposes it directly. The errors
    middleware asks it for ``/maintenance.html``.
    """
    port = int(port)
    if not 1 <= port <= 65535:
        raise ConfigError(f"traefik.maintenance_port {port} is not a TCP port")
    d = q(maintenance_dir(deploy_path))
    return (
        "if command -v python3 >/dev/null 2>&1; then "
        f"exec python3 -m http.server --bind 127.0.0.1 --directory {d} {port}; "
        "elif command -v busybox >/dev/null 2>&1; then "
        f"exec busybox httpd -f -p 127.0.0.1:{port} -h {d}; "
        "else echo 'capview maintenance page: neither python3 nor busybox is installed' >&2; exit 127; fi"
    )


def maintenance_unit_name(app: str) -> str:
    return f"capview-{check_app_name(app)}-maintenance.service"


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart word for systemd: double quotes, ``\\`` and ``"`` escaped,
    ``$`` as ``$$`` (no variable expansion) and ``%`` as ``%%`` (no specifiers)."""
    if any(c in arg for c in "\n\r\0"):
        raise ConfigError("a newline or NUL cannot go into a systemd unit")
    esc = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{esc}"'


def maintenance_unit(app: str, deploy_path: str, port: int) -> str:
    """A ``systemd --user`` unit that keeps the maintenance page served (always on: it
    only answers when Traefik's errors middleware asks, i.e. while the app is down).

    Install as ``~/.config/systemd/user/capview-<app>-maintenance.service`` then
    ``systemctl --user daemon-reload && systemctl --user enable --now <unit>`` (done by
    :func:`write_traefik_config` with ``install_unit=True``). ExecStart runs
    :func:`maintenance_server_script` under ``/bin/sh -c``.
    """
    script = maintenance_server_script(deploy_path, port)
    return (
        "[Unit]\n"
        f"Description=capview maintenance page for {check_app_name(app)} on 127.0.0.1:{int(port)}\n"
        "\n"
        "[Service]\n"
        f"ExecStart=/bin/sh -c {systemd_quote(script)}\n"
        "Restart=always\n"
        "RestartSec=2\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


# --------------------------------------------------------------------------- host I/O


def _traefik_of(host_cfg: HostConfig) -> tuple[TraefikConfig, list[str]]:
    t = host_cfg.settings.traefik
    if t is None:
        return TraefikConfig(), ["deploy.yaml has no traefik: section; capview's defaults were used"]
    return t, []


def dynamic_file_path(host_cfg: HostConfig) -> str:
    """Where the file goes on the host: ``<dynamic_dir>/<app>.yml``; dynamic_dir defaults
    to ``<deploy_path>/traefik`` and a relative one is taken under deploy_path."""
    s = host_cfg.settings
    t, _ = _traefik_of(host_cfg)
    d = t.dynamic_dir or "traefik"
    if not d.startswith("/"):
        d = f"{s.deploy_path.rstrip('/')}/{d}"
    return f"{d.rstrip('/')}/{check_app_name(s.app)}.yml"


async def read_downtimes(transport, host_cfg: HostConfig, *, limit: int = HISTORY_WINDOW) -> list[float]:
    """The recorded switch windows of one host (one round trip)."""
    hist = HostPaths(host_cfg.settings.deploy_path).history
    script = f"f={q(hist)}\nif [ -f \"$f\" ]; then tail -n 5000 \"$f\"; fi\n"
    res = await transport.run(host_cfg, script)
    if not res.ok:
        raise RemoteError(f"{host_cfg.name}: could not read {hist}", exit_status=res.exit_status,
                          stderr=res.stderr)
    return downtimes_from_history(res.stdout.splitlines(), limit=limit)


async def traefik_config(transport, host_cfg: HostConfig, **plan_kw) -> tuple[str, RetryPlan]:
    """Read the host's history, size the retry, render + validate the YAML document.

    Returns ``(yaml_text, plan)``; ``plan.warning`` says when retries cannot hide the
    window. Raises UsageError if the generated document fails validation (a bug or a
    bad deploy.yaml value such as a rule with an unknown matcher).
    """
    s = host_cfg.settings
    t, notes = _traefik_of(host_cfg)
    downtimes = await read_downtimes(transport, host_cfg)
    plan = retry_plan(downtimes, **plan_kw)
    doc = render_dynamic_config(s.app, t, plan)
    problems = validate_dynamic_config(doc)
    if problems:
        raise UsageError(f"generated Traefik configuration is invalid: {problems[0]}",
                         hint="; ".join(problems[1:4]) or None)
    if t.mode == "maintenance" and not plan.hideable:
        notes = notes + ["retry omitted: the window is too long to hide, the page shows at once"]
    if t.mode == "maintenance":
        notes = notes + [
            f"maintenance page: {maintenance_dir(s.deploy_path)}/{MAINTENANCE_FILE}, served on "
            f"127.0.0.1:{t.maintenance_port} by {maintenance_unit_name(s.app)}",
            "while the app is down clients get the page with the original 502/503/504 status",
        ]
    return to_yaml(doc, plan, app=s.app, mode=t.mode, notes=notes), plan


@dataclass(frozen=True)
class WrittenFiles:
    config: str
    page: str | None = None
    unit: str | None = None


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = int(time.time())
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


async def write_traefik_config(
    transport,
    host_cfg: HostConfig,
    yaml_text: str,
    maintenance_html: bytes | None,
    *,
    install_unit: bool = False,
) -> WrittenFiles:
    """Write the dynamic config (and the maintenance page) on the host, atomically.

    One round trip: the files travel as a tar on stdin into a staging directory created
    next to each target, then ``mv -f`` renames them into place, so Traefik's file
    watcher never reads a half-written file (staging names start with ``.`` and end in
    neither ``.yml`` nor ``.toml``). ``yaml_text`` is re-validated first.
    ``install_unit`` (maintenance page only) also writes
    ``~/.config/systemd/user/capview-<app>-maintenance.service`` and runs
    ``systemctl --user daemon-reload`` + ``enable --now`` + ``restart``.
    """
    try:
        doc = yaml.safe_load(yaml_text)
    except yaml.YAMLError as e:
        raise UsageError(f"not YAML: {e}") from None
    problems = validate_dynamic_config(doc)
    if problems:
        raise UsageError(f"refusing to write an invalid Traefik configuration: {problems[0]}")
    s = host_cfg.settings
    t, _ = _traefik_of(host_cfg)
    cfg_path = dynamic_file_path(host_cfg)
    cfg_dir, cfg_name = cfg_path.rsplit("/", 1)
    files = {"config.yml": yaml_text.encode()}
    page_path = unit_path = None
    if maintenance_html is not None:
        files["page.html"] = bytes(maintenance_html)
        page_path = f"{maintenance_dir(s.deploy_path)}/{MAINTENANCE_FILE}"
    unit_name = maintenance_unit_name(s.app)
    if install_unit:
        if maintenance_html is None:
            raise UsageError("install_unit needs the maintenance page")
        files["unit"] = maintenance_unit(s.app, s.deploy_path, t.maintenance_port).encode()
        unit_path = f"~/.config/systemd/user/{unit_name}"

    lines = [
        f"cfg_dir={q(cfg_dir)}",
        'mkdir -p "$cfg_dir"',
        'st="$cfg_dir"/.capview-stage.$$',
        'trap \'rm -rf "$st"\' EXIT',
        'mkdir "$st"',
        'tar -x -f - -C "$st"',
        f'mv -f "$st/config.yml" "$cfg_dir"/{q(cfg_name)}',
    ]
    if page_path is not None:
        mdir = maintenance_dir(s.deploy_path)
        lines += [
            f"mdir={q(mdir)}",
            'mkdir -p "$mdir"',
            # cross-filesystem safe: copy to a temp name in the target dir, then rename
            f'cp "$st/page.html" "$mdir"/.{MAINTENANCE_FILE}.tmp.$$',
            f'mv -f "$mdir"/.{MAINTENANCE_FILE}.tmp.$$ "$mdir"/{MAINTENANCE_FILE}',
        ]
    if install_unit:
        lines += [
            'udir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"',
            'mkdir -p "$udir"',
            f'cp "$st/unit" "$udir"/.{unit_name}.tmp.$$',
            f'mv -f "$udir"/.{unit_name}.tmp.$$ "$udir"/{q(unit_name)}',
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {q(unit_name)}",
            f"systemctl --user restart {q(unit_name)}",
        ]
    res = await transport.run(host_cfg, "\n".join(lines) + "\n", stdin=_tar(files))
    if not res.ok:
        raise RemoteError(f"{host_cfg.name}: writing the Traefik configuration failed",
                          exit_status=res.exit_status, stderr=res.stderr)
    return WrittenFiles(config=cfg_path, page=page_path, unit=unit_path)
