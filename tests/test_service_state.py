"""Service state parsing and rendering (issue 16), without a host: what systemd and a
status command answer becomes a ServiceState; hostile host text stays inert; a live
release never reads "ok" while its service is down; the fail-fast poll's own logic
runs in a real ``sh`` against a fake ``systemctl``."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from capview.cli.tables import check_json, releases_json, releases_text
from capview.config import HealthConfig, ServiceConfig, Settings
from capview.engine.check import HostCheck
from capview.engine.model import HostStatus, ReleaseInfo, ServiceState
from capview.engine.scripts.service import health_function
from capview.engine.scripts.shell import Frames
from capview.engine.service_state import parse_service

SYSTEMD = Settings(app="a", deploy_path="/srv/a", source=Path("/src"),
                   service=ServiceConfig(manager="systemd-user", unit="a.service"),
                   health=HealthConfig(url="http://127.0.0.1:9/health", timeout=30, interval=1))
COMMAND = dataclasses.replace(SYSTEMD, service=ServiceConfig(manager="command", start="s", stop="t", status="st"))


def show(active="active", sub="running", restarts=0, status=0, since=100.0, up=1000.0) -> str:
    return (f"LoadState=loaded\nActiveState={active}\nSubState={sub}\nNRestarts={restarts}\n"
            f"ExecMainStatus={status}\nMainPID=42\nStateChangeTimestampMonotonic={int((up - since) * 1e6)}\n"
            f"uptime={up:.2f}\n")


@pytest.mark.parametrize("body,condition", [
    (show(), "running"),
    (show("inactive", "dead"), "down"),
    (show("failed", "failed", status=3), "down"),
    (show("activating", "auto-restart", restarts=4, status=1), "crash-looping"),
    (show("active", "running", restarts=2, since=1.0), "crash-looping"),  # just restarted on its own
    (show("active", "running", restarts=2, since=3600.0), "running"),  # restarted once, long stable
    (show("activating", "start"), "starting"),
])
def test_systemd_answers_become_conditions(body, condition):
    st = parse_service(SYSTEMD, body)
    assert st.condition == condition, st
    assert st.down == (condition in ("down", "crash-looping"))
    assert st.unit == "a.service" and st.main_pid == 42


def test_since_is_uptime_minus_the_state_change():
    st = parse_service(SYSTEMD, show(since=12.5, up=5000.0))
    assert st.since_seconds == pytest.approx(12.5, abs=0.01)
    assert parse_service(SYSTEMD, show().replace("uptime=1000.00", "uptime=")).since_seconds is None


def test_command_manager_and_none():
    assert parse_service(COMMAND, "status_exit=0\n").condition == "running"
    st = parse_service(COMMAND, "status_exit=3\n")
    assert st.condition == "down" and st.summary == "down (status exit 3)"
    none = dataclasses.replace(SYSTEMD, service=ServiceConfig(manager="none"))
    assert parse_service(none, None).condition == "unknown" and not parse_service(none, None).down


def test_hostile_answers_are_never_trusted_nor_rendered():
    evil = "\x1b]52;c;aGk=\x07\x1b[2J\u202e"
    st = parse_service(SYSTEMD, f"ActiveState=act{evil}ive\nSubState=running\nNRestarts=9{evil}\n")
    assert st.active_state is None and st.condition == "unknown"
    st = parse_service(SYSTEMD, f"Failed to connect to bus: {evil}\n")
    assert st.error and st.condition == "unknown"
    h = HostStatus(host="h", env="e", reachable=True, current="v1", service=st,
                   releases=(ReleaseInfo(version="v1", state="live", current=True, health="ok"),))
    text = releases_text([h], now=0)
    assert "\x1b" not in text and "\u202e" not in text and "\\x1b" in text, text
    doc = json.loads(releases_json([h]))
    assert doc["service"]["condition"] == "unknown" and "\x1b" in doc["service"]["error"]  # JSON: exact, escaped


def test_a_live_release_is_not_ok_while_its_service_is_down():
    down = parse_service(SYSTEMD, show("failed", "failed", status=3))
    rel = ReleaseInfo(version="v1", state="live", current=True, health="ok", downtime=0.2, unavailable=0.7)
    h = HostStatus(host="h", env="e", reachable=True, current="v1", service=down, releases=(rel,))
    text = releases_text([h], now=0)
    row = [line for line in text.splitlines() if "●" in line and "v1" in line][0]
    assert "DOWN" in row and " ok " not in row, text
    assert "service down: failed/failed, exit 3" in text, text
    assert "0.70s" in row or "700ms" in row or "0.7" in row, row  # the headline is unavailable
    doc = json.loads(releases_json([h]))
    assert doc["service"]["down"] is True and doc["releases"][0]["unavailable"] == 0.7
    assert doc["releases"][0]["downtime"] == 0.2  # the stop -> start detail stays
    rep = HostCheck("h", False, ("x",), service=down)
    assert json.loads(check_json([rep]))["service"]["active_state"] == "failed"


FAKE_SYSTEMCTL = """#!/bin/sh
# a fake `systemctl --user show ...`: the state is read from $FAKE_STATE (one line per call)
n=$(cat "$FAKE_STATE.n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$FAKE_STATE.n"
line=$(sed -n "${n}p" "$FAKE_STATE"); [ -n "$line" ] || line=$(tail -n 1 "$FAKE_STATE")
set -- $line
printf 'ActiveState=%s\\nSubState=%s\\nNRestarts=%s\\nExecMainStatus=%s\\n' "$1" "$2" "$3" "$4"
"""


def run_poll(tmp_path, states: list[str], timeout: float = 30) -> tuple[int, list[tuple[str, str]], float]:
    """The real health function in sh, curl answering 000, systemctl replaying ``states``."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_ / "curl").write_text("#!/bin/sh\nprintf 000\n")
    for p in bin_.iterdir():
        p.chmod(0o755)
    (tmp_path / "state").write_text("\n".join(states) + "\n")
    (tmp_path / "state.n").unlink(missing_ok=True)
    f = Frames.new()
    s = dataclasses.replace(SYSTEMD, health=HealthConfig(url="http://127.0.0.1:9/h", timeout=timeout, interval=1))
    script = (f.prelude() + f"cv_why={tmp_path}/why\n" + health_function(s)
              + 'cv_health; rc=$?\nmark rc "$rc"\n')
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "FAKE_STATE": str(tmp_path / "state")}
    cp = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    got = [(k, a) for k, a, _ in f.parse(cp.stdout)]
    calls = int((tmp_path / "state.n").read_text())
    return int(dict(got)["rc"]), got, calls


