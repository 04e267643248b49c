"""Traefik v3 file-provider configuration, with the retry sized from recorded switch downtimes.

Every switch stops the service, swaps ``current`` and starts it again: a window of a
second or so in which the app's port refuses connections. capview records each window
(``"downtime"`` in ``.capview/history.jsonl``). This module turns those numbers into a
Traefik v3 *dynamic configuration* document for the **file provider** that hides the
window from clients (``mode: retry``) or shows a maintenance page while it lasts
(``mode: maintenance``). UI-free: no textual/rich imports.

Modules: ``retry`` (sizing from the recorded windows), ``document`` (the YAML we emit),
``validate`` (a strict check of it), ``host`` (reading history, writing the files, the
maintenance page server). Everything public is importable from this package.

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


from capview.engine.traefik.document import check_app_name, header_lines, render_dynamic_config, to_yaml
from capview.engine.traefik.host import (
    WrittenFiles, dynamic_file_path, maintenance_dir, maintenance_server_script, maintenance_unit,
    maintenance_unit_name, read_downtimes, systemd_quote, traefik_config, write_traefik_config,
)
from capview.engine.traefik.retry import (
    BACKOFF_MAX_INTERVAL, DOCS, HISTORY_WINDOW, MAINTENANCE_FILE, MAINTENANCE_QUERY, MAINTENANCE_STATUS,
    MAX_ATTEMPTS, MAX_HIDEABLE_WINDOW, MIN_SAMPLES, RANDOMIZATION_FACTOR, RetryPlan, backoff_bounds,
    downtimes_from_history, p95, retry_plan,
)
from capview.engine.traefik.validate import check_rule, validate_dynamic_config

__all__ = [
    "BACKOFF_MAX_INTERVAL", "DOCS", "HISTORY_WINDOW", "MAINTENANCE_FILE", "MAINTENANCE_QUERY",
    "MAINTENANCE_STATUS", "MAX_ATTEMPTS", "MAX_HIDEABLE_WINDOW", "MIN_SAMPLES", "RANDOMIZATION_FACTOR",
    "RetryPlan", "WrittenFiles", "backoff_bounds", "check_app_name", "check_rule", "downtimes_from_history",
    "dynamic_file_path", "header_lines", "maintenance_dir", "maintenance_server_script", "maintenance_unit",
    "maintenance_unit_name", "p95", "read_downtimes", "render_dynamic_config", "retry_plan", "systemd_quote",
    "to_yaml", "traefik_config", "validate_dynamic_config", "write_traefik_config",
]
