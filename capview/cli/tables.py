"""Plain-text and JSON tables for the listing commands (releases, history, prune, migrate, check).

Releases are listed newest first, as the dashboard lists them. Every value that came
from a host goes through :func:`capview.inert.clip` with a per-column width, so one
huge field (a 10 MB ``operator``) neither floods the terminal nor pads every row.
JSON carries plain bytes and seconds.
"""

from __future__ import annotations

import dataclasses
import time

from capview import inert, units
from capview.cli.render import json_line
from capview.engine.model import HostStatus, ReleaseInfo, ServiceState

# Widest a host-provided cell may be, per kind of column (characters).
WIDTH = {"version": 64, "operator": 40, "commit": 16, "health": 12, "state": 16, "why": 80, "op": 12,
         "outcome": 12, "host": 40, "reason": 60, "note": 200}


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)


def cell(value: object, kind: str) -> str:
    """A host-provided value as a table cell: inert, clipped to its column's width, '-' if empty."""
    if value is None or value == "":
        return "-"
    return inert.clip(value, WIDTH[kind])


def newest_first(h: HostStatus):
    """The engine lists releases oldest first; fronts show them newest first."""
    return tuple(reversed(h.releases))


def releases_text(hosts: list[HostStatus], now: float | None = None, split=None) -> str:
    now = time.time() if now is None else now
    out: list[str] = []
    if split is not None and split.split:  # issue 17: a split environment is the first thing said
        out.append("WARNING: " + inert.clip(split.line(), WIDTH["note"] * 4) + "\n")
    for h in hosts:
        name = f"{cell(h.host, 'host')} ({cell(h.env, 'host')})"
        if not h.reachable:
            out.append(f"{name}: UNREACHABLE - {inert.clip(h.error or 'unknown error', WIDTH['note'])}\n")
            continue
        notes = [f"layout {h.layout}"]
        if h.needs_migration:
            notes.append("needs migration: capview migrate-data " + cell(h.env, "host"))
        if h.lock:
            notes.append(f"locked by {cell(h.lock.operator, 'operator')} ({cell(h.lock.operation, 'op')})")
        if h.free_bytes is not None:
            notes.append(f"{units.size(h.free_bytes)} free")
        if h.service.condition != "unknown" or h.service.error:
            notes.append("service " + service_cell(h.service))
        out.append(f"{name}: current {cell(h.current, 'version')}; " + "; ".join(notes) + "\n")
        rows = [("", "version", "state", "age", "size", "unique", "operator", "commit", "health", "downtime")]
        for r in newest_first(h):
            mark = "●" if r.current else ("◦" if r.previous else " ")
            state = cell(r.state, "state") + (" 📌" if r.pinned else "")
            ts = r.deployed_at or r.started_at
            rows.append((
                mark, cell(r.version, "version"), state, units.age(now - ts) if ts else "-",
                *(("…", "…") if r.usage_pending else (units.size(r.size_bytes), units.size(r.unique_disk_bytes))),
                cell(r.operator, "operator"),
                cell(r.commit, "commit"), release_health(h, r), units.duration(headline_downtime(r)),
            ))
        out.append(_table(rows) if len(rows) > 1 else "  (no releases)\n")
        pending = sum(1 for r in h.releases if r.usage_pending)
        if pending:  # issue 21: a cold usage cache is summed on the host after the listing
            out.append(f"  … sizes of {units.plural(pending, 'release')} are still being summed on the host "
                       "(cold usage cache): run again in a moment\n")
        errors = [(r.version, r.error) for r in newest_first(h) if r.error and r.state == "incomplete"]
        for version, error in errors:
            out.append(f"  {cell(version, 'version')}: {inert.clip(error, WIDTH['note'])}\n")
    if out:
        out.append("(● current, ◦ previous: the default rollback target; newest first; "
                   "downtime: stop begun -> first healthy answer)\n")
    return "".join(out)


def headline_downtime(r) -> float | None:
    """What clients saw (unavailable: stop begun -> first healthy answer); the stop -> start
    window for releases recorded before it was kept (issue 16)."""
    return r.unavailable if r.unavailable is not None else r.downtime


def service_cell(state: ServiceState) -> str:
    """The service state for a text line: ``running``, ``down: failed/failed, exit 3`` ..."""
    text = state.summary
    if state.since_seconds is not None and state.condition != "unknown":
        text += f" for {units.age(state.since_seconds)}"
    return inert.clip(text, WIDTH["note"])


