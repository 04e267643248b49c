"""The capview side of the benchmarks: build Environments for the bench hosts and run the
engine's operations with a fresh SshTransport, collecting wall time, per-phase times,
round trips and bytes sent.

The engine is imported lazily (``engine_missing()`` says what is not there yet), so the
harness and the baselines run before the whole engine exists.

Also a child-process entry point for the client-memory scenarios::

    python -m benchmarks.capview_side release --spec '<json>'
    python -m benchmarks.capview_side scan --source DIR

``release`` deploys ``spec["source"]`` to one host, ``scan`` only scans a tree into its
manifest (what every deploy does first); each prints a JSON result with its own peak RSS
(``vm_hwm_kb``), which the parent reads (benchmarks/childproc.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP = "bench"
OPERATOR = "bench@capview-bench"


def engine_missing(*modules: str) -> str | None:
    """None if the engine modules needed are importable, else a short reason."""
    for m in modules or ("capview.engine.deploy", "capview.remote.ssh"):
        try:
            importlib.import_module(m)
        except ImportError as exc:
            return f"{m} not available ({exc})"
    return None


@dataclass
class HostSpec:
    """What capview needs to reach one bench site (JSON-able for the RSS child)."""

    name: str
    port: int
    user: str
    key: str
    known_hosts: str
    deploy_path: str
    unit: str | None = None  # systemd --user unit (None: no service)
    health_url: str | None = None

    @classmethod
    def of(cls, h: Any, side: str, service: bool = True) -> "HostSpec":
        s = h.sites[side]
        return cls(h.name, h.port, h.user, h.key, h.known_hosts, s.path,
                   s.unit if service else None, s.health_url if service and s.unit else None)

    def direct(self, h: Any) -> "HostSpec":
        """The same site reached straight at sshd, past any proxy (set-up steps)."""
        return dataclasses.replace(self, port=h.sshd_port)


def make_env(specs: list[HostSpec], source: Path, *, keep: int = 5, strategy: str = "parallel",
             max_parallel: int = 20, health_interval: float | None = 0.2) -> Any:
    """An Environment for ``specs``. ``health_interval=None``: capview's default health
    settings (only ``url`` set, as a user who writes ``health: {url: ...}`` gets)."""
    from capview.config import (Environment, HealthConfig, HostConfig, ServiceConfig, Settings,
                                SshOptions)

    hosts = []
    for sp in specs:
        service = ServiceConfig(manager="systemd-user", unit=sp.unit) if sp.unit else ServiceConfig(manager="none")
        health = None
        if sp.health_url:
            health = (HealthConfig(url=sp.health_url) if health_interval is None
                      else HealthConfig(url=sp.health_url, timeout=30.0, interval=health_interval))
        settings = Settings(
            app=APP, deploy_path=sp.deploy_path, source=source, keep_releases=keep,
            service=service, health=health,
            ssh=SshOptions(known_hosts=sp.known_hosts, identity_file=sp.key, connect_timeout=20.0),
        )
        hosts.append(HostConfig(name=sp.name, host="127.0.0.1", settings=settings, user=sp.user,
                                port=sp.port, env="bench"))
    return Environment(name="bench", hosts=tuple(hosts), settings=hosts[0].settings,
                       strategy=strategy, max_parallel=max_parallel)  # type: ignore[arg-type]


@dataclass
class OpResult:
    ok: bool
    seconds: float  # wall time of the operation (includes connecting unless warm=True)
    round_trips: int  # engine-counted scripts run, summed over hosts
    bytes_sent: int
    phases: dict[str, float] = field(default_factory=dict)  # max over hosts, per phase
    host_seconds: dict[str, float] = field(default_factory=dict)
    message: str = ""
    connect_seconds: float = 0.0  # warm-up connect time (warm=True only)

    def to_json(self) -> dict:
        return self.__dict__.copy()


def _collector() -> tuple[list, Any]:
    events: list = []
    return events, events.append


def _phases(events: list) -> dict[str, float]:
    out: dict[str, float] = {}
    for ev in events:
        if type(ev).__name__ == "PhaseFinished":
            out[ev.phase] = max(out.get(ev.phase, 0.0), ev.duration)
    return out


def _summarize(res: Any, events: list, seconds: float, transport: Any, rt0: int, b0: int) -> OpResult:
    hosts = getattr(res, "hosts", ()) or ()
    rts = sum(h.round_trips for h in hosts) if hosts else transport.round_trips - rt0
    sent = sum(h.bytes_sent for h in hosts) if hosts else transport.bytes_sent - b0
    msgs = [f"{h.host}: {h.outcome} {h.message}" for h in hosts if h.outcome not in ("ok", "skipped")]
    return OpResult(
        ok=bool(getattr(res, "ok", True)), seconds=seconds, round_trips=rts, bytes_sent=sent,
        phases=_phases(events), host_seconds={h.host: h.duration for h in hosts},
        message="; ".join(msgs),
    )


async def _warm(transport: Any, env: Any) -> float:
    """Open every host's connection (one ``true`` each) so what follows is 'after connect'."""
    t0 = time.perf_counter()
    await asyncio.gather(*(transport.run(h, "true") for h in env.hosts))
    return time.perf_counter() - t0