def test_the_poll_stops_at_once_when_the_unit_failed(tmp_path):
    rc, got, calls = run_poll(tmp_path, ["activating start 0 0", "failed failed 0 3"])
    assert rc == 3 and ("health", "dead the service is failed/failed (exit 3)") in got, got
    assert calls == 2 and (tmp_path / "why").read_text().strip() == "the service is failed/failed (exit 3)"


def test_the_poll_calls_a_moving_restart_counter_a_crash_loop(tmp_path):
    rc, got, _ = run_poll(tmp_path, ["active running 0 0", "active running 1 1"])
    assert rc == 3 and ("health", "dead the service is crash-looping (restarted 1 times, exit 1)") in got, got
    rc, got, _ = run_poll(tmp_path, ["activating auto-restart 2 1"])
    assert rc == 3 and any(a.startswith("dead the service is crash-looping") for k, a in got if k == "health")


def test_a_running_unit_that_never_answers_waits_for_the_timeout(tmp_path):
    rc, got, calls = run_poll(tmp_path, ["active running 0 0"], timeout=1.2)
    assert rc == 1 and ("health", "failed 000") in got, got
    # backoff 20, 40, 80, 160, then 250 ms pauses: about 7-9 polls in 1.2 s, not 1 per second
    assert 5 <= calls <= 12, calls


def test_hostile_state_words_never_reach_the_reason(tmp_path):
    rc, got, _ = run_poll(tmp_path, ['failed "x\\y$(id) 0 3'])
    assert rc == 3
    why = (tmp_path / "why").read_text()
    assert '"' not in why and "\\" not in why and "$" not in why, why