def release_health(h: HostStatus, r) -> str:
    """A live release never shows "ok" while its service is down or crash-looping."""
    if r.current and h.service.down:
        return h.service.condition.upper()
    return cell(r.health, "health")


def service_json(state: ServiceState | None) -> dict | None:
    """Plain keys: the manager's own values, ``condition`` and ``down``."""
    if state is None:
        return None
    return {**dataclasses.asdict(state), "condition": state.condition, "down": state.down}


def releases_json(hosts: list[HostStatus], split=None) -> str:
    """One object per host; its releases newest first, as the text table. issue 17: with
    ``split`` (engine.status.Split) each also says whether the environment is split, what
    every host runs, and the version it can converge to."""
    docs = []
    for h in hosts:
        # asdict deep-copies: once per release, not twice, and shallow (10,000 releases: 2.4 s -> 0.3 s)
        doc = dataclasses.asdict(dataclasses.replace(h, releases=(), recent=()))
        del doc["recent"]  # `capview history --json` is where records are read
        names = [f.name for f in dataclasses.fields(ReleaseInfo)]
        doc["releases"] = [{n: getattr(r, n) for n in names} for r in newest_first(h)]
        doc["service"] = service_json(h.service)
        if split is not None:
            doc.update(split=split.split, versions=dict(split.versions), converge_to=split.converge_to)
        docs.append(json_line(doc))
    return "".join(docs)


def _when(at: object) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at)))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def history_text(per_host: dict[str, list[dict]], limit: int = 20) -> str:
    out: list[str] = []
    for host, records in per_host.items():
        out.append(f"{cell(host, 'host')}:\n")
        rows = [("when", "op", "version", "from", "to", "outcome", "downtime", "operator", "why")]
        for r in records[-limit:] if limit > 0 else []:
            dt = r.get("unavailable") if r.get("unavailable") is not None else r.get("downtime")
            dt = dt if isinstance(dt, (int, float)) and not isinstance(dt, bool) else None
            rows.append((_when(r.get("at")), cell(r.get("op"), "op"), cell(r.get("version"), "version"),
                         cell(r.get("from"), "version"), cell(r.get("to"), "version"),
                         cell(r.get("outcome"), "outcome"), units.duration(dt), cell(r.get("operator"), "operator"),
                         cell(why(r), "why")))
        out.append(_table(rows) if len(rows) > 1 else "  (no history)\n")
    return "".join(out)


def why(record: dict) -> str | None:
    """Why a release failed or was rolled back (the record's ``error``), else nothing."""
    if record.get("outcome") in (None, "ok"):
        return None
    error = record.get("error")
    return error if isinstance(error, str) else None


def prune_text(plans) -> str:
    out: list[str] = []
    for plan in plans:
        if getattr(plan, "error", None):
            out.append(f"{cell(plan.host, 'host')}: UNREACHABLE - {inert.clip(plan.error, WIDTH['note'])}\n")
            continue
        trash = f", {units.plural(plan.trash, 'leftover trash entry', 'leftover trash entries')} to finish" \
            if plan.trash else ""
        out.append(f"{cell(plan.host, 'host')}: keep {plan.keep}{trash}\n")
        rows = [("version", "action", "why", "frees")]
        for item in reversed(plan.items):
            frees = item.frees_bytes if item.action == "delete" else 0
            rows.append((cell(item.version, "version"), item.action, cell(item.reason, "reason"),
                         units.size(frees) if frees else "-"))
        out.append(_table(rows) if len(rows) > 1 else "  (no releases)\n")
        n = len(plan.deletions)
        out.append(f"  {units.plural(n, 'release')} to delete, {units.size(plan.total)} freed\n")
    return "".join(out)


def prune_json(plans) -> str:
    docs = []
    for plan in plans:
        docs.append(json_line({
            "event": "PrunePlan", "host": plan.host, "keep": plan.keep, "reachable": plan.reachable,
            "error": plan.error, "trash": plan.trash, "total_bytes": plan.total,
            "items": [{"version": i.version, "action": i.action, "reason": i.reason, "frees_bytes": i.frees_bytes}
                      for i in reversed(plan.items)],
        }))
    return "".join(docs)


