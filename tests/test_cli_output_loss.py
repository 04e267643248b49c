"""Issue 15 items 1 and 5: rendering never affects an operation.

A closed stdout/stderr (``capview release v2 prod | head -n 7``, with or without
``--json``), a terminal that goes away, or SIGHUP (the operator's SSH session closes)
only stop the output: a release that has switched still ends healthy or reverted, and
the lock is released. Every test runs the real CLI against the real testbed.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time

import pytest

from clihelp import ENV_NAME, REPO, cli_argv, cli_env, run_cli, show, write_config
from realhost import make_source, new_app

pytestmark = pytest.mark.testbed


def _setup(host, tmp_path):
    """v1 live; src-v2 healthy, src-v3 answers 500 on /health."""
    app = new_app(host)
    make_source(tmp_path, "v1")
    make_source(tmp_path, "v2")
    make_source(tmp_path, "v3", broken=True)
    cfg = write_config(tmp_path / "deploy.yaml", [app], source="./src-v1")
    cp = run_cli("-c", str(cfg), "release", "v1", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    return app, cfg


def _assert_settled(app, host, expect: str):
    """The invariants of issue 15: current on a healthy release (the new one if it is
    healthy, else the previous one), recorded as such, the service running it, no lock."""
    dp = app.deploy_path
    assert app.sh(f"test -e {dp}/.capview/lock && echo held || echo free").strip() == "free", "lock left behind"
    assert app.current() == f"releases/{expect}", app.current()
    assert app.release_json(expect)["state"] == "live", app.release_json(expect)
    assert host.systemctl("is-active", app.unit).stdout.strip() == "active"
    assert app.get() == (200, expect)


def _other_state(app, version: str) -> str:
    return app.release_json(version)["state"]


def _is_after_switch(line: str, json_mode: bool) -> bool:
    if json_mode:
        try:
            e = json.loads(line)
        except ValueError:
            return False
        return e.get("event") == "PhaseFinished" and e.get("phase") == "switch"
    return re.search(r"\sswitch\s+(ok|FAILED)\b", line) is not None


@pytest.mark.parametrize("json_mode", [False, True], ids=["plain", "json"])
@pytest.mark.parametrize("version,expect", [("v2", "v2"), ("v3", "v1")], ids=["healthy", "unhealthy"])
def test_stdout_and_stderr_closed_after_the_switch(host, tmp_path, json_mode, version, expect):
    """The reader goes away (like ``| head``) right after the switch: the deploy still
    runs its health check, reverts an unhealthy release, records it and unlocks."""
    app, cfg = _setup(host, tmp_path)
    argv = cli_argv("-c", str(cfg), "release", version, ENV_NAME, "--source", str(tmp_path / f"src-{version}"))
    if json_mode:
        argv.append("--json")
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                         cwd=REPO, stdin=subprocess.DEVNULL)
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if _is_after_switch(line, json_mode):
                break
        else:
            pytest.fail(f"never saw the switch finish: {seen}")
        p.stdout.close()  # both pipes gone: every later write fails with EPIPE
        p.stderr.close()
        rc = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == (0 if version == expect else 1), (rc, seen)
    _assert_settled(app, host, expect)
    if version != expect:
        assert _other_state(app, version) == "failed"
        hist = app.history()
        assert hist[-1]["outcome"] == "rolled_back" and hist[-1]["to"] == expect, hist[-1]


def test_piped_into_head_like_the_issue(host, tmp_path):
    """The literal ``capview release V ENV 2>&1 | head -n N`` of the issue, with N chosen so
    that head exits right after the switch line (counted on a first, complete release)."""
    app, cfg = _setup(host, tmp_path)
    full = run_cli("-c", str(cfg), "release", "v2", ENV_NAME, "--source", str(tmp_path / "src-v2"))
    assert full.returncode == 0, show(full)
    n = next(i for i, line in enumerate(full.stdout.splitlines(), 1) if _is_after_switch(line, False))
    argv = " ".join(cli_argv("-c", str(cfg), "release", "v3", ENV_NAME, "--source", str(tmp_path / "src-v3")))
    # sh waits for every command of the pipeline: capview has exited when this returns
    cp = subprocess.run(["sh", "-c", f"{argv} 2>&1 | head -n {n}"], capture_output=True, text=True,
                        env=cli_env(), cwd=REPO, timeout=180)
    assert _is_after_switch(cp.stdout.splitlines()[-1], False), cp.stdout
    _assert_settled(app, host, "v2")
    assert _other_state(app, "v3") == "failed"
    hist = app.history()
    assert hist[-1]["outcome"] == "rolled_back" and hist[-1]["to"] == "v2", hist[-1]


@pytest.mark.parametrize("version,expect", [("v2", "v2"), ("v3", "v1")], ids=["healthy", "unhealthy"])
def test_sighup_during_health_finishes_like_sigterm(host, tmp_path, version, expect):
    """SIGHUP (the operator's terminal or SSH session closes) during the health check:
    the switch is finished (health, revert if unhealthy, record, unlock), exit 130."""
    app, cfg = _setup(host, tmp_path)
    p = subprocess.Popen(cli_argv("-c", str(cfg), "release", version, ENV_NAME, "--json",
                                  "--source", str(tmp_path / f"src-{version}")),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO,
                         stdin=subprocess.DEVNULL)
    sent = False
    try:
        for line in p.stdout:
            e = json.loads(line)
            if not sent and e["event"] == "PhaseStarted" and e["phase"] == "health":
                p.send_signal(signal.SIGHUP)
                sent = True
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert sent
    assert p.returncode == 130, (p.returncode, err)
    assert "Traceback" not in err, err
    _assert_settled(app, host, expect)
    if version != expect:
        assert _other_state(app, version) == "failed"


def test_sighup_before_the_switch_cleans_up(host, tmp_path):
    """SIGHUP before the switch: like Ctrl-C, the unfinished release and the lock are gone."""
    app, cfg = _setup(host, tmp_path)
    p = subprocess.Popen(cli_argv("-c", str(cfg), "release", "v2", ENV_NAME, "--json",
                                  "--source", str(tmp_path / "src-v2")),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO,
                         stdin=subprocess.DEVNULL)
    try:
        for line in p.stdout:
            e = json.loads(line)
            if e["event"] == "PhaseStarted" and e["phase"] == "build":
                p.send_signal(signal.SIGHUP)
                break
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, err)
    _assert_settled(app, host, "v1")
    state = app.sh(f"cat {app.deploy_path}/releases/v2/.capview/release.json 2>/dev/null || echo absent").strip()
    assert state == "absent" or json.loads(state)["state"] == "failed", state


@pytest.mark.parametrize("version,expect", [("v2", "v2"), ("v3", "v1")], ids=["healthy", "unhealthy"])
def test_terminal_goes_away_after_the_switch(host, tmp_path, version, expect):
    """The live (rich) view on a real pseudo-terminal whose master is closed right after
    the switch: the kernel hangs up the terminal (SIGHUP, then EIO on every write)."""
    app, cfg = _setup(host, tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the CLI on a pseudo-terminal, as an operator runs it
        env = cli_env()
        env["TERM"] = "xterm-256color"
        os.chdir(REPO)
        os.execve(cli_argv()[0], cli_argv("-c", str(cfg), "release", version, ENV_NAME, "--source",
                                          str(tmp_path / f"src-{version}")), env)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not _switch_done(app):
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    if not os.read(fd, 65536):
                        break
                except OSError:
                    break
    finally:
        os.close(fd)  # the terminal goes away
    assert _switch_done(app), "the deploy never switched"
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("capview did not finish after its terminal went away")
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 1, 130), code  # never killed by the hangup
    _assert_settled(app, host, expect)


def _switch_done(app) -> bool:
    """current no longer names v1 (read locally: the testbed's hosts are this machine)."""
    try:
        return os.readlink(f"{app.deploy_path}/current") != "releases/v1"
    except OSError:
        return False
