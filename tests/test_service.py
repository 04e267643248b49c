"""Service truth (issue 16) on the real testbed: a real ``systemd --user`` unit stopped
by hand, dying at once or crash-looping shows as such in ``releases``, ``--json`` and
``check`` (exit 4); a release whose app dies is failed within 2 s of health time and
reverted; the unavailable window matches what a client saw; a ``.env`` change reaches
the app with ``capview restart``; health.log is 0600 with the reason.

The app here is our own small server (``SVC_APP``) so it can die, crash or print hostile
bytes on demand: ``DIE`` in the release makes it print and exit 3 at once, ``data/CRASH``
(shared) makes every start exit 4.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import pytest

from capview.config import HealthConfig, load_config
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostFinished
from capview.remote.ssh import SshTransport

from clihelp import ENV_NAME, run_cli, show, write_config
from invariants import assert_states_consistent
from realhost import make_source, new_app

pytestmark = pytest.mark.testbed

HOSTILE = "\x1b]52;c;aGFja2Vk\x07\x1b[2J\x9b31m\u202e"
SVC_APP = r'''
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
HERE = os.path.dirname(os.path.realpath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
if os.path.exists(os.path.join(HERE, "DIE")):
    print("dying at once " + HOSTILE, flush=True)
    sys.exit(3)
if os.path.exists(os.path.join(HERE, "data", "CRASH")):
    print("crashing " + HOSTILE, flush=True)
    sys.exit(4)
def secret():
    for line in open(os.path.join(HERE, ".env")):
        if line.startswith("SECRET="):
            return line.split("=", 1)[1].strip()
SECRET = secret()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = (SECRET if self.path == "/env" else VERSION).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer.allow_reuse_address = True
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("svcapp " + VERSION + " up", flush=True)
s.serve_forever()
'''.replace("HOSTILE", repr(HOSTILE))


def source(tmp_path, version: str, *, die: bool = False):
    extra = {"app.py": SVC_APP}
    if die:
        extra["DIE"] = "exit at once\n"
    return make_source(tmp_path, version, files=2, extra=extra)


def unit_text(app, *, restart: str = "no") -> str:
    extra = "RestartSec=300ms\nStartLimitIntervalSec=0\n" if restart != "no" else ""
    return ("[Unit]\nDescription=capview service test app\nStartLimitIntervalSec=0\n\n"
            f"[Service]\nExecStart=/usr/bin/python3 -u {app.deploy_path}/current/app.py {app.port}\n"
            f"WorkingDirectory={app.deploy_path}/current\nRestart={restart}\n{extra}")


def ctx(transport, events=None) -> Context:
    return Context(transport=transport, emit=(events.append if events is not None else (lambda e: None)))


@pytest.fixture
def deployed(host, tmp_path):
    """v1 of SVC_APP live (no build), and the deploy.yaml for the CLI."""
    app = new_app(host, build=False)
    source(tmp_path, "v1")
    cfg = write_config(tmp_path / "deploy.yaml", [app], source="./src-v1", build=False)
    code = run_cli("-c", str(cfg), "release", "v1", ENV_NAME)
    assert code.returncode == 0, show(code)
    assert app.get() == (200, "v1")
    return app, cfg


def releases_json(cfg) -> dict:
    cp = run_cli("-c", str(cfg), "--json", "releases", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    return json.loads(cp.stdout.splitlines()[0])


def test_a_unit_stopped_by_hand_is_down_in_releases_and_check_then_restart_fixes_it(deployed):
    app, cfg = deployed
    doc = releases_json(cfg)
    assert doc["service"]["condition"] == "running" and doc["service"]["active_state"] == "active", doc["service"]
    assert doc["service"]["main_pid"] and doc["service"]["since_seconds"] >= 0
    assert run_cli("-c", str(cfg), "check", ENV_NAME).returncode == 0

    app.host.systemctl("stop", app.unit, check=True)
    doc = releases_json(cfg)
    svc = doc["service"]
    assert (svc["condition"], svc["down"], svc["active_state"]) == ("down", True, "inactive"), svc
    text = run_cli("-c", str(cfg), "releases", ENV_NAME).stdout
    assert "service down: inactive/dead" in text, text
    live = [l for l in text.splitlines() if l.lstrip().startswith("●")]
    assert len(live) == 1 and "DOWN" in live[0] and " ok " not in live[0], text  # never "ok" while down

    cp = run_cli("-c", str(cfg), "check", ENV_NAME)
    assert cp.returncode == 4, show(cp)
    assert "FAIL" in cp.stdout and f"capview logs {ENV_NAME}" in cp.stdout and f"capview restart {ENV_NAME}" in cp.stdout
    cj = json.loads(run_cli("-c", str(cfg), "--json", "check", ENV_NAME).stdout.splitlines()[0])
    assert cj["ok"] is False and cj["service"]["condition"] == "down"

    cp = run_cli("-c", str(cfg), "restart", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    assert releases_json(cfg)["service"]["condition"] == "running"
    assert run_cli("-c", str(cfg), "check", ENV_NAME).returncode == 0


def test_a_crash_looping_live_release_is_shown_crash_looping_not_ok(deployed):
    app, cfg = deployed
    app.host.install_unit(app.unit, unit_text(app, restart="always"))
    app.sh(f"touch {app.deploy_path}/shared/data/CRASH")
    app.host.systemctl("restart", app.unit)
    time.sleep(1.0)  # a few restarts
    svc = releases_json(cfg)["service"]
    assert svc["condition"] == "crash-looping" and svc["restarts"] >= 1 and svc["down"], svc
    cp = run_cli("-c", str(cfg), "check", ENV_NAME)
    assert cp.returncode == 4 and "crash-looping" in cp.stdout, show(cp)
    app.sh(f"rm -f {app.deploy_path}/shared/data/CRASH")


def _history(app) -> dict:
    return app.history()[-1]


@pytest.mark.parametrize("restart", ["no", "always"])
def test_an_app_that_dies_at_once_fails_fast_and_is_reverted(deployed, tmp_path, restart):
    """health.timeout 30s: a dead (Restart=no) or crash-looping (Restart=always) unit ends
    the health wait within 2 s of health time (measured on the host), then the revert."""
    app, cfg = deployed
    if restart != "no":
        app.host.install_unit(app.unit, unit_text(app, restart=restart))
        app.host.systemctl("restart", app.unit, check=True)
    source(tmp_path, "v2", die=True)
    import yaml
    doc = yaml.safe_load(cfg.read_text())
    doc["health"]["timeout"] = "30s"
    doc["source"] = "./src-v2"
    cfg.write_text(yaml.safe_dump(doc))
    t = time.monotonic()
    cp = run_cli("-c", str(cfg), "release", "v2", ENV_NAME)
    wall = time.monotonic() - t
    assert cp.returncode == 1, show(cp)
    rec = _history(app)
    assert rec["outcome"] == "rolled_back" and rec["to"] == "v1", rec
    assert rec["health_seconds"] < 2.0, rec  # the host's own measure of the failed health wait
    word = "crash-looping" if restart == "always" else "failed/failed (exit 3)"
    assert word in rec["error"], rec
    assert word in cp.stdout + cp.stderr, show(cp)
    assert wall < 25, (wall, show(cp))  # far below the 30 s timeout even on a loaded machine
    assert "\x1b" not in cp.stdout + cp.stderr and "\x9b" not in cp.stdout + cp.stderr
    assert app.get() == (200, "v1") and app.current() == "releases/v1"
    assert app.release_json("v2")["state"] == "failed"
    log = f"{app.deploy_path}/releases/v2/.capview/health.log"
    assert app.sh(f"stat -c %a {log}").strip() == "600"
    text = app.sh(f"cat {log}")
    assert "dying at once" in text and rec["error"] in text, text
    # capview logs shows what the dead app printed, its escape sequences inert
    lg = run_cli("-c", str(cfg), "logs", ENV_NAME, "-n", "50")
    assert lg.returncode == 0 and "dying at once" in lg.stdout, show(lg)
    assert "\x1b" not in lg.stdout and "\x9b" not in lg.stdout and "\u202e" not in lg.stdout, lg.stdout
    assert "\\x1b]52" in lg.stdout, lg.stdout
    # the unavailable window lasts until v1 answered again, and is the history's headline:
    # from the switch (stop begun) to reverted and healthy, measured on the host
    assert rec["unavailable"] is not None and rec["unavailable"] >= rec["downtime"] > 0, rec
    assert rec["unavailable"] < 5.0, rec
    print(f"\n[fail-fast {restart}] health {rec['health_seconds']}s, switch -> reverted and healthy "
          f"{rec['unavailable']}s, stop -> start {rec['downtime']}s, CLI wall {wall:.2f}s; {rec['error']}")
    assert_states_consistent(app.deploy_path)
    assert releases_json(cfg)["service"]["condition"] == "running"


def test_a_release_that_runs_but_never_answers_still_waits_for_the_timeout(host, tmp_path):
    """No false fail-fast: a live process that never answers 200 is failed by the timeout."""
    app = new_app(host, build=False)
    env1 = app.env(source(tmp_path, "v1"))

    async def go():
        async with SshTransport() as t:
            assert (await release(ctx(t), env1, "v1")).ok
            src = source(tmp_path, "v2")
            env2 = app.env(src, health=HealthConfig(url=f"http://127.0.0.1:{app.port}/nothing-here",
                                                    timeout=3, interval=0.2, expect_status=204))
            return await release(ctx(t), env2, "v2")

    r = asyncio.run(go())
    assert not r.ok
    rec = _history(app)
    assert rec["outcome"] == "rolled_back" and rec["error"] == "health check failed", rec
    assert 2.5 <= rec["health_seconds"] < 10, rec
    assert app.get() == (200, "v1")


def test_unavailable_matches_what_a_client_saw(host, tmp_path):
    """A client polling every few ms: its longest run of failed requests during a switch
    is the recorded unavailable window, within 0.3 s."""
    app = new_app(host, build=False)
    env1 = app.env(source(tmp_path, "v1"))
    env2 = app.env(source(tmp_path, "v2"))
    results: list[tuple[float, bool]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            t = time.time()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{app.port}/health", timeout=1) as r:
                    ok = r.status == 200
            except Exception:
                ok = False
            results.append((t, ok))
            time.sleep(0.005)

    async def go():
        async with SshTransport() as t:
            assert (await release(ctx(t), env1, "v1")).ok
            th = threading.Thread(target=poll, daemon=True)
            th.start()
            await asyncio.sleep(0.3)
            events: list = []
            r = await release(ctx(t, events), env2, "v2")
            await asyncio.sleep(0.3)
            stop.set()
            th.join(5)
            return r, events

    r, events = asyncio.run(go())
    assert r.ok
    gaps, start = [], None
    for t, ok in results:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            gaps.append(t - start)
            start = None
    assert start is None and gaps, results[-5:]
    client = max(gaps)
    rec = _history(app)
    assert abs(rec["unavailable"] - client) <= 0.3, (rec, client)
    print(f"\n[unavailable] host {rec['unavailable']}s, client {client:.3f}s, stop -> start {rec['downtime']}s, "
          f"health {rec['health_seconds']}s, {len(results)} client requests")
    assert app.release_json("v2")["unavailable"] == rec["unavailable"]
    fin = [e for e in events if isinstance(e, HostFinished)][0]
    assert f"downtime {rec['unavailable']:.2f}s" in fin.message and "stop -> start" in fin.message, fin.message


def test_restart_after_an_env_change_makes_the_app_see_it(deployed):
    app, cfg = deployed
    assert app.get("/env")[1].startswith("s3cr3t-")
    app.sh(f"printf 'SECRET=changed-value\\n' > {app.deploy_path}/shared/.env")
    assert app.get("/env")[1] != "changed-value"  # the running app read it at start
    cp = run_cli("-c", str(cfg), "restart", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    assert "changed-value" not in cp.stdout + cp.stderr  # .env is never printed
    assert app.get("/env") == (200, "changed-value")


def test_a_failed_rollback_saves_a_private_health_log_with_the_reason(deployed, tmp_path):
    app, cfg = deployed
    import yaml
    source(tmp_path, "v2")
    doc = yaml.safe_load(cfg.read_text())
    doc["source"] = "./src-v2"
    cfg.write_text(yaml.safe_dump(doc))
    assert run_cli("-c", str(cfg), "release", "v2", ENV_NAME).returncode == 0
    app.sh(f"touch {app.deploy_path}/releases/v1/DIE")  # v1 now dies at start
    cp = run_cli("-c", str(cfg), "rollback", ENV_NAME)
    assert cp.returncode == 1, show(cp)
    assert app.get() == (200, "v2") and app.current() == "releases/v2"
    log = f"{app.deploy_path}/releases/v1/.capview/health.log"
    assert app.sh(f"stat -c %a {log}").strip() == "600"
    text = app.sh(f"cat {log}")
    assert "rollback v1 did not come up: health check failed: the service is failed" in text, text
    assert "dying at once" in text, text


def test_a_failed_migration_says_why_with_the_unit_status_and_restores_the_tree(host, tmp_path):
    """migrate-data puts the legacy tree back exactly, so the reason and the unit's status
    (never the journal: it may hold secrets) are shown; the journal goes to the one file it
    leaves (issue 16): .capview/migrate-health.log, mode 0600, named in the message."""
    from capview.engine.events import LogLine
    from capview.engine.migrate import migrate
    from test_migrate_realhost import exact_listing, seed_legacy

    app = new_app(host, build=False)
    seed_legacy(host, app, tmp_path)
    host.systemctl("stop", app.unit, check=True)
    before = exact_listing(app)
    events: list = []

    async def go():
        async with SshTransport() as t:
            return await migrate(ctx(t, events), app.env(tmp_path), fail_at="health")

    r = asyncio.run(go())
    assert not r.ok and "original layout was put back" in r.hosts[0].message
    shown = [e.line for e in events if isinstance(e, LogLine)]
    assert any("migrate legacy did not come up" in line for line in shown), shown
    assert any(app.unit in line for line in shown) and any("Active:" in line for line in shown), shown
    assert not any("s3cr3t" in line for line in shown)
    log = f"{app.deploy_path}/.capview/migrate-health.log"
    assert r.hosts[0].message.endswith(log)
    assert app.sh(f"cd {app.deploy_path}/.capview && ls -A && stat -c %a migrate-health.log").split() == [
        "migrate-health.log", "600"]
    saved = app.sh(f"cat {log}")
    assert "migrate legacy did not come up: forced failure at health" in saved and "Active:" in saved
    app.sh(f"rm -r {app.deploy_path}/.capview")  # all but that log: exactly as before
    assert exact_listing(app) == before