def migration_text(plans, *, rewrite_unit: bool = False) -> str:
    out: list[str] = []
    for plan in plans:
        host = cell(plan.host, "host")
        if not plan.reachable:
            out.append(f"{host}: UNREACHABLE - {inert.clip(plan.error or '', WIDTH['note'])}\n")
            continue
        out.append(f"{host}: layout {plan.layout}" + ("" if plan.needed else f" - {inert.clip(plan.message or 'nothing to do', WIDTH['note'])}") + "\n")
        for step in plan.steps:
            out.append(f"  {inert.clip(step, WIDTH['note'])}\n")
        for blocker in plan.blockers:
            out.append(f"  cannot migrate: {inert.clip(blocker, WIDTH['note'])}\n")
        if plan.unit_lines:
            out.append(f"  {cell(plan.unit_path, 'note')} names the old paths:\n")
            out.extend(f"    {inert.clip(line, WIDTH['note'])}\n" for line in plan.unit_lines)
        if rewrite_unit and plan.unit_lines:
            if plan.unit_rewrite is None:
                out.append(f"  --rewrite-unit: {cell(plan.unit_path, 'note')} is not writable; it would not be rewritten\n")
            else:
                out.append(f"  --rewrite-unit would write {cell(plan.unit_path, 'note')} as (a backup is kept):\n")
                out.extend(f"    | {inert.line(line)}\n" for line in plan.unit_rewrite.splitlines())
    return "".join(out)


def migration_json(plans) -> str:
    return "".join(json_line({"event": "MigrationPlan", **dataclasses.asdict(p)}) for p in plans)


def check_text(reports, *, verbose: bool = False, split=None) -> str:
    out: list[str] = []
    if split is not None and split.split:  # issue 17
        out.append("WARNING: " + inert.clip(split.line(), WIDTH["note"] * 4) + "\n")
    for r in reports:
        host = cell(r.host, "host")
        status = "OK" if r.ok else "FAIL"
        free = r.free_kb * 1024 if r.free_kb is not None else None
        extra = f" ({units.size(free)} free)" if r.ok and free is not None else ""
        out.append(f"{host:<16} {status}{extra}" + ("" if r.ok else ": " + inert.clip("; ".join(r.failures), 1000)) + "\n")
        if verbose:
            out.extend(f"{'':<16} ok: {inert.clip(p, WIDTH['note'])}\n" for p in r.passed)
            out.extend(f"{'':<16} failed: {inert.clip(f, WIDTH['note'])}\n" for f in r.failures)
        for w in r.warnings:
            out.append(f"{'':<16} warning: {inert.clip(w, WIDTH['note'])}\n")
    return "".join(out)


def check_json(reports, split=None) -> str:
    env = {"split": split.split, "versions": dict(split.versions)} if split is not None else {}
    return "".join(json_line({
        "host": r.host, "ok": r.ok, "failures": list(r.failures), "warnings": list(r.warnings),
        "passed": list(r.passed), "free_bytes": r.free_kb * 1024 if r.free_kb is not None else None,
        "service": service_json(getattr(r, "service", None)),
        "current": r.current, **env,
    }) for r in reports)


def verify_text(results) -> str:
    out: list[str] = []
    for r in results:
        name = cell(r.version or "current", "version")
        if not r.reachable:
            out.append(f"{cell(r.host, 'host')}: UNREACHABLE - {inert.clip(r.error or 'unknown error', WIDTH['note'])}\n")
        elif r.error:
            out.append(f"{cell(r.host, 'host')}: {name}: {inert.clip(r.error, WIDTH['note'])}\n")
        elif r.ok:
            built = f", {r.built} from the build" if r.built else ""
            out.append(f"{cell(r.host, 'host')}: {name} verified: matches what was deployed ({r.checked} entries{built})\n")
        else:
            counts = ", ".join(f"{len(r.of_kind(k))} {k}" for k in ("changed", "missing", "extra"))
            out.append(f"{cell(r.host, 'host')}: {name} DIFFERS from what was deployed: {counts}\n")
            out.append(_table([(d.kind, inert.clip(d.path, WIDTH['note']), inert.clip(d.detail, WIDTH['note'])) for d in r.differences]))
    return "".join(out)


def verify_json(results) -> str:
    return "".join(json_line({**dataclasses.asdict(r), "ok": r.ok}) for r in results)
