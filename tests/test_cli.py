"""The command line as users and CI run it: ``python -m capview ...`` in a subprocess.

Everything that touches a host runs against the real testbed (sshd, systemd --user,
podman). Output is captured from pipes, so it is the plain (non-TTY) rendering.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from clihelp import (
    ENV_NAME, REPO, assert_no_traceback, cli_argv, cli_env, host_entry, lines, run_cli, show, write_config,
)
from realhost import free_port, make_source, new_app

STAMP = re.compile(r"^\d\d:\d\d:\d\d \S+\s+\S")

# ---------------------------------------------------------------- help and parsing (no host)

GLOBAL_OPTS = ["-c FILE, --config FILE", "--host NAME", "--json", "-v, --verbose"]
COMMAND_OPTS = {
    "check": ["ENV"],
    "release": ["VERSION", "ENV", "--dry-run", "--wait-lock DURATION", "--source DIR", "-y, --yes"],
    "deploy": ["VERSION", "ENV", "--dry-run", "--wait-lock DURATION", "--source DIR", "-y, --yes"],
    "rollback": ["ENV", "--to VERSION", "--force", "-y, --yes"],
    "restart": ["ENV"],
    "releases": ["ENV"],
    "prune": ["ENV", "--keep N", "--dry-run", "-y, --yes"],
    "init": ["ENV", "-y, --yes"],
    "migrate-data": ["ENV", "--dry-run", "--rewrite-unit", "-y, --yes"],
    "unlock": ["ENV", "--force", "-y, --yes"],
    "pin": ["ENV", "VERSION", "-y, --yes"],
    "unpin": ["ENV", "VERSION", "-y, --yes"],
    "history": ["ENV", "-n N, --limit N"],
    "verify": ["ENV", "VERSION"],
    "logs": ["ENV", "-n N, --lines N", "-f, --follow", "--since T"],
    "traefik": ["ENV", "--write", "-y, --yes"],
    "demo": ["--dir DIR", "--headless", "--serve"],
    "ui": ["-c FILE, --config FILE"],
    "completion": ["{bash,zsh,fish}"],
}
# Commands that take only some global options: --help must not list the others (issue 20).
ONLY_SOME_GLOBALS = {"demo": [], "ui": ["-c FILE, --config FILE"], "completion": []}


def test_every_command_is_covered():
    from capview.cli import COMMANDS_HELP

    assert set(COMMANDS_HELP) | {"deploy"} == set(COMMAND_OPTS)


def split_summary(stdout: str) -> tuple[list[str], list[str]]:
    """(the timestamped lines, the summary table's lines) of a plain run's output."""
    head, sep, tail = stdout.partition("\nsummary: ")
    assert sep, f"no summary at the end:\n{stdout}"
    return lines(head), lines("summary: " + tail)


def test_help_of_every_command():
    """``capview CMD --help`` exits 0 and mentions every option of CMD (all run at once)."""
    procs = {cmd: subprocess.Popen(cli_argv(cmd, "--help"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=cli_env(), cwd=REPO)
             for cmd in COMMAND_OPTS}
    failures = []
    for cmd, p in procs.items():
        out, err = p.communicate(timeout=60)
        text = " ".join(out.split())  # argparse wraps long lines
        if p.returncode != 0 or err or "Traceback" in out:
            failures.append(f"{cmd}: exit {p.returncode}: {err}")
            continue
        if not text.startswith(f"usage: capview {'release' if cmd == 'deploy' else cmd}"):
            failures.append(f"{cmd}: unexpected usage line: {out.splitlines()[:1]}")
        for opt in (GLOBAL_OPTS if cmd not in ONLY_SOME_GLOBALS else []) + COMMAND_OPTS[cmd]:
            if opt not in text:
                failures.append(f"{cmd}: --help does not mention {opt!r}")
        for opt in GLOBAL_OPTS:
            if cmd in ONLY_SOME_GLOBALS and opt not in ONLY_SOME_GLOBALS[cmd] and opt in text:
                failures.append(f"{cmd}: --help lists {opt!r}, which does nothing there")
    assert not failures, "\n".join(failures)


def test_top_level_help_lists_commands_and_exit_codes():
    cp = run_cli("--help")
    assert cp.returncode == 0, show(cp)
    for cmd in COMMAND_OPTS:
        if cmd != "deploy":
            assert re.search(rf"^\s+{re.escape(cmd)}\b", cp.stdout, re.M), cmd
    text = " ".join(cp.stdout.split())
    assert "0 ok, 1 operation failed, 2 usage or config error, 3 lock held, 4 host unreachable" in text


def test_version():
    cp = run_cli("--version")
    assert cp.returncode == 0 and re.match(r"capview \d+\.\d+", cp.stdout), show(cp)


def test_unknown_command_and_missing_env_are_usage_errors():
    for args in (["frobnicate"], ["release"], ["check"], ["release", "v1", "prod", "extra"]):
        cp = run_cli(*args)
        assert cp.returncode == 2, show(cp)
        assert cp.stdout == "" and "usage: capview" in cp.stderr, show(cp)


MIN_CONFIG = """\
app: cvapp
deploy_path: /home/deploy_user/web/cvapp
source: .
build: null
health: null
service: {manager: none}
environments:
  prod:
    hosts:
      - {name: p1, host: 127.0.0.1, port: 1}
  staging:
    hosts:
      - {name: s1, host: 127.0.0.1, port: 1}
"""


@pytest.mark.parametrize("where", ["before", "after", "between"])
def test_config_option_before_or_after_the_command(tmp_path, where):
    """-c is honoured in any position: the unknown environment error lists the file's envs."""
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text(MIN_CONFIG)
    argv = {"before": ["-c", str(cfg), "check", "nope"],
            "after": ["check", "nope", "-c", str(cfg)],
            "between": ["check", "--config", str(cfg), "nope"]}[where]
    cp = run_cli(*argv, cwd=tmp_path)
    assert cp.returncode == 2, show(cp)
    err = lines(cp.stderr)
    assert len(err) == 1 and "nope" in err[0] and "prod" in err[0] and "staging" in err[0], show(cp)


def test_default_config_is_deploy_yaml_in_cwd(tmp_path):
    (tmp_path / "deploy.yaml").write_text(MIN_CONFIG)
    cp = run_cli("check", "nope", cwd=tmp_path)
    assert cp.returncode == 2 and "staging" in cp.stderr, show(cp)
    cp = run_cli("check", "nope", cwd=tmp_path / "..")
    assert cp.returncode == 2, show(cp)
    err = lines(cp.stderr)
    assert len(err) == 1 and "deploy.yaml" in err[0], show(cp)


def test_unknown_host_is_a_usage_error(tmp_path):
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(MIN_CONFIG)
    cp = run_cli("release", "v1", "prod", "--host", "nope", "-c", str(cfg))
    assert cp.returncode == 2, show(cp)
    err = lines(cp.stderr)
    assert len(err) == 1 and "nope" in err[0] and "p1" in err[0], show(cp)


def _broken(old: str, new: str) -> str:
    assert old in MIN_CONFIG
    return MIN_CONFIG.replace(old, new)


# (deploy.yaml text, the line the error must name, a word the error must contain)
BROKEN = {
    "int": (_broken("source: .\n", "source: .\nkeep_releases: lots\n"), 4, "keep_releases"),
    "duration": (_broken("health: null", "health: {url: 'http://127.0.0.1:8080/health', timeout: soon}"), 5,
                 "health.timeout"),
    "typo": (_broken("service: {manager: none}", "servise: {manager: none}"), 6, "servise"),
    "env-key": (_broken("  staging:\n", "  staging:\n    stratgy: rolling\n"), 12, "strategy"),
    "yaml-syntax": (_broken("app: cvapp", "app: [cvapp"), 1, "YAML"),
    "relative-path": (_broken("deploy_path: /home/deploy_user/web/cvapp", "deploy_path: web/cvapp"), 2,
                      "deploy_path"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_deploy_yaml_exit_2_one_line_with_file_and_line(tmp_path, case):
    text, line, word = BROKEN[case]
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(text)
    for cmd in (["release", "v1", "prod"], ["check", "prod"], ["releases", "prod"], ["rollback", "prod"]):
        cp = run_cli("-c", str(cfg), *cmd)
        assert cp.returncode == 2, show(cp)
        err = lines(cp.stderr)
        assert len(err) == 1, show(cp)
        m = re.search(rf"{re.escape(str(cfg))}:(\d+)(:\d+)?: ", err[0])
        assert m, err[0]
        if case != "yaml-syntax":  # a syntax error may be reported where the parser gave up
            assert int(m.group(1)) == line, err[0]
        assert word in err[0], err[0]
        assert cp.stdout == "", show(cp)


def test_missing_config_file_exit_2(tmp_path):
    cp = run_cli("-c", str(tmp_path / "nope.yaml"), "check", "prod")
    assert cp.returncode == 2, show(cp)
    err = lines(cp.stderr)
    assert len(err) == 1 and "nope.yaml" in err[0], show(cp)


def test_bad_wait_lock_duration_exit_2(tmp_path):
    cfg = tmp_path / "deploy.yaml"
    cfg.write_text(MIN_CONFIG)
    cp = run_cli("-c", str(cfg), "release", "v1", "prod", "--wait-lock", "forever")
    assert cp.returncode == 2, show(cp)
    assert len(lines(cp.stderr)) == 1 and "forever" in cp.stderr, show(cp)


# ---------------------------------------------------------------- on the real testbed

def connections(host) -> int:
    return host.sshd_log().count("Connection from")


def release_cli(cfg, version, *extra, timeout=180):
    args = ["-c", str(cfg), "release"] + ([version] if version else []) + [ENV_NAME, *extra]
    return run_cli(*args, timeout=timeout)


@pytest.fixture
def app1(host, tmp_path):
    """One host with the sample app, and a deploy.yaml whose source is ./src (v1 contents)."""
    app = new_app(host)
    src = make_source(tmp_path, "v1")
    src.rename(tmp_path / "src")
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    return app, cfg


@pytest.mark.testbed
def test_release_plain_output_is_timestamped_and_ends_with_the_outcome(app1, host):
    app, cfg = app1
    cp = release_cli(cfg, "v1")
    assert cp.returncode == 0, show(cp)
    out, summary = split_summary(cp.stdout)
    bad = [l for l in out if not STAMP.match(l)]
    assert not bad, f"lines without a timestamp: {bad}\n{show(cp)}"
    for phase in ("lock", "setup", "upload", "link", "build", "switch", "health", "cleanup"):
        assert any(re.search(rf"\s{host.name}\s+{phase}\s+ok\b", l) for l in out), (phase, show(cp))
    assert re.match(rf"^\d\d:\d\d:\d\d {host.name}\s+OK: v1 is live\b", out[-1]), out[-1]
    # piped output ends with the summary the README promises: host, outcome, version, time, trips, sent
    assert summary[0] == "summary: 1 of 1 host ok", summary
    assert summary[1].split() == ["host", "outcome", "version", "time", "trips", "sent", "message"], summary
    assert re.match(rf"^\s+{host.name}\s+ok\s+v1\s+\d+\.\d+s\s+\d+\s+\d+(\.\d)? (B|KiB|MiB)\s+v1 is live", summary[2]), summary
    assert "\x1b" not in cp.stdout  # no colours or cursor movement on a pipe
    assert app.get() == (200, "v1")


@pytest.mark.testbed
def test_release_json_prints_only_json_lines(app1, host):
    app, cfg = app1
    cp = release_cli(cfg, "v1", "--json")
    assert cp.returncode == 0, show(cp)
    assert cp.stderr == "", show(cp)
    events = []
    for l in cp.stdout.splitlines():
        obj = json.loads(l)  # every line parses
        assert isinstance(obj, dict) and isinstance(obj.get("event"), str), l
        events.append(obj)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "OperationStarted" and kinds[-1] == "OperationFinished", kinds
    assert {"PhaseStarted", "PhaseFinished", "UploadProgress", "HostFinished"} <= set(kinds), kinds
    fin = [e for e in events if e["event"] == "HostFinished"]
    assert fin[0]["host"] == host.name and fin[0]["outcome"] == "ok" and fin[0]["version"] == "v1"
    assert events[-1]["ok"] is True
    assert app.get() == (200, "v1")


@pytest.mark.testbed
def test_json_for_a_failure_is_still_only_json(host, tmp_path):
    app = new_app(host)
    make_source(tmp_path, "v1").rename(tmp_path / "src")
    cfg = write_config(tmp_path / "deploy.yaml", [app], entries=[host_entry(app, port=free_port())])
    cp = release_cli(cfg, "v1", "--json")
    assert cp.returncode == 4, show(cp)
    events = [json.loads(l) for l in cp.stdout.splitlines()]
    assert events and all("event" in e for e in events)
    assert events[-1]["event"] == "OperationFinished" and events[-1]["ok"] is False


@pytest.mark.testbed
def test_exit_codes_0_1_2_3_4(host, tmp_path):
    app = new_app(host)
    make_source(tmp_path, "v1").rename(tmp_path / "src")
    make_source(tmp_path, "bad", containerfile="FROM scratch\nCOPY no-such-file /x\n")
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    dp = app.deploy_path

    # 0: a real deploy
    cp = release_cli(cfg, "v1")
    assert cp.returncode == 0, show(cp)
    assert app.get() == (200, "v1")

    # 1: the build fails; current and the service are untouched, the lock is free
    pid = app.main_pid()
    cp = release_cli(cfg, "v2", "--source", str(tmp_path / "src-bad"))
    assert cp.returncode == 1, show(cp)
    out, summary = split_summary(cp.stdout)
    assert re.search(rf"{host.name}\s+FAILED at build \(reason above\)", out[-1]), show(cp)
    # the reason is printed twice: where it happened, and in the summary (not three times)
    assert cp.stdout.count("build failed (exit") == 2, show(cp)
    assert app.current() == "releases/v1" and app.main_pid() == pid and app.get() == (200, "v1")
    assert app.release_json("v2")["state"] == "failed"
    assert app.sh(f"test -e {dp}/.capview/lock && echo held || echo free").strip() == "free"

    # 2: an invalid version name: one line, and no connection is made
    before = connections(host)
    for bad in ("../x", "..", ".hidden", "a/b", "x" * 65, "v 1", "v1;id", "v1\nid"):
        cp = release_cli(cfg, bad)
        assert cp.returncode == 2, show(cp)
        err = lines(cp.stderr)
        assert len(err) == 1 and "invalid release name" in err[0], show(cp)
        assert cp.stdout == "", show(cp)
    time.sleep(0.3)
    assert connections(host) == before, "a connection was made for an invalid version"

    # 3: a lock held by someone else (made by hand): refused at once, naming the holder
    owner = {"operator": "alice@laptop", "operation": "release", "version": "v9", "pid": 4242,
             "machine": "laptop", "started": time.time() - 300, "heartbeat": time.time() - 5, "token": "abc"}
    host.run_as_user(f"mkdir -p {dp}/.capview/lock && cat > {dp}/.capview/lock/owner.json",
                     input=json.dumps(owner))
    t0 = time.monotonic()
    cp = release_cli(cfg, "v3")
    assert cp.returncode == 3, show(cp)
    assert time.monotonic() - t0 < 20
    assert "alice@laptop" in cp.stdout + cp.stderr and "4242" in cp.stdout + cp.stderr, show(cp)
    assert "unlock" in cp.stdout + cp.stderr, show(cp)  # the way out is named
    assert json.loads(app.sh(f"cat {dp}/.capview/lock/owner.json"))["token"] == "abc"  # not touched
    assert app.sh(f"test -e {dp}/releases/v3 && echo yes || echo no").strip() == "no"
    host.run_as_user(f"rm -rf {dp}/.capview/lock")

    # 4: the host is unreachable
    cfg4 = write_config(tmp_path / "closed.yaml", [app], entries=[host_entry(app, port=free_port())])
    cp = release_cli(cfg4, "v4")
    assert cp.returncode == 4, show(cp)
    assert re.search(rf"{host.name}\s+lock\s+FAILED .*(refused|unreachable)", cp.stdout, re.I), show(cp)

    # and the host still takes the next release
    cp = release_cli(cfg, "v5")
    assert cp.returncode == 0, show(cp)
    assert app.get() == (200, "v1")  # src/ still holds the v1 tree
    assert app.current() == "releases/v5"


@pytest.mark.testbed
def test_releases_after_a_real_deploy(app1, host):
    app, cfg = app1
    assert release_cli(cfg, "v1").returncode == 0
    cp = run_cli("-c", str(cfg), "releases", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    text = cp.stdout
    assert host.name in text and "current v1" in text, show(cp)
    row = [l for l in text.splitlines() if re.search(r"\bv1\b", l) and "live" in l]
    assert row, show(cp)

    cp = run_cli("-c", str(cfg), "releases", ENV_NAME, "--json")
    assert cp.returncode == 0, show(cp)
    docs = [json.loads(l) for l in lines(cp.stdout)]
    assert len(docs) == 1, show(cp)
    d = docs[0]
    assert d["host"] == host.name and d["current"] == "v1" and d["reachable"] is True
    assert [(r["version"], r["state"], r["current"]) for r in d["releases"]] == [("v1", "live", True)]


@pytest.mark.testbed
def test_releases_of_an_unreachable_host_exit_4(host, tmp_path):
    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app], entries=[host_entry(app, port=free_port())])
    cp = run_cli("-c", str(cfg), "releases", ENV_NAME)
    assert cp.returncode == 4, show(cp)
    assert host.name in cp.stdout + cp.stderr


@pytest.mark.testbed
def test_rollback_serves_the_previous_version(host, tmp_path):
    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app], source="./src-v1")
    make_source(tmp_path, "v1")
    make_source(tmp_path, "v2")
    assert release_cli(cfg, "v1").returncode == 0
    cp = release_cli(cfg, "v2", "--source", str(tmp_path / "src-v2"))
    assert cp.returncode == 0, show(cp)
    assert app.get() == (200, "v2")

    cp = run_cli("-c", str(cfg), "rollback", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    assert app.get() == (200, "v1")
    assert app.current() == "releases/v1"
    out, _ = split_summary(cp.stdout)
    assert all(STAMP.match(l) for l in out), show(cp)
    assert re.search(rf"{host.name}\s+OK: .*v1", out[-1]), out[-1]

    cp = run_cli("-c", str(cfg), "rollback", ENV_NAME, "--to", "v2")
    assert cp.returncode == 0, show(cp)
    assert app.get() == (200, "v2")
    cp = run_cli("-c", str(cfg), "rollback", ENV_NAME, "--to", "nope")
    assert cp.returncode != 0 and app.get() == (200, "v2"), show(cp)


@pytest.mark.testbed
def test_dry_run_prints_the_scripts_and_changes_nothing(app1, host):
    app, cfg = app1
    assert release_cli(cfg, "v1").returncode == 0
    before = app.tree_hash()
    cp = release_cli(cfg, "v2", "--dry-run")
    assert cp.returncode == 0, show(cp)
    for phase in ("upload", "link", "build", "switch", "health"):
        assert f"--- {phase} script (dry run, not executed) ---" in cp.stdout, (phase, show(cp))
    assert "podman build" in cp.stdout and "mv -T" in cp.stdout
    assert f"systemctl --user stop {app.unit}" in cp.stdout
    assert "s3cr3t" not in cp.stdout  # shared/.env is never printed
    assert app.tree_hash() == before
    assert app.current() == "releases/v1"


@pytest.mark.testbed
def test_three_hosts_parallel_summary(hosts3, tmp_path):
    apps = [new_app(h) for h in hosts3]
    make_source(tmp_path, "v1").rename(tmp_path / "src")
    cfg = write_config(tmp_path / "deploy.yaml", apps, strategy="parallel")
    cp = release_cli(cfg, "v1")
    assert cp.returncode == 0, show(cp)
    assert "summary:" in cp.stdout
    summary = cp.stdout.split("summary:", 1)[1]
    for h, a in zip(hosts3, apps):
        assert re.search(rf"^\s+{h.name}\s+ok\s+v1\b", summary, re.M), show(cp)
        assert a.get() == (200, "v1")
    head = lines(cp.stdout.split("summary:", 1)[0])
    assert all(STAMP.match(l) for l in head), show(cp)
    cp = run_cli("-c", str(cfg), "releases", ENV_NAME, "--host", hosts3[1].name, "--json")
    if cp.returncode == 0:
        assert [json.loads(l)["host"] for l in lines(cp.stdout)] == [hosts3[1].name]


@pytest.mark.testbed
@pytest.mark.parametrize("sig,twice", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGINT", "SIGTERM", "SIGINT-twice"])
def test_interrupt_during_upload_leaves_no_lock_and_no_half_release(host, tmp_path, sig, twice):
    """Ctrl-C (or SIGTERM) mid-upload: exit 130, the unfinished release and the lock are gone.

    An impatient second Ctrl-C right after the first must not abandon that cleanup."""
    app = new_app(host)
    src = make_source(tmp_path, "v1")
    big = src / "zz-big"
    big.mkdir()
    for i in range(3):  # the tar stream sends these last; progress events arrive per file
        (big / f"blob{i}.bin").write_bytes(os.urandom(10 * 1024 * 1024))
    src.rename(tmp_path / "src")
    cfg = write_config(tmp_path / "deploy.yaml", [app])
    dp = app.deploy_path

    p = subprocess.Popen(cli_argv("-c", str(cfg), "release", "v1", ENV_NAME, "--json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    seen = []
    sent_at = None
    try:
        for l in p.stdout:
            e = json.loads(l)
            seen.append(e)
            if (sent_at is None and e["event"] == "UploadProgress"
                    and 0 < e["bytes_done"] < e["bytes_total"]):
                p.send_signal(sig)  # bytes are flowing: interrupt mid-upload
                if twice:
                    time.sleep(0.02)
                    p.send_signal(sig)
                sent_at = e
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    err = p.stderr.read()
    assert_no_traceback(subprocess.CompletedProcess(p.args, p.returncode, "", err))
    assert sent_at is not None, f"never saw the upload in progress: {[e['event'] for e in seen]}"
    assert p.returncode == 130, (p.returncode, err)
    assert "cleanup abandoned" not in err, err
    assert not any(e["event"] == "PhaseFinished" and e["phase"] == "upload" and e["ok"] for e in seen), \
        "the upload finished before the signal arrived; the test did not interrupt it"

    assert app.sh(f"test -e {dp}/.capview/lock && echo held || echo free").strip() == "free"
    assert app.sh(f"test -L {dp}/current && echo yes || echo no").strip() == "no"
    state = app.sh(f"cat {dp}/releases/v1/.capview/release.json 2>/dev/null || echo absent").strip()
    assert state == "absent" or json.loads(state)["state"] == "failed", state
    hist = app.history()
    assert hist and hist[-1]["outcome"] in ("failed", "cancelled"), hist

    nxt = "v1" if state == "absent" else "v2"
    cp = release_cli(cfg, nxt)
    assert cp.returncode == 0, show(cp)
    assert app.get() == (200, "v1")
    assert app.sh(f"sha256sum < {dp}/current/zz-big/blob1.bin").split()[0] == \
        subprocess.run(["sha256sum"], stdin=open(tmp_path / "src" / "zz-big" / "blob1.bin", "rb"),
                       capture_output=True, text=True).stdout.split()[0]


@pytest.mark.testbed
def test_wait_lock_gives_up_and_ctrl_c_while_waiting_keeps_the_holders_lock(app1, host):
    app, cfg = app1
    dp = app.deploy_path
    owner = {"operator": "bob@desk", "operation": "rollback", "version": None, "pid": 777, "machine": "desk",
             "started": time.time() - 60, "heartbeat": time.time(), "token": "tok-bob"}
    host.run_as_user(f"mkdir -p {dp}/.capview/lock && cat > {dp}/.capview/lock/owner.json", input=json.dumps(owner))

    t0 = time.monotonic()
    cp = run_cli("-c", str(cfg), "deploy", "v1", ENV_NAME, "--wait-lock", "2s")  # the alias
    waited = time.monotonic() - t0
    assert cp.returncode == 3, show(cp)
    assert 2 <= waited < 30, waited
    assert "bob@desk" in cp.stdout

    p = subprocess.Popen(cli_argv("-c", str(cfg), "release", "v1", ENV_NAME, "--wait-lock", "5m", "-v"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    try:
        for l in p.stdout:
            if "waiting" in l:
                p.send_signal(signal.SIGINT)
                break
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (p.returncode, err)
    assert "Traceback" not in out + err
    assert json.loads(app.sh(f"cat {dp}/.capview/lock/owner.json"))["token"] == "tok-bob"
    assert app.sh(f"ls -A {dp}/releases 2>/dev/null || true").strip() == ""

    host.run_as_user(f"rm -rf {dp}/.capview/lock")
    cp = release_cli(cfg, "v1")
    assert cp.returncode == 0, show(cp)


@pytest.mark.testbed
def test_release_without_version_is_utc_time_and_git_commit(app1, host, tmp_path):
    app, cfg = app1
    git = ["git", "-C", str(tmp_path / "src"), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    commit = subprocess.run(git[:3] + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    cp = run_cli("-c", str(cfg), "release", ENV_NAME)
    assert cp.returncode == 0, show(cp)
    m = re.search(r"OK: (\S+) is live", cp.stdout)
    assert m, show(cp)
    version = m.group(1)
    assert re.fullmatch(rf"\d{{8}}T?\d{{6}}Z?-{commit}", version), version
    assert app.current() == f"releases/{version}"
    assert app.release_json(version)["commit"].startswith(commit)


@pytest.mark.testbed
def test_release_on_a_tty_shows_the_live_view(app1, host):
    """On a terminal the rich live view is used; it must finish cleanly with the summary."""
    import pty

    app, cfg = app1
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a pseudo-terminal
        env = cli_env()
        env["TERM"] = "xterm-256color"
        os.chdir(REPO)
        os.execve(cli_argv()[0], cli_argv("-c", str(cfg), "release", "v1", ENV_NAME), env)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    out = b"".join(chunks).decode(errors="replace")
    assert "Traceback" not in out, out
    assert os.waitstatus_to_exitcode(status) == 0, out
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "v1 is live" in plain, plain
    assert "summary:" in plain and host.name in plain, plain
    assert app.get() == (200, "v1")


@pytest.mark.testbed
@pytest.mark.parametrize("phase", ["switch", "health"])
def test_interrupt_during_switch_or_health_leaves_a_consistent_host(host, tmp_path, phase):
    """From the switch on, Ctrl-C must not leave the host half-switched (issue 3, DESIGN.md):
    either the new release is live and current, or the old one is current again; the service
    runs, the lock is free."""
    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app], source="./src-v1")
    make_source(tmp_path, "v1")
    make_source(tmp_path, "v2")
    assert release_cli(cfg, "v1").returncode == 0
    dp = app.deploy_path
    p = subprocess.Popen(cli_argv("-c", str(cfg), "release", "v2", ENV_NAME, "--json", "--source",
                                  str(tmp_path / "src-v2")),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    try:
        for l in p.stdout:
            e = json.loads(l)
            if e["event"] == "PhaseStarted" and e["phase"] == phase:
                p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode in (0, 130), p.returncode
    time.sleep(0.5)
    assert app.sh(f"test -e {dp}/.capview/lock && echo held || echo free").strip() == "free"
    current = app.current()
    assert current in ("releases/v1", "releases/v2"), current
    version = current.split("/")[1]
    assert app.release_json(version)["state"] == "live", app.release_json(version)
    assert host.systemctl("is-active", app.unit).stdout.strip() == "active"
    assert app.get() == (200, version)


@pytest.mark.testbed
@pytest.mark.parametrize("phase", ["switch", "health"])
def test_interrupt_during_rollback_switch_leaves_a_consistent_host(host, tmp_path, phase):
    app = new_app(host)
    cfg = write_config(tmp_path / "deploy.yaml", [app], source="./src-v1")
    make_source(tmp_path, "v1")
    make_source(tmp_path, "v2")
    assert release_cli(cfg, "v1").returncode == 0
    assert release_cli(cfg, "v2", "--source", str(tmp_path / "src-v2")).returncode == 0
    dp = app.deploy_path
    p = subprocess.Popen(cli_argv("-c", str(cfg), "rollback", ENV_NAME, "--json"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=REPO)
    try:
        for l in p.stdout:
            e = json.loads(l)
            if e["event"] == "PhaseStarted" and e["phase"] == phase:
                p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode in (0, 130), p.returncode
    time.sleep(0.5)
    assert app.sh(f"test -e {dp}/.capview/lock && echo held || echo free").strip() == "free"
    version = app.current().split("/")[1]
    other = {"v1": "v2", "v2": "v1"}[version]
    assert app.release_json(version)["state"] == "live"
    assert app.release_json(other)["state"] != "live"
    assert host.systemctl("is-active", app.unit).stdout.strip() == "active"
    assert app.get() == (200, version)


@pytest.mark.testbed
def test_prune_needs_yes_without_a_tty(app1, host):
    app, cfg = app1
    for v in ("v1", "v2", "v3"):
        cp = release_cli(cfg, v)
        assert cp.returncode == 0, show(cp)
    dp = app.deploy_path
    cp = run_cli("-c", str(cfg), "prune", ENV_NAME, "--keep", "2")
    assert cp.returncode == 2, show(cp)
    assert "--yes" in cp.stderr and len(lines(cp.stderr)) == 1, show(cp)
    assert app.sh(f"ls {dp}/releases").split() == ["v1", "v2", "v3"]

    cp = run_cli("-c", str(cfg), "prune", ENV_NAME, "--keep", "2", "--dry-run")
    assert cp.returncode == 0, show(cp)
    assert "v1" in cp.stdout and app.sh(f"ls {dp}/releases").split() == ["v1", "v2", "v3"]

    cp = run_cli("-c", str(cfg), "prune", ENV_NAME, "--keep", "2", "--yes")
    assert cp.returncode == 0, show(cp)
    assert app.sh(f"ls {dp}/releases").split() == ["v2", "v3"]
    assert app.get() == (200, "v1")  # src/ holds the v1 tree; v3 is live
    assert app.current() == "releases/v3"
