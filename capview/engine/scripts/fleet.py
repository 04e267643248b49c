"""issue 17's host scripts: the canary watch (health checks on the host for canary_wait)."""

from __future__ import annotations

import math

from capview.config import Settings
from capview.engine.layout import HostPaths
from capview.engine.scripts.service import health_function
from capview.engine.scripts.shell import q

CANARY_POLL = 2  # seconds between two health checks of a canary


def canary_watch(settings: Settings, seconds: float) -> str:
    """sh: check the service's health (the configured check, with its own timeout) every
    CANARY_POLL seconds for ``seconds``; frame ``canary_ok N`` (exit 0) or
    ``canary_failed N`` after the failed check's ``health failed ...`` (exit 1).
    Needs the frames prelude. The clock is the host's; ``date +%s`` counts whole seconds,
    so the end is one second later than the sum: the watch lasts at least ``seconds``."""
    extra = 1 if seconds > 0 else 0
    return health_function(settings) + (
        f"end=$(( $(date +%s) + {max(0, math.ceil(seconds)) + extra} ))\n"
        "n=0\n"
        "while :; do\n"
        "  n=$((n+1))\n"
        '  cv_health || { mark canary_failed "$n"; exit 1; }\n'
        '  [ "$(date +%s)" -lt "$end" ] || break\n'
        f"  sleep {CANARY_POLL}\n"
        "done\n"
        'mark canary_ok "$n"\n'
    )


def current_probe(paths: HostPaths) -> str:
    """sh: frame ``current TARGET`` (what the current link names; empty without one), for
    capview check's split test. Needs the frames prelude."""
    return f'mark current "$(readlink {q(paths.current)} 2>/dev/null || true)"\n'
