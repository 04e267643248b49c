"""history.jsonl: parsing, the live-stack replay, and the append snippet."""

from __future__ import annotations

import json
import subprocess

from capview.engine.history import history_record, live_stack, parse_history, previous_live
from capview.engine.layout import HostPaths
from capview.engine.scripts.ops import append_record


def rel(v, prev=None, outcome="ok"):
    return {"op": "release", "version": v, "from": prev, "to": v if outcome == "ok" else prev, "outcome": outcome}


def rb(frm, to, outcome="ok"):
    return {"op": "rollback", "version": to, "from": frm, "to": to, "outcome": outcome}


def test_parse_skips_corrupt_lines():
    text = '{"op":"release","to":"v1","outcome":"ok"}\nnot json\n{"op":"rel\n[1,2]\n\n{"op":"prune"}\n'
    assert parse_history(text) == [{"op": "release", "to": "v1", "outcome": "ok"}, {"op": "prune"}]


def test_rollback_default_walks_back_one_at_a_time():
    recs = [rel("v1"), rel("v2", "v1"), rel("v3", "v2"), rel("v4", "v3"), rel("v5", "v4")]
    assert live_stack(recs) == ["v1", "v2", "v3", "v4", "v5"]
    assert previous_live(recs, "v5") == "v4"
    recs.append(rb("v5", "v4"))
    assert previous_live(recs, "v4") == "v3"
    recs.append(rb("v4", "v3"))
    assert previous_live(recs, "v3") == "v2"


def test_auto_rolled_back_release_never_stays_on_stack():
    recs = [rel("v1"), rel("v2", "v1"), rel("v3", "v2", outcome="rolled_back"),
            {"op": "release", "to": None, "version": "v4", "outcome": "failed"}]
    assert live_stack(recs) == ["v1", "v2"]
    assert previous_live(recs, "v2") == "v1"


def test_rollback_to_version_not_on_stack_pushes_it():
    recs = [rel("v1"), rel("v2", "v1"), rel("v3", "v2"), rb("v3", "v1")]
    assert live_stack(recs) == ["v1"]
    recs.append(rb("v1", "v2"))  # v2 was popped: pushed again
    assert live_stack(recs) == ["v1", "v2"]
    assert previous_live(recs, "v2") == "v1"


def test_previous_skips_pruned_and_handles_unknown_current():
    recs = [rel("v1"), rel("v2", "v1"), rel("v3", "v2")]
    assert previous_live(recs, "v3", existing={"v1", "v3"}) == "v1"
    assert previous_live(recs, "vX") == "v3"  # current changed by hand: last live is the previous
    assert previous_live([], "v1") is None
    assert previous_live([{"op": "release", "to": "../etc", "outcome": "ok"}], None) is None


def test_migrate_pushes():
    recs = [{"op": "migrate", "to": "legacy", "outcome": "ok"}, rel("v1", "legacy")]
    assert previous_live(recs, "v1") == "legacy"


def test_append_record_script_is_one_safe_line(tmp_path):
    dp = tmp_path / "d p"
    nasty = "it's \"quoted\"\nnew line $(touch pwned) `x`"
    rec = history_record("pin", "h1", "me@box", 12.5, version="v1", error=nasty)
    for _ in range(2):
        subprocess.run(["sh", "-c", append_record(HostPaths(str(dp)), rec)], check=True, cwd=tmp_path)
    lines = (dp / ".capview" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == rec
    assert not (tmp_path / "pwned").exists()