async def release(env: Any, version: str, source: Path, *, warm: bool = False) -> OpResult:
    from capview.engine.context import Context
    from capview.engine.deploy import release as _release
    from capview.remote.ssh import SshTransport

    events, emit = _collector()
    async with SshTransport(max_concurrent_connects=32) as tr:
        connect = await _warm(tr, env) if warm else 0.0
        rt0, b0 = tr.round_trips, tr.bytes_sent
        ctx = Context(transport=tr, clock=time.time, emit=emit, operator=OPERATOR)
        t0 = time.perf_counter()
        res = await _release(ctx, env, version, source=source)
        dt = time.perf_counter() - t0
        out = _summarize(res, events, dt, tr, rt0, b0)
        out.connect_seconds = connect
        return out


async def rollback(env: Any, to: str | None, *, warm: bool = True) -> OpResult:
    from capview.engine.context import Context
    from capview.engine.rollback import rollback as _rollback  # type: ignore[import-not-found]
    from capview.remote.ssh import SshTransport

    events, emit = _collector()
    async with SshTransport(max_concurrent_connects=32) as tr:
        connect = await _warm(tr, env) if warm else 0.0
        rt0, b0 = tr.round_trips, tr.bytes_sent
        ctx = Context(transport=tr, clock=time.time, emit=emit, operator=OPERATOR)
        t0 = time.perf_counter()
        res = await _rollback(ctx, env, to=to)
        dt = time.perf_counter() - t0
        out = _summarize(res, events, dt, tr, rt0, b0)
        out.connect_seconds = connect
        return out


async def status(env: Any) -> OpResult:
    """``capview releases`` on every host of env, from a cold start (connects included)."""
    from capview.engine.context import Context
    from capview.engine.status import status as _status
    from capview.remote.ssh import SshTransport

    events, emit = _collector()
    async with SshTransport(max_concurrent_connects=32) as tr:
        ctx = Context(transport=tr, clock=time.time, emit=emit, operator=OPERATOR)
        t0 = time.perf_counter()
        res = await _status(ctx, env)
        dt = time.perf_counter() - t0
        bad = [f"{getattr(s, 'host', '?')}: {getattr(s, 'error', '')}" for s in res
               if getattr(s, "error", None)]
        n_rel = sum(len(getattr(s, "releases", ()) or ()) for s in res)
        return OpResult(ok=not bad and len(res) == len(env.hosts), seconds=dt,
                        round_trips=tr.round_trips, bytes_sent=tr.bytes_sent,
                        message="; ".join(bad) or f"{len(res)} hosts, {n_rel} releases")


async def prune(env: Any, keep: int) -> OpResult:
    """``capview prune --keep N --yes`` on every host of env, from a cold start."""
    from capview.engine.context import Context
    from capview.engine.prune import prune as _prune
    from capview.remote.ssh import SshTransport

    events, emit = _collector()
    async with SshTransport(max_concurrent_connects=32) as tr:
        ctx = Context(transport=tr, clock=time.time, emit=emit, operator=OPERATOR)
        t0 = time.perf_counter()
        res = await _prune(ctx, env, keep=keep)
        return _summarize(res, events, time.perf_counter() - t0, tr, 0, 0)


# ---------------------------------------------------------------- RSS child
def _vm_hwm_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _child_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.capview_side")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("release", help="deploy spec['source'] to one host, print JSON")
    r.add_argument("--spec", required=True, help="JSON: host (HostSpec fields), source, version")
    sc = sub.add_parser("scan", help="scan a tree into its manifest (sha256 of every file), print JSON")
    sc.add_argument("--source", required=True, type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "scan":
        from capview.engine.manifest import scan_tree

        t0 = time.perf_counter()
        scan = scan_tree(args.source, ())
        print(json.dumps({"ok": True, "seconds": time.perf_counter() - t0, "entries": len(scan.entries),
                          "files": scan.files, "vm_hwm_kb": _vm_hwm_kb()}))
        return 0
    spec = json.loads(args.spec)
    env = make_env([HostSpec(**spec["host"])], Path(spec["source"]))
    out = asyncio.run(release(env, spec["version"], Path(spec["source"])))
    res = out.to_json()
    res["vm_hwm_kb"] = _vm_hwm_kb()  # this process's own peak RSS (see run._child_rss)
    print(json.dumps(res))
    return 0 if out.ok else 1


if __name__ == "__main__":
    sys.exit(_child_main())
