"""How the CLI words a rollback's data plan (engine/data.py): the loss report before a
``--restore-data`` and the schema-change warning without it. Everything from a host
(table names come from the databases) goes through inert.py."""

from __future__ import annotations

import time

from capview import inert, units
from capview.cli.render import json_line


def data_text(plans, *, restore: bool, now: float | None = None) -> str:
    now = time.time() if now is None else now
    out = []
    for p in plans:
        host = inert.clip(p.host, 40)
        if p.error:
            out.append(f"{host}: data: {inert.clip(p.error, 300)}\n")
            continue
        target = inert.clip(p.target or "?", 64)
        snap = p.snapshot
        if restore:
            if snap is None:
                out.append(f"{host}: no data snapshot of {target} (one is taken when the release after it starts) "
                           "- nothing can be restored\n")
                continue
            when = units.ago(now - snap.taken_at) if snap.taken_at is not None else "at an unknown time"
            out.append(f"{host}: restoring the data {target} left, snapshot taken {when}; "
                       "the data as it is now is kept as a snapshot first. It loses:\n")
            out += [f"  {inert.clip(line, 300)}\n" for line in p.losses] or ["  nothing (no change since)\n"]
        elif p.schema:
            changes = "; ".join(inert.clip(s, 200) for s in p.schema)
            out.append(f"{host}: warning: rolling back to {target} crosses a schema change ({changes}). {target} "
                       "will run on the data as it is now; to run it on the data it left instead (losing what was "
                       "written since), add --restore-data\n")
    return "".join(out)


def data_json(plans) -> str:
    return "".join(json_line({"event": "DataPlan", **p.to_dict()}) for p in plans)
