"""``capview check ENV`` run as a real subprocess against the real testbed hosts.

Each test writes a deploy.yaml (per-host ssh known_hosts/identity_file overrides, podman
build, systemd-user service, health) and asserts the per-host line and the exit code.
"""

from __future__ import annotations

import re

import pytest

from clihelp import ENV_NAME, host_entry, lines, run_cli, show, write_config
from realhost import App, free_port, new_app

pytestmark = pytest.mark.testbed


def check(cfg) -> tuple[int, list[str], str]:
    cp = run_cli("-c", str(cfg), "check", ENV_NAME)
    return cp.returncode, lines(cp.stdout), show(cp)


def host_line(out: list[str], name: str) -> str:
    found = [l for l in out if l.split()[0] == name]
    assert len(found) == 1, f"expected one line for {name}: {out}"
    return found[0]


def assert_single_fail_line(out: list[str], name: str, *needles: str) -> str:
    """Exactly one line for the host, a FAIL, mentioning every needle; no warning lines."""
    assert len(out) == 1, f"expected a single line, got {out}"
    line = host_line(out, name)
    assert re.match(rf"^{re.escape(name)}\s+FAIL: \S", line), line
    for n in needles:
        assert n.lower() in line.lower(), f"{n!r} not in {line!r}"
    return line


def test_check_three_good_hosts_ok(hosts3, tmp_path):
    apps = [new_app(h) for h in hosts3]
    cfg = write_config(tmp_path / "deploy.yaml", apps)
    code, out, dump = check(cfg)
    assert code == 0, dump
    for h in hosts3:
        line = host_line(out, h.name)
        assert re.match(rf"^{re.escape(h.name)}\s+OK\b", line), line
    assert len([l for l in out if "warning" not in l]) == 3, dump


def test_check_changed_host_key(host, tmp_path):
    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    assert check(cfg)[0] == 0
    host.rotate_host_key()
    code, out, dump = check(cfg)
    assert code == 4, dump
    line = assert_single_fail_line(out, host.name, "host key")
    # it names the offered fingerprint and how to trust the new key
    assert "SHA256:" in line, line
    assert str(host.port) in line, line


def test_check_closed_port(host, tmp_path):
    app = new_app(host)
    port = free_port()  # nothing listens there
    cfg = write_config(tmp_path / "deploy.yaml", [app], entries=[host_entry(app, port=port)])
    code, out, dump = check(cfg)
    assert code == 4, dump
    line = assert_single_fail_line(out, host.name)
    assert str(port) in line and re.search(r"refused|unreachable|connect", line, re.I), line


def test_check_stopped_host(host, tmp_path):
    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    host.testbed._kill(host)  # the sshd is gone; the port is closed
    code, out, dump = check(cfg)
    assert code == 4, dump
    assert_single_fail_line(out, host.name, str(host.port))


def test_check_no_user_manager(nosd_host, tmp_path):
    h = nosd_host
    dp = f"{h.base}/web/cvapp-nosd"
    h.run_as_user(f"mkdir -p {dp}/shared/data && printf 'X=1\\n' > {dp}/shared/.env && chmod 600 {dp}/shared/.env")
    app = App(h, "cvapp-nosd", dp, free_port(), "cvapp-nosd", "localhost/cvapp-nosd")
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    code, out, dump = check(cfg)
    assert code == 4, dump
    assert_single_fail_line(out, h.name, "loginctl enable-linger", "systemctl --user")


def test_check_missing_podman(nopodman_host, tmp_path):
    app = new_app(nopodman_host)
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    code, out, dump = check(cfg)
    assert code == 4, dump
    assert_single_fail_line(out, nopodman_host.name, "podman", "not installed")


def test_check_missing_shared_env(host, tmp_path):
    app = new_app(host)
    host.run_as_user(f"rm {app.deploy_path}/shared/.env")
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    code, out, dump = check(cfg)
    assert code == 4, dump
    assert_single_fail_line(out, host.name, f"{app.deploy_path}/shared/.env", f"capview init {ENV_NAME}")


def test_check_missing_deploy_path(host, tmp_path):
    app = new_app(host)
    host.run_as_user(f"rm -rf {app.deploy_path}")
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    code, out, dump = check(cfg)
    assert code == 4, dump
    # one line even though shared/.env is missing too: the reasons are joined
    line = host_line(out, host.name)
    assert f"{app.deploy_path} does not exist - run: capview init {ENV_NAME}" in line, line


def test_check_one_bad_host_among_good(hosts3, tmp_path):
    """Hosts are checked independently: one failure does not hide the others' OK."""
    apps = [new_app(h) for h in hosts3]
    hosts3[1].run_as_user(f"rm {apps[1].deploy_path}/shared/.env")
    cfg = write_config(tmp_path / "deploy.yaml", apps, strategy="parallel")
    code, out, dump = check(cfg)
    assert code == 4, dump
    assert re.match(rf"^{hosts3[0].name}\s+OK\b", host_line(out, hosts3[0].name))
    assert "FAIL" in host_line(out, hosts3[1].name)
    assert re.match(rf"^{hosts3[2].name}\s+OK\b", host_line(out, hosts3[2].name))


def test_check_json(host, tmp_path):
    import json

    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    cp = run_cli("-c", str(cfg), "check", ENV_NAME, "--json")
    assert cp.returncode == 0, show(cp)
    rows = [json.loads(l) for l in lines(cp.stdout)]
    assert len(rows) == 1 and rows[0]["host"] == host.name and rows[0]["ok"] is True, rows
