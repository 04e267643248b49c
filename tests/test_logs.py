"""``capview logs``: the service's own output (issue 16 item 4), on the real testbed.

The testbed runs systemd-journald (scripts/testbed.sh), so `journalctl --user -u UNIT`
sees what the app printed, as on a VPS."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import time

import pytest

from capview.config import ServiceConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.logs import logs_script, validate_since
from capview.errors import UsageError
from capview.remote.ssh import SshTransport

from clihelp import ENV_NAME, cli_argv, cli_env, host_entry, run_cli, show, write_config
from realhost import make_source, new_app


def test_since_is_validated_and_durations_become_relative():
    assert validate_since("10m") == "-10m"
    assert validate_since("2 h") == "-2h"
    assert validate_since("today") == "today"
    assert validate_since("2026-12-01 10:00") == "2026-12-01 10:00"
    for bad in ("$(id)", "10m; rm -rf /", "-f", "", "next tuesday"):
        with pytest.raises(UsageError, match="--since"):
            validate_since(bad)


def test_logs_script_text(tmp_path):
    from capview.config import Settings

    s = Settings(app="a", deploy_path="/srv/x/a", source=tmp_path,
                 service=ServiceConfig(manager="systemd-user", unit="a-unit"))
    script = logs_script(s, lines=50, follow=True, since="-10m")
    assert "journalctl --user -u a-unit -n 50 --no-pager -a -o short-iso --since -10m -f" in script
    custom = dataclasses.replace(s, service=ServiceConfig(manager="none", logs="tail -n \"$CAPVIEW_LINES\" log"))
    text = logs_script(custom, lines=7)
    assert "CAPVIEW_LINES=7 CAPVIEW_FOLLOW= CAPVIEW_SINCE='' " in text and "cd /srv/x/a" in text
    with pytest.raises(UsageError, match="service.logs is not set"):
        logs_script(dataclasses.replace(s, service=ServiceConfig(manager="none")), lines=5)


@pytest.fixture
def deployed(host, tmp_path):
    app = new_app(host, build=False)
    cfg = write_config(tmp_path / "deploy.yaml", [app], source="./src-v1", build=False)
    make_source(tmp_path, "v1")

    async def go():
        from capview.config import load_config

        env = load_config(cfg).env(ENV_NAME)
        async with SshTransport() as t:
            return await release(Context(transport=t), env, "v1")

    res = asyncio.run(go())
    assert res.ok, res
    assert app.get() == (200, "v1")
    return app, cfg


def test_logs_print_what_the_app_wrote(deployed):
    app, cfg = deployed
    cp = run_cli("-c", str(cfg), "logs", ENV_NAME, "-n", "20")
    assert cp.returncode == 0, show(cp)
    assert f"webapp v1 listening on {app.port}" in cp.stdout, show(cp)
    cp = run_cli("-c", str(cfg), "--json", "logs", ENV_NAME, "--since", "1h")
    assert cp.returncode == 0, show(cp)
    assert any("webapp v1 listening" in line for line in cp.stdout.splitlines() if '"line"' in line), show(cp)


def test_follow_streams_new_lines_and_ctrl_c_ends_it_cleanly(deployed):
    app, cfg = deployed
    p = subprocess.Popen(cli_argv("-c", str(cfg), "logs", ENV_NAME, "-n", "1", "-f"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert "listening" in p.stdout.readline()
        app.host.systemctl("restart", app.unit, check=True)  # a new start prints a new line
        deadline = time.monotonic() + 15
        seen = ""
        while "listening" not in seen and time.monotonic() < deadline:
            seen = p.stdout.readline()
        assert "listening" in seen, "no new line followed"
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0 and "Traceback" not in err, err
    time.sleep(0.5)
    left = app.sh(f"pgrep -u {app.host.user} -f '[j]ournalctl --user -u {app.unit}' || true").strip()
    assert not left, f"journalctl still running on the host: {left}"


def test_service_logs_command_gets_lines_and_its_output_is_inert(host, tmp_path):
    app = new_app(host, build=False)
    app.sh(f"mkdir -p {app.deploy_path}")
    cmd = "printf 'l1\\nl2\\nl3\\n\\033]52;c;SGVsbG8=\\007evil\\n' | tail -n \"$CAPVIEW_LINES\""
    cfg = write_config(tmp_path / "deploy.yaml", [app], build=False,
                       service={"manager": "systemd-user", "unit": app.unit, "logs": cmd})
    # write_config puts service per host entry too: that one wins, so set logs there
    import yaml

    doc = yaml.safe_load(cfg.read_text())
    doc["environments"][ENV_NAME]["hosts"][0]["service"]["logs"] = cmd
    cfg.write_text(yaml.safe_dump(doc))
    cp = run_cli("-c", str(cfg), "logs", ENV_NAME, "-n", "2")
    assert cp.returncode == 0, show(cp)
    assert cp.stdout.splitlines() == ["l3", "\\x1b]52;c;SGVsbG8=\\x07evil"], show(cp)
    assert "\x1b" not in cp.stdout and "\x07" not in cp.stdout


def test_several_hosts_prefix_each_line_with_its_host(host, tmp_path):
    """issue 16 item 4: with several hosts each line says whose it is (names padded to one
    width); with --host one of them, the lines are bare."""
    apps = [new_app(host, build=False), new_app(host, build=False)]
    entries = []
    for i, a in enumerate(apps):
        a.sh(f"mkdir -p {a.deploy_path}")
        e = host_entry(a, name=("web-1", "web-long-2")[i])
        e["service"]["logs"] = f"printf 'from {i}\\n'"
        entries.append(e)
    cfg = write_config(tmp_path / "deploy.yaml", apps, build=False, entries=entries)
    cp = run_cli("-c", str(cfg), "logs", ENV_NAME, "-n", "5")
    assert cp.returncode == 0, show(cp)
    assert sorted(cp.stdout.splitlines()) == ["web-1      | from 0", "web-long-2 | from 1"], show(cp)
    cp = run_cli("-c", str(cfg), "logs", ENV_NAME, "--host", "web-long-2", "-n", "5")
    assert cp.returncode == 0 and cp.stdout.splitlines() == ["from 1"], show(cp)
    cp = run_cli("-c", str(cfg), "logs", ENV_NAME, "-n", "5", "--json")
    assert sorted(json.loads(x)["host"] for x in cp.stdout.splitlines()) == ["web-1", "web-long-2"], show(cp)
