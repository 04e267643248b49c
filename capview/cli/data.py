"""How the CLI prints a rollback's data plan (engine/data.py): the loss report before a
``--restore-data`` and the schema-change warning without it, in the words every front
uses (``data_words``: host strings already inert), or as JSON."""

from __future__ import annotations

from capview.cli.render import json_line
from capview.engine.data import data_words


def data_text(plans, *, restore: bool, now: float | None = None) -> str:
    return "".join(line + "\n" for line in data_words(plans, restore=restore, how="add --restore-data", now=now))


def data_json(plans) -> str:
    return "".join(json_line({"event": "DataPlan", **p.to_dict()}) for p in plans)
