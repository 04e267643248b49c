"""Plain-text and JSON tables for the listing commands (releases, history, prune, migrate)."""

from __future__ import annotations

import dataclasses
import json
import time

import humanize

from capview.cli.render import human_bytes, inert
from capview.engine.model import HostStatus


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)


def _age(ts: float | None, now: float) -> str:
    return humanize.naturaltime(now - ts) if ts else "-"


def releases_text(hosts: list[HostStatus], now: float | None = None) -> str:
    now = time.time() if now is None else now
    out: list[str] = []
    for h in hosts:
        if not h.reachable:
            out.append(f"{h.host} ({h.env}): UNREACHABLE - {inert(h.error or 'unknown error')}\n")
            continue
        notes = [f"layout {h.layout}"]
        if h.needs_migration:
            notes.append("needs migration: capview migrate-data " + h.env)
        if h.lock:
            notes.append(f"locked by {inert(h.lock.operator)} ({h.lock.operation})")
        if h.free_bytes is not None:
            notes.append(f"{human_bytes(h.free_bytes)} free")
        out.append(f"{h.host} ({h.env}): current {h.current or '-'}; " + "; ".join(notes) + "\n")
        rows = [("", "version", "state", "age", "size", "unique", "operator", "commit", "health", "downtime")]
        for r in h.releases:
            mark = "●" if r.current else ("◦" if r.previous else " ")
            state = r.state + (" 📌" if r.pinned else "")
            rows.append((
                mark, inert(r.version), state, _age(r.deployed_at or r.started_at, now),
                human_bytes(r.size_bytes), human_bytes(r.unique_bytes), inert(r.operator or "-"),
                inert(r.commit or "-"), r.health or "-", f"{r.downtime:.2f}s" if r.downtime is not None else "-",
            ))
        out.append(_table(rows) if len(rows) > 1 else "  (no releases)\n")
    return "".join(out)


def releases_json(hosts: list[HostStatus]) -> str:
    return "".join(json.dumps(dataclasses.asdict(h), sort_keys=True) + "\n" for h in hosts)


def history_text(per_host: dict[str, list[dict]], limit: int = 20) -> str:
    out: list[str] = []
    for host, records in per_host.items():
        out.append(f"{host}:\n")
        rows = [("when", "op", "version", "from", "to", "outcome", "downtime", "operator")]
        for r in records[-limit:]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("at") or 0))
            dt = r.get("downtime")
            rows.append((when, str(r.get("op", "?")), inert(str(r.get("version") or "-")),
                         inert(str(r.get("from") or "-")), inert(str(r.get("to") or "-")),
                         str(r.get("outcome", "?")), f"{dt:.2f}s" if isinstance(dt, (int, float)) else "-",
                         inert(str(r.get("operator") or "-"))))
        out.append(_table(rows) if len(rows) > 1 else "  (no history)\n")
    return "".join(out)


def prune_text(plans) -> str:
    out: list[str] = []
    for plan in plans:
        if getattr(plan, "error", None):
            out.append(f"{plan.host}: UNREACHABLE - {inert(plan.error)}\n")
            continue
        out.append(f"{plan.host}: keep {plan.keep}" + (f", {plan.trash} leftover trash to finish" if plan.trash else "") + "\n")
        rows = [("version", "action", "why", "frees")]
        total = 0
        for item in plan.items:
            frees = item.frees_bytes if item.action == "delete" else 0
            total += frees
            rows.append((inert(item.version), item.action, item.reason, human_bytes(frees) if frees else "-"))
        out.append(_table(rows))
        out.append(f"  total freed: {human_bytes(plan.total or total)}\n")
    return "".join(out)


def migration_text(plans) -> str:
    out: list[str] = []
    for plan in plans:
        out.append(f"{plan.host}: layout {plan.layout}" + ("" if plan.needed else " - nothing to do (already migrated)") + "\n")
        for step in getattr(plan, "steps", ()) or ():
            out.append(f"  {inert(str(step))}\n")
    return "".join(out)


def verify_text(results) -> str:
    out: list[str] = []
    for r in results:
        name = inert(r.version or "current")
        if not r.reachable:
            out.append(f"{r.host}: UNREACHABLE - {inert(r.error or 'unknown error')}\n")
        elif r.error:
            out.append(f"{r.host}: {name}: {inert(r.error)}\n")
        elif r.ok:
            built = f", {r.built} from the build" if r.built else ""
            out.append(f"{r.host}: {name} verified: matches what was deployed ({r.checked} entries{built})\n")
        else:
            counts = ", ".join(f"{len(r.of_kind(k))} {k}" for k in ("changed", "missing", "extra"))
            out.append(f"{r.host}: {name} DIFFERS from what was deployed: {counts}\n")
            out.append(_table([(d.kind, inert(d.path), inert(d.detail)) for d in r.differences]))
    return "".join(out)


def verify_json(results) -> str:
    return "".join(json.dumps({**dataclasses.asdict(r), "ok": r.ok}, sort_keys=True) + "\n" for r in results)
